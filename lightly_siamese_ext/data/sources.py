"""Where a recipe's images come from: real data when it is there, else the embedded digits, never silently.

:func:`load_image_source` resolves, in order: ``data_dir`` holding torchvision's CIFAR-10 python folder
(``cifar-10-batches-py``, with its test split), an ImageFolder (``data_dir/<class>/*`` or ``data_dir/train/<class>/*``
with an optional ``test``/``val`` sibling), a CIFAR-10 download when asked for, and last the digits that ship
inside scikit-learn (:func:`load_digits_arrays`). The result says which one it used (``embedded``, ``description``)
so that the caller can tell the user loudly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_siamese_ext._validation import check_folder_path, check_positive_int
from lightly_siamese_ext.data._files import visible_entries
from lightly_siamese_ext.data.arrays import ImageArrays
from lightly_siamese_ext.data.cifar10 import load_cifar10_folder
from lightly_siamese_ext.data.image_folder import load_image_folder

__all__ = [
    "ImageSource",
    "TrainTestSplit",
    "holdout_split",
    "load_digits_arrays",
    "load_image_source",
    "load_train_test",
    "subset",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
DEFAULT_CACHE_DIR = Path(os.environ.get("LSE_CACHE_DIR", Path.home() / ".cache" / "lightly_siamese_ext"))


@dataclass(frozen=True)
class ImageSource:
    """Images for a recipe: a training split, an optional test split, and what they are."""

    train: ImageArrays
    test: Optional[ImageArrays]
    description: str
    embedded: bool


def subset(arrays: ImageArrays, indices: Tensor) -> ImageArrays:
    """The rows ``indices`` (1-D int64) of ``arrays``."""
    indices = indices.to(arrays.labels.device)
    return ImageArrays(arrays.images[indices], arrays.labels[indices], arrays.classes)


def load_digits_arrays(size: int = 32) -> ImageArrays:
    """scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels) as uint8 RGB images (N, 3, size, size).

    Embedded in scikit-learn, so it works offline anywhere. Digits are easy: random features already classify them
    well, so use them to check that a pipeline runs, not to judge representations.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8 (the digits are 8x8), got {size}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - scikit-learn is in the recipes and dev extras
        raise ImportError("the embedded dataset needs scikit-learn: pip install 'lightly-siamese-ext[recipes]'") from error
    digits = load_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    images = (images * 255.0).round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return ImageArrays(images, torch.from_numpy(digits.target).long(), [str(d) for d in range(10)])


def holdout_split(labels: Tensor, per_class: int, name: str = "per_class") -> Tuple[Tensor, Tensor]:
    """Indices ``(train, held_out)``: the last ``per_class`` samples of every class (in dataset order) are held out.
    Errors call ``per_class`` by ``name``.

    Deterministic, so every run and every reader of a report holds out the same images.
    """
    if labels.ndim != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} of shape {tuple(labels.shape)}")
    check_positive_int(per_class, name)
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    counts = torch.bincount(sorted_labels)
    present = counts > 0
    if bool((counts[present] <= per_class).any()):
        raise ValueError(
            f"{name}={per_class} would hold out whole classes: the smallest class has "
            f"{int(counts[present].min())} samples"
        )
    starts = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(len(labels)) - starts[sorted_labels]
    held_out = rank_in_class >= counts[sorted_labels] - per_class
    return order[~held_out].sort().values, order[held_out].sort().values


