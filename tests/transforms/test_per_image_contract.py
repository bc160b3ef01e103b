"""The batched transforms as per-image dataset transforms (Lightly's ``MultiViewTransform`` contract): one PIL
image or one (3, H, W) tensor in, (3, S, S) views out, drawn exactly as for a batch of that one image, so that
their value distribution is the batched path's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightly.data import LightlyDataset
from PIL import Image
from torch.utils.data import DataLoader

from lightly_siamese_ext.transforms import BatchedCropFlipTransform, BatchedSimSiamTransform

IMAGE = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
SMALL = dict(input_size=8, gaussian_blur=0.5, sigmas=(0.1, 1.0), normalize=None)


def _generator(seed: int = 3) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("as_pil", [False, True], ids=["tensor", "pil"])
def test_one_image_gives_two_views_drawn_as_for_a_batch_of_that_image(as_pil: bool) -> None:
    transform = BatchedSimSiamTransform(**SMALL)
    image = Image.fromarray(IMAGE.permute(1, 2, 0).numpy()) if as_pil else IMAGE
    views = transform(image, _generator())
    batched = transform(IMAGE.unsqueeze(0), _generator())
    assert isinstance(views, list) and len(views) == 2
    for view, reference in zip(views, batched):
        assert view.shape == (3, 8, 8) and view.dtype == torch.float32
        torch.testing.assert_close(view, reference[0], rtol=0, atol=0)
    assert not torch.equal(views[0], views[1])


def test_per_image_views_have_the_value_distribution_of_the_batched_path() -> None:
    transform = BatchedSimSiamTransform(**SMALL)
    draws = 128
    per_image = torch.stack([torch.stack(transform(IMAGE, _generator(seed))) for seed in range(draws)])
    batched = torch.stack(transform(IMAGE.expand(draws, -1, -1, -1), _generator(10_000)), dim=1)
    assert per_image.shape == batched.shape == (draws, 2, 3, 8, 8)
    # Tolerances of about 4 standard errors of 256 views (fixed seeds: the test is deterministic).
    for name, statistic, tolerance in (
        ("channel means", lambda v: v.mean(dim=(0, 1, 3, 4)), 0.04),
        ("channel spreads", lambda v: v.std(dim=(0, 1, 3, 4)), 0.02),
        ("contrast within a view", lambda v: v.flatten(2).std(dim=2).mean(dim=(0, 1)), 0.02),
        ("deciles 1, 5, 9", lambda v: v.flatten().quantile(torch.tensor([0.1, 0.5, 0.9])), 0.04),
    ):
        torch.testing.assert_close(statistic(per_image), statistic(batched), rtol=0, atol=tolerance, msg=name)


def test_crop_flip_gives_one_view_of_one_image() -> None:
    transform = BatchedCropFlipTransform(8, min_scale=0.5)
    view = transform(Image.fromarray(IMAGE.permute(1, 2, 0).numpy()), _generator())
    assert view.shape == (3, 8, 8)
    torch.testing.assert_close(view, transform(IMAGE.unsqueeze(0), _generator())[0], rtol=0, atol=0)


def test_it_serves_as_a_lightly_dataset_transform_in_dataloader_workers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    dataset = LightlyDataset(input_dir=str(tmp_path), transform=BatchedSimSiamTransform(**SMALL))
    (view0, view1), target, filename = dataset[0]
    assert view0.shape == view1.shape == (3, 8, 8) and filename == "0.png"
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    for (x0, x1), _, _ in batches:
        assert x0.shape == x1.shape == (2, 3, 8, 8) and not torch.equal(x0, x1)


def test_an_image_that_is_not_rgb_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="image must be an RGB PIL image, got mode 'L'.*convert\\('RGB'\\)"):
        BatchedSimSiamTransform(**SMALL)(Image.new("L", (12, 12)))
    with pytest.raises(ValueError, match=r"image must be one RGB image of shape \(3, H, W\), got shape \(4, 12, 12\)"):
        BatchedSimSiamTransform(**SMALL)(torch.zeros(4, 12, 12, dtype=torch.uint8))
