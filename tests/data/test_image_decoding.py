"""Every Pillow mode reaches 8-bit RGB without clipping, checked against numpy on the written arrays."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from lightly_siamese_ext.data import load_image_folder

RNG = np.random.default_rng(0)


def decode_one(tmp_path: Path, name: str, write: Callable[[Path], None]) -> np.ndarray:
    """Writes one image as ``root/c/name`` and returns what load_image_folder makes of it, as (H, W, 3)."""
    folder = tmp_path / "root" / "c"
    folder.mkdir(parents=True)
    write(folder / name)
    arrays = load_image_folder(tmp_path / "root", num_threads=1)
    assert arrays.images.shape[0] == 1 and arrays.images.shape[1] == 3
    return arrays.images[0].permute(1, 2, 0).numpy()


def grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.uint8)[..., None], 3, axis=2)


def png_16_bit(array: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG of ``array`` (grey 0 or RGB 2), written by hand: Pillow cannot write 16-bit colour."""
    height, width = array.shape[:2]
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_a_16_bit_grey_ramp_keeps_its_high_byte_instead_of_saturating(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    pixels = decode_one(tmp_path, "ramp.png", lambda path: Image.fromarray(ramp).save(path))
    np.testing.assert_array_equal(pixels, grey(ramp >> 8))
    assert 126 < pixels.mean() < 129  # was 254: convert("RGB") clipped every value above 255


def test_16_bit_grey_and_16_bit_rgb_pngs_decode_alike(tmp_path: Path) -> None:
    values = RNG.integers(0, 65536, (5, 7), dtype=np.uint16)
    as_grey = decode_one(tmp_path / "g", "x.png", lambda path: path.write_bytes(png_16_bit(values, 0)))
    colour = np.stack([values] * 3, axis=-1)
    as_rgb = decode_one(tmp_path / "c", "x.png", lambda path: path.write_bytes(png_16_bit(colour, 2)))
    np.testing.assert_array_equal(as_grey, grey(values >> 8))
    np.testing.assert_array_equal(as_rgb, as_grey)  # Pillow decodes 16-bit RGB by its high byte too


def test_big_endian_16_bit_tiff(tmp_path: Path) -> None:
    values = RNG.integers(0, 65536, (4, 6), dtype=np.uint16)

    def write(path: Path) -> None:
        image = Image.frombytes("I;16B", (6, 4), values.astype(">u2").tobytes())
        image.save(path)
        with Image.open(path) as reopened:
            assert reopened.mode == "I;16B"

    np.testing.assert_array_equal(decode_one(tmp_path, "x.tif", write), grey(values >> 8))


def test_32_bit_integer_images_are_read_as_16_bit(tmp_path: Path) -> None:
    values = RNG.integers(0, 65536, (4, 6)).astype(np.int32)
    header = b"P5\n6 4\n65535\n"  # a 16-bit PGM: Pillow opens it in mode I
    pgm = decode_one(tmp_path / "pgm", "x.pgm", lambda path: path.write_bytes(header + values.astype(">u2").tobytes()))
    np.testing.assert_array_equal(pgm, grey(values >> 8))
    tiff = decode_one(tmp_path / "tif", "x.tif", lambda path: Image.fromarray(values).save(path))
    np.testing.assert_array_equal(tiff, grey(values >> 8))


def test_32_bit_integers_outside_16_bit_are_refused_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 70000], [5, -3]], dtype=np.int32)
    with pytest.raises(ValueError, match=r"x\.tif: integer pixels \(mode I\) span -3\.\.70000; expected 16-bit"):
        decode_one(tmp_path, "x.tif", lambda path: Image.fromarray(values).save(path))


def test_float_images_are_taken_as_0_to_1(tmp_path: Path) -> None:
    values = RNG.random((4, 6), dtype=np.float32)
    values[0, :2] = [0.0, 1.0]
    pixels = decode_one(tmp_path, "x.tif", lambda path: Image.fromarray(values).save(path))
    np.testing.assert_array_equal(pixels, grey(np.rint(values.astype(np.float64) * 255)))


@pytest.mark.parametrize("bad", [2.0, -0.5, float("nan")])
def test_float_images_outside_0_to_1_are_refused(tmp_path: Path, bad: float) -> None:
    values = np.full((2, 2), 0.5, dtype=np.float32)
    values[1, 1] = bad
    with pytest.raises(ValueError, match=r"x\.tif: float pixels \(mode F\).*expected values in \[0, 1\]"):
        decode_one(tmp_path, "x.tif", lambda path: Image.fromarray(values).save(path))


def test_palette_with_transparency_gives_its_colours_without_a_warning(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = RNG.integers(0, 256, (5, 6), dtype=np.uint8)

    def write(path: Path) -> None:
        image = Image.fromarray(indices, mode="L").convert("P")
        image.putpalette(palette.flatten().tolist())
        image.putdata(indices.flatten().tolist())
        image.save(path, transparency=bytes(range(256)))  # per-entry alpha: the case convert("RGB") warns about
        with Image.open(path) as reopened:
            assert reopened.mode == "P" and "transparency" in reopened.info

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels = decode_one(tmp_path, "x.png", write)
    np.testing.assert_array_equal(pixels, palette[indices])


def test_alpha_is_dropped_and_colour_kept(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    rgba[0, 0, 3] = 0  # a fully transparent pixel keeps its stored colour, as torchvision's loader does
    pixels = decode_one(tmp_path / "rgba", "x.png", lambda path: Image.fromarray(rgba, mode="RGBA").save(path))
    np.testing.assert_array_equal(pixels, rgba[..., :3])
    la = RNG.integers(0, 256, (4, 5, 2), dtype=np.uint8)
    pixels = decode_one(tmp_path / "la", "x.png", lambda path: Image.fromarray(la, mode="LA").save(path))
    np.testing.assert_array_equal(pixels, grey(la[..., 0]))


def test_cmyk(tmp_path: Path) -> None:
    cmyk = RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    pixels = decode_one(tmp_path, "x.tif", lambda path: Image.fromarray(cmyk, mode="CMYK").save(path))
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    np.testing.assert_array_equal(pixels, np.round((255 - c) * (255 - k) / 255))


def test_bilevel_and_8_bit_grey(tmp_path: Path) -> None:
    bits = RNG.random((4, 5)) > 0.5
    pixels = decode_one(tmp_path / "1", "x.png", lambda path: Image.fromarray(bits).save(path))
    np.testing.assert_array_equal(pixels, grey(bits * 255))
    values = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
    pixels = decode_one(tmp_path / "L", "x.png", lambda path: Image.fromarray(values).save(path))
    np.testing.assert_array_equal(pixels, grey(values))


@pytest.mark.parametrize("side", [8, 12])  # 64 pixels: Pillow only warns; 144: Pillow raises its own error type
@pytest.mark.parametrize("warnings_as_errors", [False, True])
def test_decompression_bombs_are_a_value_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int, warnings_as_errors: bool
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error" if warnings_as_errors else "ignore")
        with pytest.raises(ValueError, match=r"bomb\.png is refused as a possible decompression bomb"):
            decode_one(tmp_path, "bomb.png",
                       lambda path: Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(path))
