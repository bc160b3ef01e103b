"""Every input check of the package, in one place: each fails at the door with the argument's name, what was
expected and what was got.

One behaviour per check, whoever calls it. A wrong Python or tensor type is a ``TypeError``; a right type with a
wrong shape or value is a ``ValueError``. Numbers must be finite (a NaN or inf argument never trains silently).
Python flags (``soft_margin``, ``gather_distributed``, ...) are not checked: any value is read as true or false.
"""

from __future__ import annotations

import difflib
import math
from numbers import Integral, Real
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import timm
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DistributedSampler

__all__ = [
    "check_binary_targets",
    "check_choice",
    "check_distance_matrix",
    "check_embeddings",
    "check_finite",
    "check_float",
    "check_folder_path",
    "check_headless",
    "check_image_batch",
    "check_indices_tuple",
    "check_indices_not_gathered",
    "check_int",
    "check_ks",
    "check_labels",
    "check_model_name",
    "check_non_empty",
    "check_normalize",
    "check_no_positional_indices_tuple",
    "check_per_sample",
    "check_positions",
    "check_positive_int",
    "check_probability",
    "check_range",
    "check_rank_sampler",
    "check_rgb_image",
    "check_rgb_images",
    "check_same_batch_size",
    "check_same_dim",
    "check_same_shape",
    "check_vector",
    "is_single_image",
    "topk_within",
]


