"""Input checks shared by the losses: fail at the door, naming the argument, what was expected and what was got."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_margin(value: object, name: str = "margin") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_embeddings(x: object, name: str) -> Tensor:
    """Checks that ``x`` is a floating (B, D) tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, D), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (B, D), got a {x.ndim}-D tensor of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_same_shape(tensors: Sequence[Tensor], names: Sequence[str]) -> None:
    shapes = [tuple(t.shape) for t in tensors]
    if any(shape != shapes[0] for shape in shapes):
        got = ", ".join(f"{name}: {shape}" for name, shape in zip(names, shapes))
        raise ValueError(f"{', '.join(names)} must have the same shape (B, D), got {got}")


def check_labels(labels: object, embeddings: Optional[Tensor] = None, name: str = "labels") -> Tensor:
    """Checks that ``labels`` is an integer or bool (B,) tensor, with one entry per row of ``embeddings`` (B, ...)
    and on its device when ``embeddings`` is given."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B,), got {type(labels).__name__}")
    if labels.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D tensor of shape (B,), got a {labels.ndim}-D tensor of shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
    if embeddings is None:
        return labels
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{name} must have one entry per embedding (length {embeddings.shape[0]}), got length {labels.shape[0]}"
        )
    if labels.device != embeddings.device:
        raise ValueError(f"{name} must be on the embeddings' device {embeddings.device}, got {labels.device}")
    return labels


def check_binary_targets(y: object, batch_size: int, device: torch.device, name: str = "y") -> Tensor:
    """Checks that ``y`` is a (B,) tensor of 0/1 (bool, integer or floating) and returns it as a bool mask."""
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B,), got {type(y).__name__}")
    if y.ndim != 1 or y.shape[0] != batch_size:
        raise ValueError(f"{name} must have shape ({batch_size},), got shape {tuple(y.shape)}")
    if y.device != device:
        raise ValueError(f"{name} must be on the embeddings' device {device}, got {y.device}")
    if y.dtype != torch.bool:
        # A validation read of the data (one host sync on CUDA): wrong targets must not train silently.
        if bool(((y != 0) & (y != 1)).any()):
            raise ValueError(f"{name} must hold 1 (similar pair) or 0 (dissimilar pair), got values {y.unique()}")
        y = y == 1
    return y
