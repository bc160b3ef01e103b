"""Whole image datasets as one uint8 (N, C, H, W) tensor: from an ImageFolder directory (decoded once,
optionally cached as .npy), from torchvision's CIFAR-10 python folder, or from numpy arrays.

What counts as an image of an ImageFolder (:func:`load_image_folder`):

* Hidden files and folders (names starting with ".": ``.ipynb_checkpoints``, ``.DS_Store``, ``.git``) are ignored
  everywhere, by one function (:func:`_visible_entries`) that :mod:`lightly_siamese_ext.data.sources` uses too.
* Files whose names do not end in one of torchvision's ``IMG_EXTENSIONS`` (any case) are ignored, as torchvision does.
* Nothing outside the root is read and every real file is read at most once. Links to folders are never followed
  (so no link loop is walked and no image is read twice under two labels): one pointing inside the root is skipped
  with a logged warning (the images there are read where they really are), one leaving the root is a
  ``ValueError``. A link to an image file inside the root is read once, by its real path: when that file is read
  anyway (it lies in a class folder itself) or an earlier link already read it, the link is skipped with a
  warning. A link to a file outside the root, or a broken link, is a ``ValueError``.
* Anything else named like an image that is not a readable regular file (a FIFO, a socket, a device, an unreadable
  file) is a ``ValueError`` naming it, found before anything is decoded; files are opened non-blocking, so nothing
  can hang the loader. A folder named like an image is a folder: its images belong to its class, as in torchvision.

Every refusal is a ``ValueError`` (``FileNotFoundError`` / ``NotADirectoryError`` for missing paths) whose one-line
message names the path and what was expected.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import pickle
import stat
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS

from lightly_siamese_ext.data.targets import as_labels

__all__ = ["ImageArrays", "check_cache_dir", "images_from_numpy", "load_cifar10_folder", "load_image_folder"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
_CACHE_FORMAT = 2  # bump when the cache layout or the decoding changes: old caches then stop matching
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_ROW = 3 * 32 * 32
# Files changed this shortly before a listing may change again within the same timestamp tick (a jiffy on Linux,
# up to 2 s on FAT) without their ctime moving: the cache records their content hash and checks it on every read.
_RACY_NS = 3_000_000_000
# Non-blocking: opening a FIFO that slipped in after the listing returns at once instead of waiting for a writer.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


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


# ---------------------------------------------------------------------------------------------------- CIFAR-10


def load_cifar10_folder(root: PathLike, train: bool = True) -> ImageArrays:
    """Reads torchvision's CIFAR-10 python release (``cifar-10-batches-py``) without decoding or resizing.

    ``root`` is the folder torchvision's ``CIFAR10(root)`` takes (holding
    ``cifar-10-batches-py``) or that folder itself. The pickles already hold
    (N, 3 * 32 * 32) uint8 rows in CHW order: they are read directly, skipping
    torchvision's md5 pass and its HWC round trip.

    The batches are unpickled by a restricted unpickler that builds only what the format holds (dicts, lists,
    strings, bytes, ints, numpy arrays): a file that asks for anything else (which a plain ``pickle.load`` would
    run) is a ``ValueError`` naming it. Each batch is checked on load: a dict with ``data`` (N, 3072) of values
    0..255 and ``labels``, one per row, each in ``[0, number of classes)`` (the classes of ``batches.meta``, else
    10); anything else is a ``ValueError`` naming the file.
    """
    folder = Path(root)
    if (folder / _CIFAR10_FOLDER).is_dir():
        folder = folder / _CIFAR10_FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    classes = _cifar10_classes(folder / "batches.meta")
    images, labels = [], []
    for name in names:
        batch_images, batch_labels = _read_cifar10_batch(folder / name, len(classes))
        images.append(batch_images)
        labels.append(batch_labels)
    return ImageArrays(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), classes)


def _cifar10_classes(meta: Path) -> List[str]:
    """The class names of ``batches.meta``, or "0" .. "9" when the folder has none."""
    if not os.path.lexists(meta):
        return [str(i) for i in range(10)]
    names = _cifar10_fields(meta, _unpickle(meta), ("label_names",))["label_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, (str, bytes)) for n in names):
        raise ValueError(f"{meta}: label_names must be a non-empty list of strings, got {_describe_value(names)}")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def _read_cifar10_batch(path: Path, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels of one CIFAR-10 batch, checked."""
    batch = _cifar10_fields(path, _unpickle(path), ("data", "labels"))
    data = np.asarray(batch["data"])
    if data.ndim != 2 or data.shape[1] != _CIFAR10_ROW:
        raise ValueError(f"{path}: expected data of (N, {_CIFAR10_ROW}) uint8 rows, got shape {data.shape}")
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise ValueError(f"{path}: expected data of uint8 pixels 0..255, got {data.dtype}")
        data = data.astype(np.uint8)
    labels = np.asarray(batch["labels"])
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError(f"{path}: labels must be a list of ints, got {labels.dtype} of shape {labels.shape}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(labels)} labels for {len(data)} images (one label per data row expected)")
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        raise ValueError(
            f"{path}: label {labels[outside[0]]} (row {outside[0]}) is outside [0, {num_classes}), the classes of "
            f"the dataset; {outside.size} labels are"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar10_fields(path: Path, batch: Any, required: Sequence[str]) -> Dict[str, Any]:
    """``batch`` with its keys as str (pickles written by Python 3 with bytes keys hold b"data"), checked."""
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict (the CIFAR-10 python format), got {type(batch).__name__}")
    fields = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}
    missing = [key for key in required if key not in fields]
    if missing:
        raise ValueError(f"{path}: expected the keys {list(required)} of the CIFAR-10 python format, "
                         f"missing {missing} (has {sorted(map(str, fields))})")
    return fields