# ------------------------------------------------------------------------------------------------ numbers
def check_int(value: object, name: str, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (either bound optional). bool is not an int here."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        kind = {0: "a non-negative int", 1: "a positive int"}.get(minimum) if maximum is None else None  # type: ignore
        kind = kind or f"an int {_bounds_text(minimum, maximum, False, False)}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value)


def check_positive_int(value: object, name: str) -> int:
    return check_int(value, name, minimum=1)


def check_float(
    value: object,
    name: str,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    *,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (inclusive unless ``exclusive_*``). NaN and inf are refused."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    too_low = minimum is not None and (number <= minimum if exclusive_minimum else number < minimum)
    too_high = maximum is not None and (number >= maximum if exclusive_maximum else number > maximum)
    if not math.isfinite(number) or too_low or too_high:
        bounds = _bounds_text(minimum, maximum, exclusive_minimum, exclusive_maximum)
        raise ValueError(f"{name} must be a finite number {bounds}".rstrip() + f", got {value!r}")
    return number


def check_probability(value: object, name: str) -> float:
    return check_float(value, name, 0.0, 1.0)


def check_range(value: object, name: str, low: float = -math.inf, high: float = math.inf) -> Tuple[float, float]:
    """A finite ``(min, max)`` pair with ``low <= min <= max <= high``."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a (min, max) pair, got {type(value).__name__} {value!r}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {len(value)} values {value!r}")
    first, second = (check_float(v, f"{name}[{i}]", low, high) for i, v in enumerate(value))
    if first > second:
        raise ValueError(f"{name} must be a (min, max) pair with min <= max, got {value!r}")
    return first, second


def check_choice(
    value: object, name: str, choices: Sequence[str], aliases: Optional[Mapping[str, str]] = None
) -> str:
    """``value`` if it is one of ``choices``; another spelling in ``aliases`` (e.g. PML's ``"semihard"``) is
    returned as the choice it stands for."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {tuple(choices)} (a str), got {type(value).__name__} {value!r}")
    if aliases and value in aliases:
        value = aliases[value]
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def _bounds_text(minimum: Optional[float], maximum: Optional[float], open_low: bool, open_high: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"in {'(' if open_low else '['}{minimum:g}, {maximum:g}{')' if open_high else ']'}"
    if minimum is not None:
        return f"{'>' if open_low else '>='} {minimum:g}"
    if maximum is not None:
        return f"{'<' if open_high else '<='} {maximum:g}"
    return ""


# ------------------------------------------------------------------------------------------------ tensors
def _check_tensor(x: object, name: str, shape: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(x).__name__}")
    return x


def check_embeddings(x: object, name: str) -> Tensor:
    """A floating (B, D) tensor (B may be 0: see :func:`check_non_empty`)."""
    x = _check_tensor(x, name, "(B, D)")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (B, D), got a {x.ndim}-D tensor of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_vector(x: object, name: str, length: Optional[int] = None, length_of: str = "") -> Tensor:
    """A floating (P,) tensor, with ``length`` entries (one per ``length_of``) when given."""
    x = _check_tensor(x, name, "(P,)")
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (P,), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    _check_length(x, name, length, length_of)
    return x


def check_finite(x: Tensor, name: str) -> Tensor:
    """``x`` without NaN or inf entries (one pass and one host sync: for evaluation, not for a training step)."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} must be finite, got {bad} NaN or inf entries of {x.numel()} (a diverged model?)")
    return x


def check_non_empty(x: Tensor, name: str) -> Tensor:
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    return x


def check_labels(
    labels: object,
    name: str = "labels",
    length: Optional[int] = None,
    length_of: str = "embedding",
    device: Optional[torch.device] = None,
) -> Tensor:
    """Integer (or bool) class labels (B,) as int64; ``length`` entries (one per ``length_of``, e.g. "row of
    query") and on ``device`` when those are given."""
    labels = _check_tensor(labels, name, "(B,)")
    if labels.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D tensor of shape (B,), got a {labels.ndim}-D tensor of shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
    _check_length(labels, name, length, length_of)
    if device is not None and labels.device != device:
        raise ValueError(f"{name} must be on the device of what it labels ({device}), got {labels.device}")
    return labels.long()


def check_positions(indices: object, name: str = "indices") -> Tensor:
    """Integer positions (K,) (a tensor, array or sequence) as an int64 tensor. A bool mask is refused: read as
    positions it would select items 0 and 1."""
    if not isinstance(indices, Tensor):
        if not isinstance(indices, (Sequence, np.ndarray)) or isinstance(indices, (str, bytes)):
            raise TypeError(f"{name} must be integer positions (K,) (a tensor, array or sequence), got "
                            f"{type(indices).__name__}")
        array = np.asarray(indices)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold integer positions, got an array of dtype {array.dtype}")
        indices = torch.as_tensor(array)
    if indices.ndim != 1:
        raise ValueError(f"{name} must be a 1-D tensor of shape (K,), got shape {tuple(indices.shape)}")
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        raise TypeError(f"{name} must hold integer positions, got dtype {indices.dtype}"
                        + (" (for a bool mask, pass mask.nonzero().squeeze(1))" if indices.dtype == torch.bool else ""))
    return indices.long()


def _check_length(x: Tensor, name: str, length: Optional[int], length_of: str) -> None:
    if length is not None and x.shape[0] != length:
        raise ValueError(f"{name} must have one entry per {length_of} ({length}), got {x.shape[0]}")


def check_binary_targets(y: object, batch_size: int, device: Optional[torch.device], name: str = "y") -> Tensor:
    """A (B,) tensor of 0/1 (bool, integer or floating), on ``device`` when given, returned as a bool mask.

    Reading the values is one host sync on CUDA: wrong targets must not train silently."""
    y = _check_tensor(y, name, "(B,)")
    if y.ndim != 1 or y.shape[0] != batch_size:
        raise ValueError(f"{name} must have shape ({batch_size},), got shape {tuple(y.shape)}")
    if device is not None and y.device != device:
        raise ValueError(f"{name} must be on the embeddings' device {device}, got {y.device}")
    if y.dtype == torch.bool:
        return y
    if bool(((y != 0) & (y != 1)).any()):
        raise ValueError(f"{name} must hold 1 (similar pair) or 0 (dissimilar pair), got values {y.unique()}")
    return y == 1


def check_same_shape(tensors: Sequence[Tensor], names: Sequence[str]) -> None:
    shapes = [tuple(t.shape) for t in tensors]
    if any(shape != shapes[0] for shape in shapes):
        got = ", ".join(f"{name}: {shape}" for name, shape in zip(names, shapes))
        raise ValueError(f"{', '.join(names)} must have the same shape (B, D), got {got}")


def check_same_dim(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names} must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}")


def check_same_batch_size(x0: Tensor, x1: Tensor, names: str = "x0, x1") -> None:
    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"{names} must have the same batch size, got {x0.shape[0]} and {x1.shape[0]}")


_TRIPLET_PARTS = ("anchor", "positive", "negative")
_PAIR_PARTS = ("anchor of the positive pairs", "positive", "anchor of the negative pairs", "negative")


def check_indices_tuple(indices: object, batch_size: int, device: torch.device) -> Tuple[Tensor, ...]:
    """A miner's output as pytorch-metric-learning passes it (``indices_tuple``): triplets ``(anchor, positive,
    negative)`` or pairs ``(anchor1, positive, anchor2, negative)``, 1-D integer tensors on ``device`` holding
    indices into a batch of ``batch_size``; returned as int64.

    Reading the range is one host sync on CUDA: a negative index (which PyTorch indexing would wrap around to the
    end of the batch) or one past the batch must not train silently.
    """
    name = "indices_tuple"
    expected = (
        f"{name} must be a tuple of 3 index tensors (anchor, positive, negative) or 4 (anchor1, positive, anchor2, "
        "negative), as pytorch-metric-learning's miners return"
    )
    if not isinstance(indices, (tuple, list)):
        raise TypeError(f"{expected}, got {type(indices).__name__}")
    if len(indices) not in (3, 4):
        raise ValueError(f"{expected}, got a {type(indices).__name__} of {len(indices)}")
    parts = _TRIPLET_PARTS if len(indices) == 3 else _PAIR_PARTS
    for i, (index, part) in enumerate(zip(indices, parts)):
        label = f"{name}[{i}] ({part})"
        index = _check_tensor(index, label, "(T,)")
        if index.ndim != 1:
            raise ValueError(f"{label} must be 1-D of shape (T,), got shape {tuple(index.shape)}")
        if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
            raise TypeError(f"{label} must hold integer indices, got dtype {index.dtype}")
        if index.device != device:
            raise ValueError(f"{label} must be on the embeddings' device {device}, got {index.device}")
    groups = [(0, 1, 2)] if len(indices) == 3 else [(0, 1), (2, 3)]
    for group in groups:
        lengths = [len(indices[i]) for i in group]
        if len(set(lengths)) > 1:
            named = ", ".join(f"{name}[{i}]: {len(indices[i])}" for i in group)
            raise ValueError(f"{' and '.join(f'{name}[{i}]' for i in group)} must have the same length, got {named}")
    checked = tuple(index.long() for index in indices)
    every = torch.cat(checked)
    if every.numel():
        low, high = torch.stack(torch.aminmax(every)).tolist()
        if low < 0 or high >= batch_size:
            raise ValueError(
                f"{name} must hold indices in [0, {batch_size}) (rows of the embeddings), got values from {low} to "
                f"{high}"
            )
    return checked


def check_no_positional_indices_tuple(args: Sequence[object], loss: str, explicit_form: str) -> None:
    """pytorch-metric-learning's positional call ``loss(embeddings, labels, indices_tuple)``, which would read here
    as the explicit ``explicit_form``: a ``TypeError`` that names it and the keyword call instead."""
    if len(args) == 3 and isinstance(args[2], (tuple, list)):
        raise TypeError(
            f"{loss} got a {type(args[2]).__name__} of {len(args[2])} tensors as its third positional argument, as in "
            "pytorch-metric-learning's loss(embeddings, labels, indices_tuple); here three positional arguments are "
            f"{explicit_form}. "
            "Pass a miner's output by keyword: loss(embeddings, labels, indices_tuple=miner(embeddings, labels))"
        )


def check_indices_not_gathered(gather_distributed: bool) -> None:
    """``indices_tuple`` indexes this rank's batch, not the batch gathered from all ranks."""
    if gather_distributed:
        raise ValueError(
            "indices_tuple cannot be used with gather_distributed=True: the indices address this rank's batch, "
            "the loss would be that of the gathered global batch; use gather_distributed=False (each rank's loss "
            "on its own tuples, averaged by DDP) or mine on the gathered embeddings yourself"
        )


def check_distance_matrix(distances: object, labels: object) -> Tensor:
    """A floating square (B, B) matrix and its (B,) labels; returns the labels as int64."""
    distances = _check_tensor(distances, "distances", "(B, B)")
    if distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f"distances must be a square (B, B) matrix, got shape {tuple(distances.shape)}")
    if not distances.is_floating_point():
        raise TypeError(f"distances must be a floating-point tensor, got dtype {distances.dtype}")
    return check_labels(labels, length=distances.shape[0], length_of="row of distances", device=distances.device)


def check_image_batch(x: object, name: str, in_chans: Optional[int] = None, allow_uint8: bool = False) -> Tensor:
    """A (B, C, H, W) image batch, floating (or uint8 with ``allow_uint8``), with ``in_chans`` channels when
    given."""
    x = _check_tensor(x, name, "(B, C, H, W)")
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-D image batch of shape (B, C, H, W), got a {x.ndim}-D tensor of shape "
            f"{tuple(x.shape)}"
        )
    if allow_uint8 and x.dtype != torch.uint8 and not x.is_floating_point():
        raise TypeError(f"{name} must be uint8 (0..255) or floating point (0..1), got dtype {x.dtype}")
    if not allow_uint8 and not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (normalised images), got dtype {x.dtype}; "
            f"convert uint8 images first, e.g. with the batched transforms in lightly_siamese_ext.transforms"
        )
    if in_chans is not None and x.shape[1] != in_chans:
        raise ValueError(
            f"{name} must have {in_chans} channels (shape (B, {in_chans}, H, W)), got shape {tuple(x.shape)}"
        )
    return x


