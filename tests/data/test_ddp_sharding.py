"""Under a real 2-process CPU Lightning DDP run, loaders built before the process group exists shard themselves.

``_ddp_lightning_run.py`` builds a ``GPUResidentLoader`` (with the batched SimSiam transform) and a DataLoader with
the ``PKSampler`` at module level, as Lightly's distributed example builds its loader, and trains on them with
``Trainer(accelerator="cpu", devices=2, strategy="ddp_fork")``, the PK loader with the default Trainer and with
``use_distributed_sampler=False``. It runs in a fresh process (a forking launcher needs a parent without CUDA); the
ranks write what they saw to files, checked here against torch's ``DistributedSampler`` and brute-force counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

pytest.importorskip("pytorch_lightning", minversion="2.0")

RUN = Path(__file__).with_name("_ddp_lightning_run.py")
SAMPLES, BATCH, EPOCHS, WORLD = 48, 4, 2, 2
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> dict:
    """{run: [rank 0's steps, rank 1's steps]}, each step {"epoch", "ids", ...}."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(RUN), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = ("gpu_loader", "pk_sampler", "pk_sampler_own_sharding")
    return {run: [torch.load(out / f"{run}-rank{r}.pt", weights_only=False) for r in range(WORLD)] for run in runs}


def _ids(steps: list, epoch: int) -> list:
    return [i for step in steps if step["epoch"] == epoch for i in step["ids"]]


def test_gpu_resident_loader_shards_like_distributed_sampler_and_ranks_augment_differently(ranks) -> None:
    per_rank = ranks["gpu_loader"]
    for epoch in range(EPOCHS):
        for rank, steps in enumerate(per_rank):
            reference = DistributedSampler(range(SAMPLES), WORLD, rank, shuffle=True, seed=0, drop_last=True)
            reference.set_epoch(epoch)  # Lightning's fit loop calls loader.sampler.set_epoch
            assert _ids(steps, epoch) == list(reference)
        first, second = (_ids(steps, epoch) for steps in per_rank)
        assert not set(first) & set(second) and sorted(first + second) == list(range(SAMPLES))
    assert _ids(per_rank[0], 0) != _ids(per_rank[0], 1)  # a new order every epoch
    # Every image is the same one: equal views on the two ranks would mean one augmentation stream.
    for step0, step1 in zip(*per_rank):
        for view0, view1 in zip(step0["views"], step1["views"]):
            assert view0.shape == (BATCH, 3, 8, 8) and not torch.equal(view0, view1)


@pytest.mark.parametrize("run", ["pk_sampler", "pk_sampler_own_sharding"])
def test_pk_batches_are_disjoint_across_ranks_and_cover_the_epoch(ranks, run: str) -> None:
    per_rank = ranks[run]
    for epoch in range(EPOCHS):
        first, second = (_ids(steps, epoch) for steps in per_rank)
        # 4 batches of 3 classes x 4 samples over 6 classes x 8 samples: each sample once, on one rank.
        assert len(first) == len(second) == SAMPLES // WORLD
        assert sorted(first + second) == list(range(SAMPLES))
    for steps in per_rank:
        for step in steps:
            assert sorted(Counter(step["labels"]).values()) == [4, 4, 4]
    assert _ids(per_rank[0], 0) != _ids(per_rank[0], 1)  # a new draw every epoch


def test_lightnings_distributed_sampler_changes_nothing_in_the_pk_batches(ranks) -> None:
    """Re-created around the DistributedSampler the default Trainer injects, the PKSampler draws the same batches
    as when it shards itself (use_distributed_sampler=False)."""
    for injected, own in zip(ranks["pk_sampler"], ranks["pk_sampler_own_sharding"]):
        assert [step["ids"] for step in injected] == [step["ids"] for step in own]
