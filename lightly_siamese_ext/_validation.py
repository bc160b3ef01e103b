"""Input checks shared by the models: fail at the door with the argument's name, the expected and the actual."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor


def check_image_batch(x: object, name: str, in_chans: Optional[int] = None, allow_uint8: bool = False) -> Tensor:
    """Checks that ``x`` is a (B, C, H, W) image batch, floating (or uint8 with ``allow_uint8``), with
    ``in_chans`` channels when given."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
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


def check_same_batch_size(x0: Tensor, x1: Tensor, names: str = "x0, x1") -> None:
    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"{names} must have the same batch size, got {x0.shape[0]} and {x1.shape[0]}")


def infer_in_chans(module: nn.Module) -> Optional[int]:
    """Input channels of a backbone: timm's ``in_chans`` attribute, else the first Conv2d's ``in_channels``."""
    in_chans = getattr(module, "in_chans", None)
    if isinstance(in_chans, int):
        return in_chans
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            return child.in_channels
    return None


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


