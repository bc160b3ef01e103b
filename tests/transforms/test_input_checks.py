"""The batched transforms take uint8 (0..255) or float images in [0, 1]: float images in 0..255 (a view mean of 0.94
instead of 0.53 once clamped), NaN images and empty batches are refused, naming the argument."""

import pytest
import torch

import lightly_siamese_ext as lse

TRANSFORMS = {
    "simsiam": lambda: lse.BatchedSimSiamTransform(input_size=8, normalize=None),
    "crop_flip": lambda: lse.BatchedCropFlipTransform(8),
    "eval": lambda: lse.BatchedEvalTransform(8),
}


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("images, match", [
    (torch.linspace(0, 255, 384).view(2, 3, 8, 8), r"images must lie in \[0, 1\] .*got values in \[0, 255\]"),
    (torch.linspace(-0.5, 0.5, 384).view(2, 3, 8, 8), r"images must lie in \[0, 1\] .*\[-0.5, 0.5\]"),
    (torch.full((2, 3, 8, 8), float("nan")), r"images must lie in \[0, 1\] .*nan"),
    (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), r"images must hold at least one image of at least 1x1 pixels"),
    (torch.zeros(2, 3, 0, 8), r"images must hold at least one image of at least 1x1 pixels"),
])
def test_out_of_range_nan_and_empty_batches_are_refused(name: str, images: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TRANSFORMS[name]()(images)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_float_images_at_the_edges_of_the_unit_range_are_accepted(name: str) -> None:
    images = torch.rand(2, 3, 8, 8)
    images[0, 0, 0, 0], images[1, 2, 3, 4] = 0.0, 1.0
    TRANSFORMS[name]()(images)
    TRANSFORMS[name]()(images.double())