def _describe_value(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """The ``_codecs.encode`` that protocol-2 pickles of bytes call, admitted for latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError(f"refused _codecs.encode({type(text).__name__}, {encoding!r}, {errors!r})")
    return text.encode("latin1")


def _numpy_pickle_globals() -> Dict[Tuple[str, str], Any]:
    """The globals that numpy arrays (and scalars) pickle through, under numpy 1's and numpy 2's module names.

    Taken from numpy's own ``__reduce__`` so that whatever numpy is installed, its functions are what is admitted.
    """
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    scalar = np.float64(0).__reduce__()[0]
    admitted: Dict[Tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                            ("_codecs", "encode"): _latin1_encode}
    for package in ("numpy.core", "numpy._core"):
        admitted[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        admitted[(f"{package}.multiarray", "scalar")] = scalar
        admitted[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return admitted


class _CIFARUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, bytes, ints and numpy arrays; refuses every other global (code to run)."""

    _admitted = _numpy_pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._admitted[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load the global {module}.{name}: CIFAR-10 batches hold only numpy arrays, lists, "
                "dicts, strings and ints (a plain pickle.load would have run it)"
            ) from None


def _unpickle(path: Path) -> Any:
    data = _read_regular_file(str(path), what="CIFAR-10 file", follow_link=True)
    try:
        return _CIFARUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as error:  # a hostile or damaged pickle can raise nearly anything; it is refused the same way
        raise ValueError(f"cannot read CIFAR-10 file {path}: {type(error).__name__}: {error}") from error


# ------------------------------------------------------------------------------------------- ImageFolder listing


class _ListedImage(NamedTuple):
    """One image of an ImageFolder: ``path`` as listed (named in messages and in the cache key), ``real`` the file to
    read for a link (its target's real path; None for a regular file), ``target_stat`` that target's stat, and
    ``racy`` whether it changed so recently that the cache must record its content hash."""

    path: str
    label: int
    real: Optional[str] = None
    target_stat: Optional[os.stat_result] = None
    racy: bool = False


def _visible_entries(folder: PathLike) -> List[os.DirEntry]:
    """The entries of ``folder`` whose names do not start with ".": the one place hidden files and folders are left
    out (``.ipynb_checkpoints``, ``.DS_Store``, ``.git``), for :func:`load_image_folder` and the data source
    detection alike. Unsorted."""
    try:
        with os.scandir(folder) as entries:
            return [entry for entry in entries if not entry.name.startswith(".")]
    except OSError as error:
        raise ValueError(f"cannot list the folder {folder}: {error.strerror or error}") from error


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(os.path.join(real_root, ""))


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _skip_folder_link(entry: os.DirEntry, root: Path, real_root: str) -> None:
    """A link to a folder is never followed: skipped with a warning inside the root, a ValueError outside it."""
    target = os.path.realpath(entry.path)
    if not _inside(target, real_root):
        raise ValueError(
            f"{entry.path} is a link to the folder {target}, outside the image folder {root}: nothing outside it is "
            "read; move or copy the images inside, or load their real folder"
        )
    logger.warning(
        "%s is a link to the folder %s: links to folders are not followed (no image is read twice and no link "
        "loop is walked); the images inside %s are read where they really are", entry.path, target, root,
    )


def _class_folders(root: Path, real_root: str) -> List[str]:
    """torchvision's classes: the sorted names of the root's (visible, real) folders."""
    classes = []
    for entry in _visible_entries(root):
        if entry.is_symlink():
            if entry.is_dir():
                _skip_folder_link(entry, root, real_root)
        elif entry.is_dir(follow_symlinks=False):
            classes.append(entry.name)
    if not classes:
        raise FileNotFoundError(f"found no class folder (<class>/<image>) in the image folder {root}")
    return sorted(classes)


def _files_under(folder: str) -> Iterator[Tuple[str, os.DirEntry]]:
    """(parent folder, entry) for every visible entry below ``folder`` that is not a real folder; real folders are
    descended into, links are yielded (never followed)."""
    pending = [folder]
    while pending:
        current = pending.pop()
        for entry in _visible_entries(current):
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            else:
                yield current, entry


def _linked_image(entry: os.DirEntry, label: int, root: Path, real_root: str) -> Optional[_ListedImage]:
    """The image a link names, None for a link to skip; a ValueError for one that leaves the root or is broken."""
    if entry.is_dir():
        _skip_folder_link(entry, root, real_root)
        return None
    if not _is_image_name(entry.name):
        return None
    target = os.path.realpath(entry.path)
    if not _inside(target, real_root):
        raise ValueError(
            f"{entry.path} is a link to {target}, outside the image folder {root}: nothing outside it is read; "
            "move or copy the image inside"
        )
    try:
        target_stat = os.stat(target)
    except OSError as error:
        raise ValueError(f"{entry.path} is a broken link (to {target}): {error.strerror or error}") from error
    if not stat.S_ISREG(target_stat.st_mode):
        raise ValueError(f"{entry.path} links to {target}, a {_kind(target_stat.st_mode)}, not a regular image file")
    return _ListedImage(entry.path, label, target, target_stat)


def _listed_image(entry: os.DirEntry, label: int, root: Path, real_root: str) -> Optional[_ListedImage]:
    """The image ``entry`` is, None if it is none (its name is not an image's); a ValueError if it looks like one
    but is not a regular file."""
    if entry.is_symlink():
        return _linked_image(entry, label, root, real_root)
    if not _is_image_name(entry.name):
        return None
    if entry.is_file(follow_symlinks=False):
        return _ListedImage(entry.path, label)
    mode = entry.stat(follow_symlinks=False).st_mode
    raise ValueError(f"{entry.path} is a {_kind(mode)}, not a regular image file: remove it or rename it")


def _list_image_folder(root: Path) -> Tuple[List[str], List[_ListedImage]]:
    """The classes and images of an ImageFolder, in torchvision's order: classes sorted, then within a class the
    files sorted by (folder path, name), as ``make_dataset``'s ``sorted(os.walk(...))`` gives them."""
    real_root = os.path.realpath(root)
    classes = _class_folders(root, real_root)
    images: List[_ListedImage] = []
    empty = []
    for label, name in enumerate(classes):
        found = []
        for parent, entry in _files_under(os.path.join(str(root), name)):
            image = _listed_image(entry, label, root, real_root)
            if image is not None:
                found.append((parent, entry.name, image))
        if not found:
            empty.append(name)
        images.extend(image for _, _, image in sorted(found, key=lambda item: item[:2]))
    if empty:
        raise FileNotFoundError(
            f"found no image files for the classes {', '.join(empty)} in {root} "
            f"(supported extensions: {', '.join(IMG_EXTENSIONS)})"
        )
    return classes, _read_each_file_once(images, root, real_root)


def _read_each_file_once(images: List[_ListedImage], root: Path, real_root: str) -> List[_ListedImage]:
    """``images`` without the links whose target is read already: as a regular file of the folder (which keeps the
    label of the class it really lies in), or through an earlier link."""
    if all(image.real is None for image in images):
        return images
    prefix = _prefix(root)
    taken = {os.path.join(real_root, image.path[len(prefix):]) for image in images if image.real is None}
    kept, skipped = [], []
    for image in images:
        if image.real is not None:
            if image.real in taken:
                skipped.append(image.path)
                continue
            taken.add(image.real)
        kept.append(image)
    if skipped:
        logger.warning(
            "skipped %d links in %s to images that are read already (each real file is read once): %s%s",
            len(skipped), root, ", ".join(skipped[:3]), ", ..." if len(skipped) > 3 else "",
        )
    return kept


def _prefix(root: Path) -> str:
    """``root`` as the prefix of its listed paths (with the separator), to cut relative paths off them."""
    return os.path.join(str(root), "")


# ---------------------------------------------------------------------------------------------------- decoding


class _Decoded(NamedTuple):
    """An image's (H, W, 3) uint8 pixels, and the sha256 of the bytes they came from when it was asked for."""

    pixels: np.ndarray
    sha256: Optional[str]


def _read_regular_file(
    path: str, what: str = "image file", shown: Optional[str] = None, follow_link: bool = False
) -> bytes:
    """The bytes of the regular file ``path`` (``shown`` in messages), opened non-blocking and, unless
    ``follow_link``, without following a final link: a FIFO, a device or a link swapped in after the listing is a
    ValueError, never a wait."""
    shown = shown or path
    try:
        descriptor = os.open(path, _OPEN_FLAGS | (0 if follow_link else _NO_FOLLOW))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{what} not found: {shown}") from error
    except OSError as error:
        raise ValueError(f"cannot read {what} {shown}: {error.strerror or error}") from error
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{shown} is a {_kind(info.st_mode)}, not a regular {what}")
        return _read_to_end(descriptor, info.st_size)
    except OSError as error:
        raise ValueError(f"cannot read {what} {shown}: {error.strerror or error}") from error
    finally:
        os.close(descriptor)


def _read_to_end(descriptor: int, size: int) -> bytes:
    first = os.read(descriptor, size + 1)  # one read holds the whole file when its size is as stat said
    if len(first) == size:
        return first
    parts = [first]
    while True:
        part = os.read(descriptor, 1 << 20)
        if not part:
            return b"".join(parts)
        parts.append(part)


def _decode(image: _ListedImage) -> _Decoded:
    """The RGB pixels of one listed image (and its content hash if ``image.racy``)."""
    data = _read_regular_file(image.real or image.path, shown=image.path)
    return _Decoded(_decode_bytes(data, image.path), hashlib.sha256(data).hexdigest() if image.racy else None)


def _decode_bytes(data: bytes, path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of the encoded image ``data`` read from ``path`` (see :func:`_as_rgb8`)."""
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
        try:
            pixels = _pillow_pixels(picture)
        except Exception as error:
            raise ValueError(f"cannot decode image file {path}: {type(error).__name__}: {error}") from error
        return _as_rgb8(pixels, picture.mode, path)


def _decompression_bomb(path: str, detail: str) -> ValueError:
    return ValueError(f"{path} is refused as a possible decompression bomb ({detail}); if the file is trusted, "
                      "raise PIL.Image.MAX_IMAGE_PIXELS")


def _pillow_pixels(picture: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB for colour modes, (H, W) in the mode's own dtype for grey ones (scaled by _as_rgb8).
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


def _as_rgb8(pixels: np.ndarray, mode: str, path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from :func:`_pillow_pixels`, never clipped:

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


def _decode_all(images: List[_ListedImage], num_threads: Optional[int]) -> Tuple[Tensor, List[Optional[str]]]:
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


# ---------------------------------------------------------------------------------------------- ImageFolder + cache


def load_image_folder(
    root: PathLike, cache_dir: Optional[PathLike] = None, num_threads: Optional[int] = None
) -> ImageArrays:
    """Decodes every image of an ImageFolder directory (``root/<class>/<image>``) into one tensor.

    Classes and their indices are torchvision's ``ImageFolder``'s (sorted folder names), images in its order, with
    the rules of this module's docstring for hidden files, links and files that are not regular images. Images are
    decoded to RGB by Pillow on ``num_threads`` threads (Pillow releases the GIL while decoding) and must all have
    the same size. Modes other than RGB are converted without clipping: 16-bit grey keeps its high byte (``>> 8``),
    float images are taken as 0..1, alpha is dropped (see :func:`_as_rgb8`). A file that cannot be read or decoded,
    and a possible decompression bomb (more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels), raise ``ValueError``
    naming it.

    With ``cache_dir``, the result is stored there as ``.npy`` files keyed by a hash of every image's relative path,
    label, size, modification time, status-change time (ctime) and inode: later calls load it instead of decoding,
    and any change of a file makes a new key, so a stale cache is never read. The ctime and inode catch what the
    modification time alone misses (``os.utime``, ``rsync -t`` or ``cp -p`` putting an old mtime back): the kernel
    sets them on every change and no one can set them back. A file changed so recently (3 s) that a next change
    could fall in the same timestamp tick has its content hash recorded and checked when the cache is read, until
    a read finds it settled.
    The cache's own files are checked (format, shape, labels and a sha256 of the pixels): damaged, truncated or
    unreadable ones are rebuilt with a logged warning; a cache folder that cannot be written (permissions, full
    disk) gives a logged warning and the images are returned uncached, leaving no partial file behind.
    """
    root = _existing_folder(root)
    check_cache_dir(cache_dir)  # before decoding: else a file there fails only when the cache is written
    listed_at = time.time_ns()
    classes, images = _list_image_folder(root)
    labels = torch.tensor([image.label for image in images], dtype=torch.long)
    cache = None
    if cache_dir is not None:
        cache, images = _cache_entry(root, images, Path(cache_dir), listed_at)
        cached = _read_cache(cache, root, images, labels, classes)
        if cached is not None:
            logger.info("loaded the decoded images of %s from the cache %s", root, cache.images)
            return ImageArrays(cached, labels, classes)
    pixels, hashes = _decode_all(images, num_threads)
    if cache is not None:
        verify = {_relative(root, image.path): digest for image, digest in zip(images, hashes) if digest is not None}
        _write_cache(cache, pixels, labels, root, classes, verify)
    return ImageArrays(pixels, labels, classes)


def _existing_folder(root: PathLike) -> Path:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {root} is a file, not a folder")
    return root


def check_cache_dir(cache_dir: Optional[PathLike]) -> None:
    """``NotADirectoryError`` if ``cache_dir`` names an existing file (a missing folder is created when needed)."""
    if cache_dir is not None and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise NotADirectoryError(f"cache_dir {cache_dir} is a file, not a folder")


class _CacheEntry(NamedTuple):
    images: Path
    labels: Path
    manifest: Path


def _file_identity(info: os.stat_result) -> str:
    """What the cache key holds of a file's stat: any change of its content changes one of these."""
    return f"{info.st_size}\0{info.st_mtime_ns}\0{info.st_ctime_ns}\0{info.st_ino}"


def _relative(root: Path, path: str) -> str:
    return path[len(_prefix(root)):]


def _cache_entry(
    root: Path, images: List[_ListedImage], cache_dir: Path, listed_at: int
) -> Tuple[_CacheEntry, List[_ListedImage]]:
    """The cache files for this listing, and the images with ``racy`` set on those changed just before it."""
    cut = len(_prefix(root))
    racy_since = listed_at - _RACY_NS
    lines = [f"format={_CACHE_FORMAT}\n"]
    marked = list(images)
    for i, image in enumerate(images):
        info = image.target_stat or _lstat(image.path)
        lines.append(f"{image.path[cut:]}\0{image.label}\0{_file_identity(info)}\n")
        if info.st_ctime_ns >= racy_since:
            marked[i] = image._replace(racy=True)
    stem = f"{root.name or 'images'}-{hashlib.sha256(''.join(lines).encode()).hexdigest()[:20]}"
    return _CacheEntry(cache_dir / f"{stem}.images.npy", cache_dir / f"{stem}.labels.npy",
                       cache_dir / f"{stem}.json"), marked


def _lstat(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as error:
        raise ValueError(f"cannot read image file {path}: {error.strerror or error}") from error


class _DamagedCache(Exception):
    """The cache files exist but cannot be what the manifest says."""


def _read_cache(
    cache: _CacheEntry, root: Path, images: List[_ListedImage], labels: Tensor, classes: List[str]
) -> Optional[Tensor]:
    """The cached (N, 3, H, W) images, or None to decode: when there is no cache yet, when it is damaged (a logged
    warning), or when a racy file's content changed (logged)."""
    if not os.path.lexists(cache.manifest):
        return None
    try:
        manifest, pixels = _load_checked_cache(cache, labels, classes)
    except (_DamagedCache, OSError, ValueError, EOFError) as error:
        logger.warning("the decode cache %s is damaged or unreadable (%s): decoding again and rewriting it",
                       cache.manifest, error)
        return None
    changed = _changed_racy_files(root, manifest["verify"], images)
    if changed:
        logger.info("%s changed since it was cached (within its timestamp tick): decoding again", changed)
        return None
    _forget_settled_files(cache, manifest, root, images)
    return pixels


def _forget_settled_files(cache: _CacheEntry, manifest: Dict[str, Any], root: Path, images: List[_ListedImage]) -> None:
    """Drops from the manifest the files just verified that are no longer racy: their content is what the cache
    holds and any later change moves their ctime, so the key alone tells from now on (best effort: the check
    simply runs again next time if the manifest cannot be rewritten)."""
    racy_now = {_relative(root, image.path) for image in images if image.racy}
    still_racy = {relative: digest for relative, digest in manifest["verify"].items() if relative in racy_now}
    if len(still_racy) == len(manifest["verify"]):
        return
    try:
        text = json.dumps({**manifest, "verify": still_racy}).encode("utf-8")
        _write_atomically(cache.manifest, lambda handle: handle.write(text))
    except OSError as error:
        logger.debug("cannot update the decode cache manifest %s: %s", cache.manifest, error)


def _load_checked_cache(cache: _CacheEntry, labels: Tensor, classes: List[str]) -> Tuple[Dict[str, Any], Tensor]:
    manifest = json.loads(cache.manifest.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != _CACHE_FORMAT:
        raise _DamagedCache(f"manifest is not of cache format {_CACHE_FORMAT}")
    shape, verify = manifest.get("shape"), manifest.get("verify")
    if manifest.get("classes") != classes or not isinstance(verify, dict) or not isinstance(shape, list):
        raise _DamagedCache("manifest does not describe this folder")
    pixels = np.load(cache.images, allow_pickle=False)
    if pixels.dtype != np.uint8 or list(pixels.shape) != shape or len(pixels) != len(labels):
        raise _DamagedCache(f"images are {pixels.dtype} {pixels.shape}, the manifest says uint8 {shape}")
    if hashlib.sha256(pixels.data).hexdigest() != manifest.get("sha256"):
        raise _DamagedCache("images do not match their checksum")
    cached_labels = np.load(cache.labels, allow_pickle=False)
    if not np.array_equal(cached_labels, labels.numpy()):
        raise _DamagedCache("labels differ from the folder's")
    return manifest, torch.from_numpy(pixels)


def _changed_racy_files(root: Path, verify: Dict[str, str], images: List[_ListedImage]) -> Optional[str]:
    """The first file whose content hash differs from the one the cache recorded for it (or that cannot be read
    any more), else None."""
    by_relative = {_relative(root, image.path): image for image in images}
    for relative, recorded in verify.items():
        image = by_relative.get(relative)
        if image is None:
            return relative
        try:
            data = _read_regular_file(image.real or image.path, shown=image.path)
        except (ValueError, OSError):
            return image.path  # decoding it again names the problem
        if hashlib.sha256(data).hexdigest() != recorded:
            return image.path
    return None


def _write_cache(
    cache: _CacheEntry, images: Tensor, labels: Tensor, root: Path, classes: List[str], verify: Dict[str, str]
) -> None:
    """Writes the cache files (each to a temporary name, then renamed; the manifest last, marking the cache
    complete); a folder that cannot be written is a logged warning."""
    pixels = images.numpy()
    manifest = {"format": _CACHE_FORMAT, "root": str(root.resolve()), "classes": classes,
                "shape": list(pixels.shape), "sha256": hashlib.sha256(pixels.data).hexdigest(), "verify": verify}
    try:
        cache.images.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(cache.images, lambda handle: np.save(handle, pixels))
        _write_atomically(cache.labels, lambda handle: np.save(handle, labels.numpy()))
        _write_atomically(cache.manifest, lambda handle: handle.write(json.dumps(manifest).encode("utf-8")))
    except OSError as error:
        logger.warning("cannot write the decode cache in %s (%s: %s): the images are loaded without it",
                       cache.images.parent, type(error).__name__, error.strerror or error)


def _write_atomically(path: Path, write: Callable[[Any], Any]) -> None:
    """Writes ``path`` through a uniquely named ``.partial`` file renamed over it: an interrupted or concurrent
    write never leaves a file that looks complete, and a failed one leaves nothing."""
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
