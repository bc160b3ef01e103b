"""The batched transforms' own generators inside DataLoader workers: one stream per worker and epoch, reproducible
from the DataLoader's generator (as the global RNG behaves for torchvision's and Lightly's transforms)."""

from __future__ import annotations

from typing import List

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightly_siamese_ext.transforms import BatchedSimSiamTransform
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
