"""The ImageFolder decode cache is never stale, survives its own damage, and never stops a load it cannot write."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, List

import numpy as np
import pytest
import torch
from PIL import Image

import lightly_siamese_ext.data._decoding as decoding_module
import lightly_siamese_ext.data.decode_cache as decode_cache_module
from fault_injection import read_only
from lightly_siamese_ext._atomic import TEMPORARY_SUFFIX
from lightly_siamese_ext.data import load_image_folder

def bmp(value: int) -> bytes:
    """An uncompressed 4 x 4 BMP: images of any value have the same file size."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(buffer, "BMP")
    return buffer.getvalue()


def write_folder(root: Path) -> List[Path]:
    paths = []
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            paths.append(root / name / f"{i}.bmp")
            paths[-1].write_bytes(bmp(10 + 3 * c + i))
    return paths


def first_pixels(images: torch.Tensor) -> List[int]:
    return images[:, 0, 0, 0].tolist()


def rewrite_in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.write(data)


def replace_by_copy(path: Path, data: bytes) -> None:
    """What ``cp -p new path`` or ``rsync -t`` leave: other content, a new file, the old mtime (set below)."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def change_keeping_size_and_mtime(path: Path, value: int, change: Callable[[Path, bytes], None]) -> None:
    before = os.stat(path)
    change(path, bmp(value))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize("change", [rewrite_in_place, replace_by_copy])
def test_a_change_that_keeps_size_and_mtime_misses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[Path, bytes], None]
) -> None:
    # As for files that have not changed for a while: only the stat key (ctime, inode) can tell.
    monkeypatch.setattr(decode_cache_module, "RACY_NS", -(10**18))
    root, cache = tmp_path / "root", tmp_path / "cache"
    paths = write_folder(root)
    assert first_pixels(load_image_folder(root, cache_dir=cache).images) == [10, 11, 12, 13, 14, 15]
    change_keeping_size_and_mtime(paths[4], 99, change)
    assert first_pixels(load_image_folder(root, cache_dir=cache).images) == [10, 11, 12, 13, 99, 15]


def test_a_change_the_timestamps_cannot_show_is_caught_by_the_recorded_content_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file system whose ctime does not move (the change fell in the same timestamp tick): files written just
    # before the cache have their content hash recorded and checked on every read.
    monkeypatch.setattr(decode_cache_module, "_file_identity", lambda info: f"{info.st_size}\0{info.st_mtime_ns}")
    root, cache = tmp_path / "root", tmp_path / "cache"
    paths = write_folder(root)
    load_image_folder(root, cache_dir=cache)
    change_keeping_size_and_mtime(paths[1], 77, rewrite_in_place)
    assert first_pixels(load_image_folder(root, cache_dir=cache).images) == [10, 77, 12, 13, 14, 15]


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


DAMAGES = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "short by one byte": lambda data: data[:-1],
    "garbage": lambda data: bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8)),
    "a flipped bit": flip_last_byte,
    "wrong json": lambda data: b"[1, 2, 3]",
}


@pytest.mark.parametrize("suffix, damage", [
    (suffix, damage) for suffix in (".images.npy", ".labels.npy", ".json") for damage in DAMAGES
    if not (damage == "wrong json") or suffix == ".json"
] + [(".images.npy", "deleted")])
def test_a_damaged_cache_is_rebuilt_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, suffix: str, damage: str
) -> None:
    root, cache = tmp_path / "root", tmp_path / "cache"
    write_folder(root)
    expected = load_image_folder(root, cache_dir=cache)
    (damaged,) = cache.glob(f"*{suffix}")
    if damage == "deleted":
        damaged.unlink()
    else:
        damaged.write_bytes(DAMAGES[damage](damaged.read_bytes()))
    with caplog.at_level(logging.WARNING, logger=decode_cache_module.__name__):
        rebuilt = load_image_folder(root, cache_dir=cache)
    assert torch.equal(rebuilt.images, expected.images) and torch.equal(rebuilt.labels, expected.labels)
    assert any("decode cache" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)

    def no_decoding(image: Any) -> None:
        raise AssertionError(f"decoded {image} although the cache was rebuilt")

    monkeypatch.setattr(decoding_module, "_decode", no_decoding)
    assert torch.equal(load_image_folder(root, cache_dir=cache).images, expected.images)


def assert_loaded_uncached_with_a_warning(root: Path, cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=decode_cache_module.__name__):
        arrays = load_image_folder(root, cache_dir=cache)
    assert first_pixels(arrays.images) == [10, 11, 12, 13, 14, 15]
    assert any("cannot write the decode cache" in r.getMessage() for r in caplog.records)
    assert not [path for path in root.parent.rglob("*") if path.name.endswith(TEMPORARY_SUFFIX)]  # no temporary left


def test_a_read_only_cache_folder_is_a_warning_and_the_images_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, cache = tmp_path / "root", tmp_path / "cache"
    write_folder(root)
    cache.mkdir()
    with read_only(cache):
        assert_loaded_uncached_with_a_warning(root, cache, caplog)
        assert list(cache.iterdir()) == []


def test_a_cache_folder_that_cannot_be_made_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "root"
    write_folder(root)
    (tmp_path / "a_file").write_text("")
    assert_loaded_uncached_with_a_warning(root, tmp_path / "a_file" / "cache", caplog)


def test_a_write_failing_half_way_leaves_no_partial_file_and_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root, cache = tmp_path / "root", tmp_path / "cache"
    write_folder(root)
    save = np.save
    calls = []

    def disk_full_on_the_labels(handle: Any, array: np.ndarray) -> None:
        calls.append(array.shape)
        if len(calls) == 2:
            handle.write(b"\x93NUMPY")
            raise OSError(errno.ENOSPC, "No space left on device")
        save(handle, array)

    monkeypatch.setattr(np, "save", disk_full_on_the_labels)
    assert_loaded_uncached_with_a_warning(root, cache, caplog)
    assert list(cache.glob("*.json")) == []  # no manifest: nothing looks like a complete cache
    monkeypatch.undo()
    load_image_folder(root, cache_dir=cache)
    assert len(list(cache.glob("*.json"))) == 1  # the next load writes it


def test_files_verified_once_settled_are_no_longer_read_on_a_cache_hit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = tmp_path / "root", tmp_path / "cache"
    write_folder(root)
    first = load_image_folder(root, cache_dir=cache)  # just written: every file is racy, its hash recorded
    (manifest,) = cache.glob("*.json")
    assert len(json.loads(manifest.read_text())["verify"]) == 6
    monkeypatch.setattr(decode_cache_module, "RACY_NS", -(10**18))  # as if some seconds had passed
    assert torch.equal(load_image_folder(root, cache_dir=cache).images, first.images)
    assert json.loads(manifest.read_text())["verify"] == {}

    def no_reading(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("an image file was read although the cache is valid and every file settled")

    monkeypatch.setattr(decode_cache_module, "read_regular_file", no_reading)
    assert torch.equal(load_image_folder(root, cache_dir=cache).images, first.images)
