"""A map-style dataset over uint8 image tensors that yields PIL images, for per-image transforms such as
Lightly's ``SimSiamTransform`` in a ``DataLoader`` (the path the batched pipeline is compared with)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["ArrayImageDataset"]


class ArrayImageDataset(Dataset):
    """``(transform(PIL image), label)`` for images (N, 3, H, W) uint8 and labels (N,)."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Optional[Callable[[Image.Image], Any]] = None):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC for PIL, converted once
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        image = Image.fromarray(self.images[index])
        return (self.transform(image) if self.transform is not None else image), self.labels[index]
