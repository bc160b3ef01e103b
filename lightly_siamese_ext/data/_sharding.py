"""DDP arguments shared by the samplers and the loader."""

from __future__ import annotations

from typing import Optional, Tuple

from lightly.utils import dist

from lightly_siamese_ext._validation import check_int, check_positive_int


def resolve_replicas(num_replicas: Optional[int], rank: Optional[int]) -> Tuple[int, int]:
    """``(num_replicas, rank)``, defaulting to ``lightly.utils.dist.world_size()`` and ``rank()``."""
    num_replicas = dist.world_size() if num_replicas is None else check_positive_int(num_replicas, "num_replicas")
    rank = dist.rank() if rank is None else check_int(rank, "rank", 0, num_replicas - 1)  # [0, num_replicas)
    return num_replicas, rank
