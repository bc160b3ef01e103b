"""The batched transforms' own generators inside DataLoader workers: one stream per worker and epoch, reproducible
from the DataLoader's generator (as the global RNG behaves for torchvision's and Lightly's transforms); and one
stream per DDP rank."""

from __future__ import annotations

from typing import List

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fake_distributed import fake_world
from lightly_siamese_ext.transforms import BatchedSimSiamTransform
from lightly_siamese_ext.transforms._generators import stream_seed
from lightly_siamese_ext.transforms.crop_flip import BatchedCropFlipTransform

# One image repeated: batches differ only through the random draws.
IMAGES = torch.randint(0, 256, (1, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
IMAGES = IMAGES.expand(8, -1, -1, -1).contiguous()


class _AugmentInWorker:
    """collate_fn: the batch through the transform, inside the worker; the first view."""

    def __init__(self, transform: torch.nn.Module) -> None:
        self.transform = transform

    def __call__(self, batch: list) -> torch.Tensor:
        out = self.transform(torch.stack([item[0] for item in batch]))
        return out[0] if isinstance(out, list) else out


def _two_epochs(transform: torch.nn.Module, seed: int) -> List[List[torch.Tensor]]:
    """[[worker 0's batch, worker 1's batch] for each of 2 epochs]."""
    loader = DataLoader(TensorDataset(IMAGES), batch_size=4, num_workers=2, collate_fn=_AugmentInWorker(transform),
                        generator=torch.Generator().manual_seed(seed))
    return [list(loader) for _ in range(2)]


@pytest.mark.parametrize("make", [lambda: BatchedSimSiamTransform(input_size=8),
                                  lambda: BatchedCropFlipTransform(input_size=8)], ids=["simsiam", "crop_flip"])
def test_workers_and_epochs_draw_their_own_augmentations_reproducibly(make) -> None:
    transform = make()
    transform(IMAGES)  # a generator cached in the parent must not be what forked workers use
    (first_w0, first_w1), (second_w0, second_w1) = _two_epochs(transform, seed=1)
    assert not torch.equal(first_w0, first_w1)  # the two workers, same images
    assert not torch.equal(first_w0, second_w0) and not torch.equal(first_w1, second_w1)  # epoch to epoch
    again = _two_epochs(make(), seed=1)
    assert all(torch.equal(a, b) for a, b in zip([first_w0, first_w1, second_w0, second_w1], sum(again, [])))
    other_seed = _two_epochs(make(), seed=2)
    assert not torch.equal(other_seed[0][0], first_w0)


@pytest.mark.parametrize("make", [lambda: BatchedSimSiamTransform(input_size=8),
                                  lambda: BatchedCropFlipTransform(input_size=8)], ids=["simsiam", "crop_flip"])
def test_each_ddp_rank_draws_its_own_stream_the_rank_read_at_the_call(monkeypatch, make) -> None:
    transform = make()  # built before any process group, as a module-level transform is
    first = _first_view(transform(IMAGES))
    # Rank 0 keeps the single-process stream: the transform's seed itself.
    assert torch.equal(first, _first_view(make()(IMAGES, torch.Generator().manual_seed(0))))
    per_rank = {}
    for rank in (1, 2):
        fake_world(monkeypatch, 3, rank)
        per_rank[rank] = _first_view(transform(IMAGES))
        assert torch.equal(per_rank[rank], _first_view(make()(IMAGES)))  # reproducible per rank
    assert not torch.equal(first, per_rank[1]) and not torch.equal(first, per_rank[2])
    assert not torch.equal(per_rank[1], per_rank[2])


def test_stream_seeds_of_other_ranks_differ_for_every_seed_rank_and_worker() -> None:
    def seeds(ranks):
        return [stream_seed(seed, rank, worker) for seed in range(8) for rank in ranks for worker in (None, 0, 1, 2)]

    others = seeds(range(1, 4))
    assert len(set(others)) == len(others) and not set(others) & set(seeds([0]))
    assert stream_seed(5, 0, None) == 5 and stream_seed(5, 0, 7) == 12  # rank 0: the streams of before
    assert all(0 <= seed < 2**64 for seed in others) and stream_seed(-1, 1, None) >= 0


def _first_view(out) -> torch.Tensor:
    return out[0] if isinstance(out, list) else out