def load_image_source(
    data_dir: Optional[PathLike] = None,
    *,
    download: bool = False,
    cache_dir: Optional[PathLike] = None,
    embedded_size: int = 32,
) -> ImageSource:
    """Loads the first available of: ``data_dir`` (CIFAR-10 python folder or ImageFolder), a CIFAR-10 download
    (``download=True``; into ``data_dir`` or the cache folder), the embedded digits.

    A ``data_dir`` that is given but holds neither layout is an error (the user asked for it); a failed download
    falls back to the digits with a logged warning. Decoded ImageFolder images are cached as .npy under
    ``cache_dir`` (default ``~/.cache/lightly_siamese_ext`` or ``$LSE_CACHE_DIR``).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    if data_dir is not None or download:  # the embedded digits need no cache
        check_folder_path(cache_dir, "cache_dir")
    if data_dir is not None and not download:
        return _load_dir(Path(data_dir), cache_dir)
    if download:
        root = Path(data_dir) if data_dir is not None else cache_dir / "cifar10"
        try:
            from torchvision.datasets import CIFAR10

            CIFAR10(str(root), train=True, download=True)
            CIFAR10(str(root), train=False, download=True)
            return _load_dir(root, cache_dir)
        except (OSError, RuntimeError, ValueError) as error:  # offline: urllib raises OSError subclasses
            reason = f"CIFAR-10 download into {root} failed ({type(error).__name__}: {error})"
            logger.warning("%s; falling back to the embedded digits", reason)
            return _embedded(embedded_size, reason)
    return _embedded(embedded_size, "no --data-dir given")


def _embedded(size: int, reason: str) -> ImageSource:
    return ImageSource(
        load_digits_arrays(size), None,
        f"EMBEDDED scikit-learn digits (1,797 images, 8x8 upscaled to {size}x{size}; {reason})", embedded=True,
    )


def _has_class_folders(path: Path) -> bool:
    """Whether ``path`` is a folder with a (visible) sub-folder: hidden ones are left out by the same function as in
    :func:`load_image_folder`, so that both agree on what a class is."""
    return path.is_dir() and any(entry.is_dir() for entry in visible_entries(path))


def is_cifar10_folder(root: Path) -> bool:
    return (root / "cifar-10-batches-py").is_dir() or (root / "data_batch_1").is_file()


def image_folder_layout(root: Path) -> Tuple[Path, Optional[Path]]:
    """``(train folder, test folder or None)`` of an ImageFolder ``data_dir``: ``<class>/<image>``, or
    ``train/<class>/<image>`` with an optional ``test`` or ``val`` sibling; FileNotFoundError for anything else."""
    train_dir = root / "train" if _has_class_folders(root / "train") else root
    test_dir = next((root / name for name in ("test", "val") if _has_class_folders(root / name)), None)
    if train_dir is root and test_dir is None and not _has_class_folders(root):
        raise FileNotFoundError(
            f"data_dir {root} holds neither torchvision's cifar-10-batches-py nor an ImageFolder (<class>/<image>)"
        )
    return train_dir, test_dir


def _load_dir(root: Path, cache_dir: Path) -> ImageSource:
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {root} does not exist or is not a folder")
    if is_cifar10_folder(root):
        return ImageSource(load_cifar10_folder(root, train=True), load_cifar10_folder(root, train=False),
                           f"CIFAR-10 (torchvision python release) from {root}", embedded=False)
    train_dir, test_dir = image_folder_layout(root)
    train = load_image_folder(train_dir, cache_dir=cache_dir)
    test = load_image_folder(test_dir, cache_dir=cache_dir) if test_dir is not None else None
    if test is not None and test.classes != train.classes:
        raise ValueError(f"{test_dir} has classes {test.classes}, but {train_dir} has {train.classes}")
    return ImageSource(train, test, f"ImageFolder {train_dir} ({len(train.classes)} classes)", embedded=False)


@dataclass(frozen=True)
class TrainTestSplit:
    """A training split, an evaluation split, and a sentence saying what they are (for reports)."""

    train: ImageArrays
    test: ImageArrays
    description: str
    embedded: bool


def load_train_test(
    data_dir: Optional[PathLike] = None,
    *,
    download: bool = False,
    cache_dir: Optional[PathLike] = None,
    holdout_per_class: int = 500,
    embedded_size: int = 32,
    embedded_holdout_per_class: int = 30,
) -> TrainTestSplit:
    """:func:`load_image_source`, then a test split: the dataset's own if it has one, else the last
    ``holdout_per_class`` images of every class (``embedded_holdout_per_class`` for the digits) held out."""
    source = load_image_source(data_dir, download=download, cache_dir=cache_dir, embedded_size=embedded_size)
    if source.test is not None:
        return TrainTestSplit(source.train, source.test, f"{source.description}; evaluation on its test split",
                              source.embedded)
    name, per_class = (("embedded_holdout_per_class", embedded_holdout_per_class) if source.embedded
                       else ("holdout_per_class", holdout_per_class))
    train_idx, test_idx = holdout_split(source.train.labels, per_class, name)
    note = f"evaluation on the last {per_class} images of every class, held out from training"
    return TrainTestSplit(subset(source.train, train_idx), subset(source.train, test_idx),
                          f"{source.description}; {note}", source.embedded)
