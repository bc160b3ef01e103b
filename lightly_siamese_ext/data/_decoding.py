"""Image files to (H, W, 3) uint8 RGB pixels: every Pillow mode scaled to 8 bits without clipping, decompression
bombs refused, many files decoded on threads (Pillow releases the GIL)."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lightly_siamese_ext.data._files import ListedImage, read_regular_file


class _Decoded(NamedTuple):
    """An image's (H, W, 3) uint8 pixels, and the sha256 of the bytes they came from when it was asked for."""

    pixels: np.ndarray
    sha256: Optional[str]


def _decode(image: ListedImage) -> _Decoded:
    """The RGB pixels of one listed image (and its content hash if ``image.racy``)."""
    data = read_regular_file(image.real or image.path, shown=image.path)
    return _Decoded(_decode_bytes(data, image.path), hashlib.sha256(data).hexdigest() if image.racy else None)


def decode_listed(image: ListedImage, draft_size: Optional[int] = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of one listed image; with ``draft_size``, a JPEG is decoded at the smallest
    power-of-two reduction whose sides stay >= ``draft_size`` (Pillow's ``draft``: what makes large images cheap)."""
    return _decode_bytes(read_regular_file(image.real or image.path, shown=image.path), image.path, draft_size)


def _decode_bytes(data: bytes, path: str, draft_size: Optional[int] = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of the encoded image ``data`` read from ``path`` (see :func:`as_rgb8`)."""
    try:
        picture = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _decompression_bomb(path, str(error)) from error
    except Exception as error:  # Pillow raises many types for damaged files (OSError, SyntaxError, struct.error...)
        raise ValueError(f"cannot decode image file {path}: {type(error).__name__}: {error}") from error
    with picture:
        # Image.open only warns between MAX_IMAGE_PIXELS and twice that: the same refusal either way.
        if Image.MAX_IMAGE_PIXELS is not None and picture.width * picture.height > Image.MAX_IMAGE_PIXELS:
            raise _decompression_bomb(
                path, f"{picture.width}x{picture.height} = {picture.width * picture.height} pixels, more than "
                      f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}")
        if draft_size is not None:
            picture.draft("RGB", (draft_size, draft_size))  # JPEG only; other formats ignore it
        try:
            pixels = pillow_pixels(picture)
        except Exception as error:
            raise ValueError(f"cannot decode image file {path}: {type(error).__name__}: {error}") from error
        return as_rgb8(pixels, picture.mode, path)


def _decompression_bomb(path: str, detail: str) -> ValueError:
    return ValueError(f"{path} is refused as a possible decompression bomb ({detail}); if the file is trusted, "
                      "raise PIL.Image.MAX_IMAGE_PIXELS")


def pillow_pixels(picture: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB for colour modes, (H, W) in the mode's own dtype for grey ones (scaled by as_rgb8).
    Alpha is dropped, as torchvision's loader (``convert("RGB")``) does; palettes go through RGBA so that a palette
    transparency needs no warning."""
    mode = picture.mode
    if mode in ("RGB", "L", "1", "I", "F") or mode.startswith("I;16"):
        return np.asarray(picture)
    if mode == "LA":
        return np.asarray(picture)[..., 0]
    if mode == "RGBA":
        return np.asarray(picture)[..., :3]
    if mode in ("P", "PA"):
        return np.asarray(picture.convert("RGBA"))[..., :3]
    return np.asarray(picture.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, RGBX, RGBa, La: 8-bit conversions


def as_rgb8(pixels: np.ndarray, mode: str, path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from :func:`pillow_pixels`, never clipped:

    * 16-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) keeps its high byte (``v >> 8``), as Pillow itself
      decodes 16-bit RGB and RGBA PNGs, so a 16-bit picture reads the same whether stored grey or colour.
    * ``I`` (32-bit integers, what Pillow makes of 16-bit PGM files) is read as 16-bit: values outside 0..65535
      have no known scale and are a ValueError.
    * ``F`` (32-bit float) is taken as 0..1 and rounded to the nearest of 0..255; values outside [0, 1] (or NaN)
      are a ValueError.
    * ``1`` is 0 or 255; ``L`` is as stored.
    """
    if pixels.ndim == 3:
        return pixels
    if pixels.dtype == np.bool_:
        grey = pixels.astype(np.uint8) * np.uint8(255)
    elif pixels.dtype == np.uint8:
        grey = pixels
    elif pixels.dtype.kind == "f":
        grey = _unit_float_to_uint8(pixels, mode, path)
    else:
        grey = _sixteen_bit_to_uint8(pixels, mode, path)
    return np.repeat(grey[..., None], 3, axis=2)


def _unit_float_to_uint8(pixels: np.ndarray, mode: str, path: str) -> np.ndarray:
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if not (0.0 <= low and high <= 1.0):  # also refuses NaN
        raise ValueError(f"{path}: float pixels (mode {mode}) span {low}..{high}; expected values in [0, 1] "
                         "(convert the file to 8 or 16 bit integers)")
    return np.rint(pixels.astype(np.float64) * 255.0).astype(np.uint8)


def _sixteen_bit_to_uint8(pixels: np.ndarray, mode: str, path: str) -> np.ndarray:
    if pixels.dtype.kind not in "iu":
        raise ValueError(f"{path}: cannot read pixels of mode {mode} (dtype {pixels.dtype})")
    if pixels.dtype.itemsize > 2 or pixels.dtype.kind == "i":
        low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
        if low < 0 or high > 65535:
            raise ValueError(f"{path}: integer pixels (mode {mode}) span {low}..{high}; expected 16-bit values "
                             "0..65535")
    return (pixels >> 8).astype(np.uint8)


def decode_all(images: List[ListedImage], num_threads: Optional[int]) -> Tuple[Tensor, List[Optional[str]]]:
    """All images as one (N, 3, H, W) tensor, decoded on ``num_threads`` threads, and the content hash of each
    racy one (None for the others)."""
    if not images:
        raise ValueError("the image folder holds no images")
    first = _decode(images[0])
    shape = first.pixels.shape
    pixels = np.empty((len(images), *shape), dtype=np.uint8)
    pixels[0] = first.pixels
    hashes: List[Optional[str]] = [first.sha256] + [None] * (len(images) - 1)

    def decode_range(start: int, stop: int) -> None:
        for i in range(start, stop):
            decoded = _decode(images[i])
            if decoded.pixels.shape != shape:
                raise ValueError(
                    f"all images must have the same size to be stacked: {images[i].path} is "
                    f"{decoded.pixels.shape[1]}x{decoded.pixels.shape[0]} (WxH), {images[0].path} is "
                    f"{shape[1]}x{shape[0]}"
                )
            pixels[i] = decoded.pixels
            hashes[i] = decoded.sha256

    step = 1024
    workers = num_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(decode_range, i, min(i + step, len(images))) for i in range(1, len(images), step)]
        try:
            for future in futures:
                future.result()  # re-raises the first failure
        except BaseException:
            for future in futures:
                future.cancel()  # a failed load does not decode the rest of the folder first
            raise
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), hashes
