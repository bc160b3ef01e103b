"""Which share of the data this process gets under DDP, decided when it is used, not when the loader is built."""

from __future__ import annotations

import math
from typing import Optional, Sized, Tuple

from lightly.utils import dist
from torch.utils.data import DistributedSampler

from lightly_siamese_ext._validation import check_int, check_positive_int

__all__ = ["LazyDistributedSampler", "resolve_replicas"]


def resolve_replicas(num_replicas: Optional[int], rank: Optional[int]) -> Tuple[int, int]:
    """``(num_replicas, rank)``, defaulting to ``lightly.utils.dist.world_size()`` and ``rank()`` now."""
    num_replicas = dist.world_size() if num_replicas is None else check_positive_int(num_replicas, "num_replicas")
    rank = dist.rank() if rank is None else check_int(rank, "rank", 0, num_replicas - 1)  # [0, num_replicas)
    return num_replicas, rank


class LazyDistributedSampler(DistributedSampler):
    """``torch.utils.data.DistributedSampler`` whose ``num_replicas`` and ``rank``, unless given, are read from
    the process group whenever they are used (each iteration, ``len()``), not once at construction.

    A loader built before ``init_process_group`` (at module level, as Lightly's distributed example builds its
    loader) would otherwise see a world of one, and every rank would train on the same batches. The order, the
    padding and ``drop_last`` are DistributedSampler's own: its ``__iter__``, ``__len__`` and ``set_epoch`` run
    unchanged on the attributes resolved here.

    Args:
        dataset: anything sized; only its length is used.
        num_replicas, rank: fixed values, or None for ``lightly.utils.dist.world_size()`` and ``rank()`` at use.
        shuffle, seed, drop_last: as in ``DistributedSampler``.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        # DistributedSampler.__init__ would read the process group now: its attributes are set here instead.
        if num_replicas is not None:
            resolve_replicas(num_replicas, rank)  # what is wrong already fails now
        elif rank is not None:
            check_int(rank, "rank", 0)
        self.dataset = dataset  # type: ignore[assignment]
        self._num_replicas = num_replicas
        self._rank = rank
        self.epoch = 0
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)

    @property  # type: ignore[override]
    def num_replicas(self) -> int:
        return resolve_replicas(self._num_replicas, self._rank)[0]

    @property  # type: ignore[override]
    def rank(self) -> int:
        return resolve_replicas(self._num_replicas, self._rank)[1]

    @property  # type: ignore[override]
    def num_samples(self) -> int:
        """Samples per rank and epoch, as DistributedSampler computes them."""
        size, replicas = len(self.dataset), self.num_replicas
        if self.drop_last and size % replicas != 0:
            return math.ceil((size - replicas) / replicas)
        return math.ceil(size / replicas)

    @property  # type: ignore[override]
    def total_size(self) -> int:
        return self.num_samples * self.num_replicas
