"""Shared by the evaluation functions: input checks that fail at the door (naming the argument, the expected and
the got), and top-k hit counting."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from lightly.utils.benchmarking.topk import mean_topk_accuracy
from torch import Tensor

from lightly_siamese_ext._validation import check_positive_int

DISTANCES = ("euclidean", "cosine")


def check_embeddings(x: object, name: str) -> Tensor:
    """Checks that ``x`` is a floating (N, D) tensor with N >= 1 and D >= 1."""
    return check_float_tensor(x, name, "(N, D)")


def check_float_tensor(x: object, name: str, shape: str) -> Tensor:
    """Checks that ``x`` is a non-empty floating tensor with as many dimensions as ``shape`` names, e.g. "(P,)"."""
    ndim = len([part for part in shape.strip("()").split(",") if part.strip()])
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a floating-point torch.Tensor of shape {shape}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D of shape {shape}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    return x


def check_labels(
    labels: object, name: str, length: Optional[int] = None, length_of: str = "", allow_bool: bool = False
) -> Tensor:
    """Checks that ``labels`` is a 1-D integer tensor with one entry per row of ``length_of``."""
    kind = "a bool or integer" if allow_bool else "an integer"
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be {kind} torch.Tensor of shape (N,), got {type(labels).__name__}")
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (N,), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or (labels.dtype == torch.bool and not allow_bool):
        raise TypeError(f"{name} must have {kind} dtype, got {labels.dtype}")
    if length is not None and labels.shape[0] != length:
        raise ValueError(f"{name} must have one entry per row of {length_of} ({length}), got {labels.shape[0]}")
    return labels


def check_same_dim(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names} must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}")


def check_distance(distance: object) -> str:
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    return str(distance)


def check_ks(ks: object, name: str, upper: Optional[int] = None, upper_means: str = "") -> Tuple[int, ...]:
    """Checks a non-empty sequence of ints in [1, upper]."""
    if isinstance(ks, int) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {ks!r}")
    for k in ks:
        check_positive_int(k, f"every entry of {name}")
        if upper is not None and k > upper:
            raise ValueError(f"{name} entries must be at most {upper} ({upper_means}), got {k}")
    return tuple(ks)


def topk_within(topk: object, num_classes: int) -> Tuple[int, ...]:
    """The entries of ``topk`` that make sense for ``num_classes`` classes (no top-5 among 3 classes)."""
    check_positive_int(num_classes, "num_classes")
    ks = check_ks(topk, "topk")
    kept = tuple(k for k in ks if k <= num_classes)
    if not kept:
        raise ValueError(f"topk must contain a value <= num_classes ({num_classes}), got {ks}")
    return kept


def check_positive_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def topk_hits(predicted: Tensor, targets: Tensor, ks: Sequence[int]) -> Tensor:
    """Number of rows (float64, one per k) whose target is among the first k predicted classes (B, >= max(ks)).

    lightly's :func:`mean_topk_accuracy` gives float32 means; times B they are whole numbers up to rounding, so
    rounding recovers exact counts (0.102, not 0.10199999996).
    """
    accuracy = mean_topk_accuracy(predicted, targets.to(predicted.device), k=ks)
    return (torch.stack([accuracy[k] for k in ks]).double() * predicted.shape[0]).round()