#: How far float images may stray outside [0, 1] by rounding (resampling overshoots a little) before they count as
#: another scale (0..255, or normalised) and are refused.
UNIT_RANGE_TOLERANCE = 1e-3


def check_rgb_images(images: object, name: str = "images") -> Tensor:
    """What the batched transforms take: a non-empty (B, 3, H, W) batch, uint8 (0..255) or floating in [0, 1].

    Float images cost one min/max pass and a host sync (uint8 ones nothing): float images in 0..255 or already
    normalised would otherwise be clamped into nonsense without a word."""
    images = check_image_batch(images, name, in_chans=3, allow_uint8=True)
    if images.numel() == 0:
        raise ValueError(f"{name} must hold at least one image of at least 1x1 pixels, got shape {tuple(images.shape)}")
    if images.is_floating_point():
        low, high = (float(v) for v in torch.aminmax(images))
        if not (-UNIT_RANGE_TOLERANCE <= low and high <= 1.0 + UNIT_RANGE_TOLERANCE):  # NaN fails both
            raise ValueError(f"{name} must lie in [0, 1] when floating point (pass 0..255 images as uint8), got "
                             f"values in [{low:.4g}, {high:.4g}]")
    return images


def is_single_image(x: object) -> bool:
    """A PIL image or a 3-D (C, H, W) tensor: what a per-image transform (torchvision's, Lightly's) receives."""
    return isinstance(x, Image.Image) or (isinstance(x, Tensor) and x.ndim == 3)


