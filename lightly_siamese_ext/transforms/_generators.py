"""Per-device random generators for the batched transforms: seeded once, reused, overridable per call."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from lightly.utils import dist
from torch import Tensor
from torch.utils.data import get_worker_info

__all__ = ["SeededGenerators", "stream_seed"]


def stream_seed(seed: int, rank: int, worker_seed: Optional[int]) -> int:
    """The seed of one process's augmentation stream, from the transform's ``seed``, the DDP ``rank`` and the
    DataLoader worker's seed (None outside workers).

    Rank 0 keeps the single-process streams: ``seed``, or ``seed + worker_seed`` in a worker. Other ranks hash all
    three (numpy's ``SeedSequence``): plain sums would repeat streams (rank 1 with seed 0 = rank 0 with seed 1),
    and workers on different ranks get equal worker seeds when every rank seeds torch alike (``seed_everything``).
    """
    if rank == 0:
        return seed if worker_seed is None else (seed + worker_seed) % 2**64
    entropy = [seed % 2**64, rank, 0 if worker_seed is None else 1 + worker_seed % 2**64]
    low, high = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32).tolist()
    return low | (high << 32)


class SeededGenerators:
    """Mixin: ``self.seed`` seeds one ``torch.Generator`` per device, DDP rank and DataLoader worker, created on
    first use.

    Under DDP each rank draws its own stream (:func:`stream_seed`), the rank read at the call, so a transform built
    before ``init_process_group`` does not give every rank the same views. Inside a DataLoader worker the generator
    is seeded from ``seed`` and the worker's seed, which torch draws anew for every worker and every epoch (from
    the DataLoader's own generator, so a seeded DataLoader repeats it): workers do not repeat each other's
    augmentations, nor their own from the epoch before, as with the global RNG that torchvision's and Lightly's
    transforms use.
    """

    seed: int
    _generators: Dict[str, torch.Generator]

    def generator(self, device: torch.device) -> torch.Generator:
        """This module's generator on ``device`` (for this rank and DataLoader worker), created on first use."""
        rank, worker = dist.rank(), get_worker_info()
        worker_seed = None if worker is None else worker.seed
        # Keyed by rank and worker seed too: a generator made before the process group existed, or inherited
        # by a forked worker from the parent's cache, must not be reused.
        key = f"{device}/rank-{rank}/worker-seed-{worker_seed}"
        if key not in self._generators:
            seed = stream_seed(self.seed, rank, worker_seed)
            self._generators[key] = torch.Generator(device=device).manual_seed(seed)
        return self._generators[key]

    def _generator_for(self, images: Tensor, generator: Optional[torch.Generator]) -> torch.Generator:
        """``generator`` if given (it must live on the images' device), else this module's own for that device."""
        gen = self.generator(images.device) if generator is None else generator
        if gen.device.type != images.device.type:
            raise ValueError(f"generator must be on the images' device ({images.device}), got one on {gen.device}")
        return gen
