"""Collapse monitor for Siamese self-supervised training (SimSiam, Chen & He 2021, Fig. 2)."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from lightly.utils import dist
from torch import Tensor

from lightly_siamese_ext._validation import check_embeddings, check_float, check_non_empty

__all__ = ["CollapseMonitor"]


class CollapseMonitor:
    """Per-dimension standard deviation of L2-normalised outputs, accumulated over an epoch.

    The quantity of lightly's :func:`lightly.utils.debug.std_of_l2_normalized` (the mean over dimensions of the
    unbiased std of ``F.normalize(z)``), computed over every output passed to :meth:`update` as if they had been
    concatenated. For outputs spread evenly over the unit sphere of R^d it is about ``1 / sqrt(d)``; for outputs
    that have collapsed to one vector it is 0. :attr:`ratio` is ``std * sqrt(d)``: about 1 when healthy, 0 when
    collapsed, and about ``sqrt(m / d)`` when the outputs only use m of the d directions.

    :meth:`update` keeps running statistics on the outputs' device with no host synchronisation (Chan et al.'s
    pairwise merge of count, mean and sum of squared deviations, stable in float32); :meth:`compute` synchronises
    once per call and caches the result until the next update.

    Args:
        threshold: :attr:`is_collapsed` is ``ratio < threshold``. The default 0.1 (the outputs use about 1 % of the
            dimensions) fires on collapse, not on the partial dimensional collapse common in healthy runs.
        gather_distributed: Merge the statistics of all processes in :meth:`compute` (else each rank reports its
            own shard's, which is also a fair estimate).

    Example (once per epoch)::

        monitor.reset()
        for x0, x1 in loader:
            out = model(x0, x1)
            monitor.update(out.z0)  # the projections, detached; no host sync
        if monitor.is_collapsed:
            warnings.warn(f"representation collapse: std * sqrt(d) = {monitor.ratio:.3f}")
    """

    def __init__(self, threshold: float = 0.1, gather_distributed: bool = False) -> None:
        self.threshold = check_float(threshold, "threshold", 0.0, exclusive_minimum=True)
        self.gather_distributed = gather_distributed
        self.reset()

    def reset(self) -> None:
        """Forgets every output seen (call at the start of each epoch)."""
        self.num_samples = 0
        self.dim: Optional[int] = None
        self._mean: Optional[Tensor] = None
        self._m2: Optional[Tensor] = None
        self._std: Optional[float] = None

    @torch.no_grad()
    def update(self, z: Tensor) -> None:
        """Adds a batch of outputs z (B, d) (detached; any float dtype, accumulated in float32)."""
        z = check_non_empty(check_embeddings(z, "z"), "z")
        if self.dim is not None and z.shape[1] != self.dim:
            raise ValueError(f"z must have {self.dim} columns like the earlier batches, got shape {tuple(z.shape)}")
        normalized = F.normalize(z.detach().float(), dim=1)
        var, mean = torch.var_mean(normalized, dim=0, unbiased=False)
        state = (z.shape[0], mean, var * z.shape[0])
        if self._mean is None or self._m2 is None:
            self.num_samples, self._mean, self._m2 = state
        else:
            self.num_samples, self._mean, self._m2 = _merge((self.num_samples, self._mean, self._m2), state)
        self.dim = z.shape[1]
        self._std = None

    def compute(self) -> float:
        """Mean per-dimension std of the L2-normalised outputs seen since :meth:`reset` (one host sync)."""
        if self._std is not None:
            return self._std
        if self._mean is None or self._m2 is None:
            raise ValueError("CollapseMonitor has no outputs: call update(z) before compute()")
        state: Tuple[int, Tensor, Tensor] = (self.num_samples, self._mean, self._m2)
        if self.gather_distributed and dist.world_size() > 1:
            local = torch.cat([self._mean.new_tensor([float(self.num_samples)]), self._mean, self._m2])
            parts = dist.gather(local)
            counts = torch.stack([part[0] for part in parts]).tolist()
            dim = self._mean.shape[0]
            state = (int(counts[0]), parts[0][1 : 1 + dim], parts[0][1 + dim :])
            for count, part in zip(counts[1:], parts[1:]):
                state = _merge(state, (int(count), part[1 : 1 + dim], part[1 + dim :]))
        count, _, m2 = state
        if count < 2:
            raise ValueError(f"CollapseMonitor needs at least 2 outputs for a standard deviation, got {count}")
        std = float((m2 / (count - 1)).clamp_min(0).sqrt().mean())
        if not math.isfinite(std):  # NaN would read as "not collapsed"
            raise ValueError("z must be finite: the outputs passed to update() held NaN or inf (a diverged model?)")
        self._std = std
        return self._std

    @property
    def ratio(self) -> float:
        """``std * sqrt(d)``: about 1 for healthy outputs, 0 for collapsed ones."""
        std = self.compute()
        assert self.dim is not None
        return std * math.sqrt(self.dim)

    @property
    def is_collapsed(self) -> bool:
        """Whether :attr:`ratio` is below ``threshold``."""
        return self.ratio < self.threshold


def _merge(a: Tuple[int, Tensor, Tensor], b: Tuple[int, Tensor, Tensor]) -> Tuple[int, Tensor, Tensor]:
    """Merges (count, mean, sum of squared deviations) of two disjoint sets (Chan, Golub & LeVeque 1979)."""
    count_a, mean_a, m2_a = a
    count_b, mean_b, m2_b = b
    count = count_a + count_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (count_b / count)
    m2 = m2_a + m2_b + delta.square() * (count_a * count_b / count)
    return count, mean, m2