def check_rgb_image(image: object, name: str = "image") -> Tensor:
    """One image, a PIL RGB image or a (3, H, W) tensor (uint8 or floating in [0, 1]), as a (1, 3, H, W) batch."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"{name} must be an RGB PIL image, got mode {image.mode!r}; use image.convert('RGB')")
        image = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    x = _check_tensor(image, name, "(3, H, W)")
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"{name} must be one RGB image of shape (3, H, W), got shape {tuple(x.shape)}")
    return check_rgb_images(x.unsqueeze(0), name)


def check_per_sample(value: object, name: str, batch_size: int, trailing: Tuple[int, ...] = ()) -> Tensor:
    """A tensor of shape (B, *trailing): one parameter per sample of a batch."""
    value = _check_tensor(value, name, str((batch_size, *trailing)))
    if tuple(value.shape) != (batch_size, *trailing):
        raise ValueError(f"{name} must be a tensor of shape {(batch_size, *trailing)} (one per sample), got "
                         f"{tuple(value.shape)}")
    return value


# --------------------------------------------------------------------------------------- everything else
def check_ks(ks: object, name: str, upper: Optional[int] = None, upper_means: str = "") -> Tuple[int, ...]:
    """A non-empty sequence of ints in [1, upper]."""
    if not isinstance(ks, Sequence) or isinstance(ks, str):
        raise TypeError(f"{name} must be a non-empty sequence of positive ints, got {type(ks).__name__} {ks!r}")
    if len(ks) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got an empty {type(ks).__name__}")
    for k in ks:
        check_positive_int(k, f"every entry of {name}")
        if upper is not None and k > upper:
            raise ValueError(f"{name} entries must be at most {upper} ({upper_means}), got {k}")
    return tuple(int(k) for k in ks)


def topk_within(topk: object, num_classes: int) -> Tuple[int, ...]:
    """The entries of ``topk`` that make sense for ``num_classes`` classes (no top-5 among 3 classes)."""
    check_positive_int(num_classes, "num_classes")
    ks = check_ks(topk, "topk")
    kept = tuple(k for k in ks if k <= num_classes)
    if not kept:
        raise ValueError(f"topk must contain a value <= num_classes ({num_classes}), got {ks}")
    return kept


def check_normalize(normalize: object) -> Optional[Dict[str, List[float]]]:
    """None, or lightly's ``IMAGENET_NORMALIZE`` layout: {"mean": 3 finite values, "std": 3 positive values}."""
    if normalize is None:
        return None
    if not isinstance(normalize, Mapping):
        raise TypeError(f"normalize must be None or a dict with 'mean' and 'std', got {type(normalize).__name__}")
    if not {"mean", "std"} <= set(normalize):
        raise ValueError(f"normalize must be None or a dict with 'mean' and 'std', got keys {list(normalize)}")
    checked = {}
    for key, minimum in (("mean", None), ("std", 0.0)):
        values = normalize[key]
        if not isinstance(values, Sequence) or isinstance(values, str):
            raise TypeError(f"normalize['{key}'] must be a sequence of 3 values (RGB), got {type(values).__name__}")
        if len(values) != 3:
            raise ValueError(f"normalize['{key}'] must have 3 values (RGB), got {values!r}")
        checked[key] = [check_float(v, f"normalize['{key}']", minimum, exclusive_minimum=True) for v in values]
    return checked


