"""Per-device random generators for the batched transforms: seeded once, reused, overridable per call."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor
from torch.utils.data import get_worker_info


class SeededGenerators:
    """Mixin: ``self.seed`` seeds one ``torch.Generator`` per device, created on first use.

    Inside a DataLoader worker the generator is seeded from ``seed`` and the worker's seed, which torch draws
    anew for every worker and every epoch (from the DataLoader's own generator, so a seeded DataLoader repeats
    it): workers do not repeat each other's augmentations, nor their own from the epoch before, as with the
    global RNG that torchvision's and Lightly's transforms use.
    """

    seed: int
    _generators: Dict[str, torch.Generator]

    def generator(self, device: torch.device) -> torch.Generator:
        """This module's generator on ``device`` (and DataLoader worker), created on first use."""
        seed, key = self.seed, str(device)
        worker = get_worker_info()
        if worker is not None:  # keyed by the worker's seed too: a forked worker may inherit the parent's cache
            seed, key = (self.seed + worker.seed) % 2**64, f"{key}/worker-seed-{worker.seed}"
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(seed)
        return self._generators[key]

    def _generator_for(self, images: Tensor, generator: Optional[torch.Generator]) -> torch.Generator:
        """``generator`` if given (it must live on the images' device), else this module's own for that device."""
        gen = self.generator(images.device) if generator is None else generator
        if gen.device.type != images.device.type:
            raise ValueError(f"generator must be on the images' device ({images.device}), got one on {gen.device}")
        return gen
