"""A dataset held as tensors: uint8 (N, C, H, W) images, (N,) labels and class names; and numpy arrays as such."""

from __future__ import annotations

import os
from typing import List, NamedTuple, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from lightly_siamese_ext.data.targets import as_labels

__all__ = ["ImageArrays", "PathLike", "images_from_numpy"]

PathLike = Union[str, os.PathLike]


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
