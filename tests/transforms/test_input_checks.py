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


def _views(name: str, images: torch.Tensor) -> list:
    transform = TRANSFORMS[name]()
    if name == "eval":  # deterministic
        return [transform(images)]
    views = transform(images, torch.Generator().manual_seed(0))
    return list(views) if isinstance(views, (list, tuple)) else [views]


@pytest.mark.parametrize("name", TRANSFORMS)
def test_float_images_at_the_edges_of_the_unit_range_are_what_their_uint8_images_are(name: str) -> None:
    # 0 and 1 are accepted, and a float image k / 255 gives the views of the uint8 image k (same random draws).
    pixels = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    pixels[0, 0, 0, 0], pixels[1, 2, 3, 4] = 0, 255
    expected = _views(name, pixels)
    for images in (pixels / 255.0, pixels.double() / 255.0):
        views = _views(name, images)
        assert len(views) == len(expected)
        for view, reference in zip(views, expected):
            assert view.dtype == torch.float32 and view.std() > 0
            torch.testing.assert_close(view, reference, rtol=0, atol=1e-5)
