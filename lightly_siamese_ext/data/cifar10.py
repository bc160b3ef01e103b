"""torchvision's CIFAR-10 python release (``cifar-10-batches-py``) read as :class:`ImageArrays`, without executing
the pickles (a restricted unpickler admits only what the format holds) and with the labels checked on load."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from lightly_siamese_ext.data._files import read_regular_file
from lightly_siamese_ext.data.arrays import ImageArrays, PathLike

__all__ = ["load_cifar10_folder"]

_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_ROW = 3 * 32 * 32


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
    data = read_regular_file(str(path), what="CIFAR-10 file", follow_link=True)
    try:
        return _CIFARUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as error:  # a hostile or damaged pickle can raise nearly anything; it is refused the same way
        raise ValueError(f"cannot read CIFAR-10 file {path}: {type(error).__name__}: {error}") from error
