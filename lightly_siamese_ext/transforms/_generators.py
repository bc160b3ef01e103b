"""Per-device random generators for the batched transforms: seeded once, reused, overridable per call."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor


class SeededGenerators:
    """Mixin: ``self.seed`` seeds one ``torch.Generator`` per device, created on first use."""

    seed: int
    _generators: Dict[str, torch.Generator]

    def generator(self, device: torch.device) -> torch.Generator:
        """This module's generator on ``device``, created from ``seed`` on first use."""
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def _generator_for(self, images: Tensor, generator: Optional[torch.Generator]) -> torch.Generator:
        """``generator`` if given (it must live on the images' device), else this module's own for that device."""
        gen = self.generator(images.device) if generator is None else generator
        if gen.device.type != images.device.type:
            raise ValueError(f"generator must be on the images' device ({images.device}), got one on {gen.device}")
        return gen