def check_folder_path(path: object, name: str) -> None:
    """``NotADirectoryError`` if ``path`` (when given) names an existing file: a folder argument that is missing is
    created when needed, one that is a file fails only when written to, often after all the work."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():  # type: ignore[arg-type]
        raise NotADirectoryError(f"{name} {path} is a file, not a folder")


def check_headless(module: torch.nn.Module, argument: str = "name_or_module") -> torch.nn.Module:
    """``module`` unless it is a timm model with its classifier on (``num_classes > 0`` and a classifier that is
    not ``nn.Identity``, the torchvision / Lightly idiom ``model.fc = nn.Identity()``), which would hand its class
    logits on as features: a ValueError naming the one-line fix instead."""
    num_classes = getattr(module, "num_classes", 0)
    headless = isinstance(_classifier_or_none(module), torch.nn.Identity)
    if (callable(getattr(module, "reset_classifier", None)) and isinstance(num_classes, int) and num_classes > 0
            and not headless):
        raise ValueError(
            f"{argument} is a timm model with its classifier on (num_classes={num_classes}): it would be trained "
            f"on its {num_classes} class logits, not on its features. Pass it headless: call "
            "model.reset_classifier(0) first (keeps every other weight), or timm.create_model(name, num_classes=0)"
        )
    return module


def _classifier_or_none(module: torch.nn.Module) -> Optional[torch.nn.Module]:
    """timm's ``get_classifier()``, or None where it fails (``model.head = nn.Identity()`` on a model whose
    ``get_classifier`` returns ``self.head.fc``: the classifier cannot be told, the model counts as not headless)."""
    get_classifier = getattr(module, "get_classifier", None)
    try:
        return get_classifier() if callable(get_classifier) else None
    except (AttributeError, TypeError):
        return None


def check_model_name(name: object, argument: str = "name_or_module") -> str:
    """``name`` if timm knows it, else ``ValueError`` naming ``argument`` and listing close matches."""
    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ValueError(f"{argument}: unknown timm model {name!r}{hint}")
    return name


def check_rank_sampler(sampler: object, length: int, num_replicas: Optional[int], rank: Optional[int]) -> None:
    """What a batch sampler that draws its own batches takes as ``sampler``, to learn its rank, world size and
    epoch: a ``DistributedSampler`` over the same ``length`` items, and then no ``num_replicas`` / ``rank``."""
    if not isinstance(sampler, DistributedSampler):
        raise TypeError(
            "sampler must be a torch.utils.data.DistributedSampler (it only tells the batch sampler its rank, world "
            f"size and epoch; the batches are drawn from the labels), got {type(sampler).__name__}"
        )
    if num_replicas is not None or rank is not None:
        raise ValueError(
            "num_replicas and rank must be None when a sampler is given (the sampler decides them), got "
            f"num_replicas={num_replicas!r}, rank={rank!r}; under Lightning, which passes its DistributedSampler, "
            "Trainer(use_distributed_sampler=False) keeps your own"
        )
    dataset = getattr(sampler, "dataset", None)
    size = len(dataset) if hasattr(dataset, "__len__") else None  # type: ignore[arg-type]
    if size is not None and size != length:
        raise ValueError(
            f"sampler must cover the {length} labelled items (labels must label the DataLoader's dataset), got a "
            f"DistributedSampler over {size} items"
        )
