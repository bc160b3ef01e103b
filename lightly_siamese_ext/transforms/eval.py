"""Evaluation-time preprocessing for a batch: no augmentation, just resize (if needed) and normalise."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lightly_siamese_ext._validation import check_normalize, check_positive_int
from lightly_siamese_ext.transforms.functional import normalize, to_float_images

__all__ = ["BatchedEvalTransform"]


class BatchedEvalTransform(nn.Module):
    """uint8 (0..255) or float (0..1) images (B, 3, H, W) -> float32 (B, 3, input_size, input_size), normalised.

    Resizing (antialiased bilinear) happens only when the images are not already ``input_size``.

    Args:
        input_size: Side of the output images, or None to keep the input size.
        normalize: dict with "mean" and "std" (lightly's convention, e.g. ``IMAGENET_NORMALIZE``), or None.
    """

    def __init__(self, input_size: Optional[int] = None,
                 normalize: Optional[Dict[str, Sequence[float]]] = None) -> None:
        super().__init__()
        self.input_size = None if input_size is None else check_positive_int(input_size, "input_size")
        self.normalize = check_normalize(normalize)

    def forward(self, images: Tensor) -> Tensor:
        x = to_float_images(images)
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=self.input_size, mode="bilinear", antialias=True, align_corners=False)
        if self.normalize is not None:
            x = normalize(x, self.normalize["mean"], self.normalize["std"])
        return x


