"""Whole image datasets as one uint8 (N, C, H, W) tensor: from an ImageFolder directory (decoded once,
optionally cached as .npy), from torchvision's CIFAR-10 python folder, or from numpy arrays."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from lightly_siamese_ext.data.targets import as_labels

__all__ = ["ImageArrays", "check_cache_dir", "images_from_numpy", "load_cifar10_folder", "load_image_folder"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
_CACHE_FORMAT = 1  # bump when the cache layout changes: old caches then stop matching
_CIFAR10_FOLDER = "cifar-10-batches-py"


class ImageArrays(NamedTuple):
    """A dataset held as tensors: images (N, C, H, W) uint8, labels (N,) long, class names."""

    images: Tensor
    labels: Tensor
    classes: List[str]


def images_from_numpy(
    images: np.ndarray, labels: Union[np.ndarray, Sequence[int]], layout: str = "NHWC"
) -> Tuple[Tensor, Tensor]:
    """uint8 numpy images in ``layout`` "NHWC" (e.g. CIFAR's ``.data``) or "NCHW" -> (N, C, H, W) tensor, labels."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (0..255), got dtype {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D ({layout}), got shape {images.shape}")
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}")
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if layout == "NHWC":
        tensor = tensor.permute(0, 3, 1, 2).contiguous()
    return tensor, as_labels(labels, "labels", length=len(tensor))


def load_cifar10_folder(root: PathLike, train: bool = True) -> ImageArrays:
    """Reads torchvision's CIFAR-10 python release (``cifar-10-batches-py``) without decoding or resizing.

    ``root`` is the folder torchvision's ``CIFAR10(root)`` takes (holding
    ``cifar-10-batches-py``) or that folder itself. The pickles already hold
    (N, 3 * 32 * 32) uint8 rows in CHW order: they are read directly, skipping
    torchvision's md5 pass and its HWC round trip.
    """
    folder = Path(root)
    if (folder / _CIFAR10_FOLDER).is_dir():
        folder = folder / _CIFAR10_FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for name in names:
        batch = _unpickle(folder / name)
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{folder / name}: expected (N, 3072) uint8 rows, got shape {data.shape}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(batch["labels"])
    meta = folder / "batches.meta"
    classes = list(_unpickle(meta)["label_names"]) if meta.exists() else [str(i) for i in range(10)]
    return ImageArrays(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long), classes)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 file not found: {path}")
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise ValueError(f"cannot read CIFAR-10 file {path}: {error}") from error


def load_image_folder(
    root: PathLike, cache_dir: Optional[PathLike] = None, num_threads: Optional[int] = None
) -> ImageArrays:
    """Decodes every image of an ImageFolder directory (``root/<class>/<image>``) into one tensor.

    Classes and their indices are torchvision's ``ImageFolder``'s (sorted folder
    names). Images are decoded to RGB by Pillow on ``num_threads`` threads (Pillow
    releases the GIL while decoding) and must all have the same size. A file that cannot be read or decoded
    raises ``ValueError`` naming it.

    With ``cache_dir``, the result is stored there as ``.npy`` files keyed by a hash
    of every file's relative path, size and modification time: later calls load it
    instead of decoding, and any change in the folder makes a new key (a stale cache
    is never read).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classes, class_to_idx = find_classes(str(root))
    samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    check_cache_dir(cache_dir)  # before decoding: else a file there fails only when the cache is written
    cache = _cache_paths(root, samples, Path(cache_dir)) if cache_dir is not None else None
    if cache is not None and cache[2].exists():
        logger.info("loading decoded images of %s from cache %s", root, cache[0])
        return ImageArrays(torch.from_numpy(np.load(cache[0])), torch.from_numpy(np.load(cache[1])), classes)

    images = _decode_all([path for path, _ in samples], num_threads)
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    if cache is not None:
        _write_cache(cache, images, labels, root, classes)
    return ImageArrays(images, labels, classes)


def check_cache_dir(cache_dir: Optional[PathLike]) -> None:
    """``NotADirectoryError`` if ``cache_dir`` names an existing file (a missing folder is created when needed)."""
    if cache_dir is not None and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise NotADirectoryError(f"cache_dir {cache_dir} is a file, not a folder")


def _decode(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of the image file at ``path``."""
    try:
        with Image.open(path) as image:
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for unreadable / truncated files
        raise ValueError(f"cannot decode image file {path}: {error}") from error


def _decode_all(paths: List[str], num_threads: Optional[int]) -> Tensor:
    if not paths:
        raise ValueError("the image folder holds no images")
    first = _decode(paths[0])
    images = np.empty((len(paths), *first.shape), dtype=np.uint8)

    def decode_range(start: int, stop: int) -> None:
        for i in range(start, stop):
            image = _decode(paths[i])
            if image.shape != first.shape:
                raise ValueError(
                    f"all images must have the same size to be stacked: {paths[i]} is {image.shape[1]}x"
                    f"{image.shape[0]} (WxH), {paths[0]} is {first.shape[1]}x{first.shape[0]}"
                )
            images[i] = image

    step = 1024
    workers = num_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(decode_range, i, min(i + step, len(paths))) for i in range(0, len(paths), step)]
        for future in futures:
            future.result()  # re-raises the first failure
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _cache_paths(root: Path, samples: List[Tuple[str, int]], cache_dir: Path) -> Tuple[Path, Path, Path]:
    digest = hashlib.sha256(f"format={_CACHE_FORMAT}".encode())
    for path, label in samples:
        stat = os.stat(path)
        digest.update(f"{os.path.relpath(path, root)}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    stem = f"{root.name or 'images'}-{digest.hexdigest()[:20]}"
    return cache_dir / f"{stem}.images.npy", cache_dir / f"{stem}.labels.npy", cache_dir / f"{stem}.json"


def _write_cache(
    cache: Tuple[Path, Path, Path], images: Tensor, labels: Tensor, root: Path, classes: List[str]
) -> None:
    images_path, labels_path, manifest_path = cache
    images_path.parent.mkdir(parents=True, exist_ok=True)
    # Write to temporary names and rename: an interrupted write never looks like a cache.
    for path, array in ((images_path, images.numpy()), (labels_path, labels.numpy())):
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as handle:
            np.save(handle, array)
        os.replace(partial, path)
    manifest = {"root": str(root.resolve()), "classes": classes, "shape": list(images.shape)}
    partial = manifest_path.with_name(manifest_path.name + ".partial")
    partial.write_text(json.dumps(manifest))
    os.replace(partial, manifest_path)  # written last: marks the cache complete
