"""A DDP world as ``lightly.utils.dist`` reports it once ``init_process_group`` has run, without processes: for the
tests of what reads the rank and world size when it is used."""

from __future__ import annotations

import pytest
from lightly.utils import dist as lightly_dist


def fake_world(monkeypatch: pytest.MonkeyPatch, world_size: int, rank: int) -> None:
    monkeypatch.setattr(lightly_dist, "world_size", lambda: world_size)
    monkeypatch.setattr(lightly_dist, "rank", lambda: rank)
