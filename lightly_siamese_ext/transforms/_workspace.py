"""Temporaries kept from one call to the next."""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor

__all__ = ["Workspace"]


class Workspace:
    """Named buffers handed out again on the next call when the shape, dtype and device match.

    An :data:`~lightly_siamese_ext.transforms.functional.Allocator` for CPU batches:
    glibc returns multi-megabyte blocks to the OS on free, so every fresh temporary
    is page-faulted in again, which cost a fifth of the batched augmentation's time on
    the project's 2-core machine. (CUDA's caching allocator already reuses memory.)
    Buffers above ``max_bytes`` are allocated fresh and not kept. Not thread-safe:
    use one per thread.
    """

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._buffers: Dict[str, Tensor] = {}

    def __call__(self, name: str, shape: Tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        buffer = self._buffers.get(name)
        if buffer is not None and buffer.shape == shape and buffer.dtype == dtype and buffer.device == device:
            return buffer
        buffer = torch.empty(shape, dtype=dtype, device=device)
        if buffer.numel() * buffer.element_size() <= self.max_bytes:
            self._buffers[name] = buffer
        return buffer
