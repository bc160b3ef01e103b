"""Each batched op against torchvision's functional op applied image by image (the oracle), for fixed parameters.

Tolerance: 1e-5 absolute on [0, 1] float images (float32 rounding); the nearest-neighbour rotation by an
arbitrary angle may pick the other neighbour where a sample point falls on a pixel boundary, so it is
compared by the fraction of equal pixels.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import RandomResizedCrop

from lightly_siamese_ext.transforms import functional as BF

ATOL = 1e-5


@pytest.fixture
def images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 20, 24, generator=gen)
    x[0] = 0.5  # a gray image: hue and saturation are degenerate there
    x[1, :, :5] = 1.0  # saturated pixels: clamping matters
    return x


def per_sample(fn, images, *params):
    return torch.stack([fn(img, *(p[i] for p in params)) for i, img in enumerate(images)])


def test_resized_crop_matches_torchvision_up_and_down_sampling(images: torch.Tensor) -> None:
    boxes = torch.tensor([[0, 0, 20, 24], [3, 5, 10, 7], [1, 2, 19, 21], [7, 0, 5, 24], [0, 10, 20, 1], [5, 5, 12, 12]])
    hflip = torch.tensor([False, True, False, True, False, True])
    vflip = torch.tensor([False, False, True, True, False, False])
    for size in (16, (9, 30)):
        out = BF.resized_crop(images, boxes, size, horizontal_flip=hflip, vertical_flip=vflip)
        out_size = [size, size] if isinstance(size, int) else list(size)

        def oracle(img, box, hf, vf):
            y = TF.resized_crop(img, *box.tolist(), out_size, antialias=True)
            y = TF.horizontal_flip(y) if hf else y
            return TF.vertical_flip(y) if vf else y

        torch.testing.assert_close(out, per_sample(oracle, images, boxes, hflip, vflip), atol=ATOL, rtol=0)


def test_resized_crop_reads_uint8_as_value_over_255(images: torch.Tensor) -> None:
    as_uint8 = (images * 255).round().to(torch.uint8)
    boxes = torch.tensor([[2, 3, 11, 13]] * 6)
    out = BF.resized_crop(as_uint8, boxes, 8)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, BF.resized_crop(as_uint8.float() / 255, boxes, 8), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "ours, theirs, factors",
    [
        (BF.adjust_brightness, TF.adjust_brightness, [0.0, 0.6, 1.0, 1.4, 2.0, 0.9]),
        (BF.adjust_contrast, TF.adjust_contrast, [0.0, 0.6, 1.0, 1.4, 2.0, 0.9]),
        (BF.adjust_saturation, TF.adjust_saturation, [0.0, 0.6, 1.0, 1.4, 2.0, 0.9]),
        (BF.adjust_hue, TF.adjust_hue, [0.0, -0.5, 0.5, 0.1, -0.27, 0.33]),
    ],
    ids=["brightness", "contrast", "saturation", "hue"],
)
def test_colour_op_matches_torchvision(images, ours, theirs, factors) -> None:
    factors = torch.tensor(factors)
    expected = per_sample(lambda img, f: theirs(img, f.item()), images, factors)
    torch.testing.assert_close(ours(images, factors), expected, atol=ATOL, rtol=0)


def test_color_jitter_applies_each_samples_order_like_torchvision() -> None:
    orders = torch.tensor(list(itertools.permutations(range(4))))  # all 24 orders, one per sample
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(24, 3, 8, 8, generator=gen)
    brightness = torch.empty(24).uniform_(0.5, 1.6, generator=gen)
    contrast = torch.empty(24).uniform_(0.5, 1.6, generator=gen)
    saturation = torch.empty(24).uniform_(0.5, 1.6, generator=gen)
    hue = torch.empty(24).uniform_(-0.3, 0.3, generator=gen)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]

    def oracle(img, order, *factors):
        for op in order.tolist():
            img = ops[op](img, factors[op].item())
        return img

    out = BF.color_jitter(images, brightness, contrast, saturation, hue, orders)
    expected = per_sample(oracle, images, orders, brightness, contrast, saturation, hue)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)


def test_grayscale_flips_and_rotate90_match_torchvision(images: torch.Tensor) -> None:
    apply = torch.tensor([True, False, True, True, False, False])
    gray = per_sample(lambda img, a: TF.rgb_to_grayscale(img, 3) if a else img, images, apply)
    torch.testing.assert_close(BF.grayscale(images, apply), gray, atol=ATOL, rtol=0)
    hflip = per_sample(lambda img, a: TF.horizontal_flip(img) if a else img, images, apply)
    vflip = per_sample(lambda img, a: TF.vertical_flip(img) if a else img, images, apply)
    assert torch.equal(BF.horizontal_flip(images, apply), hflip)
    assert torch.equal(BF.vertical_flip(images, apply), vflip)
    square = images[..., :20]
    assert torch.equal(BF.rotate90(square, apply), per_sample(lambda i, a: TF.rotate(i, 90) if a else i, square, apply))


def test_rotate_matches_torchvision_nearest() -> None:
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(5, 3, 16, 16, generator=gen)
    angles = torch.tensor([0.0, 90.0, 30.0, -45.0, 12.5])
    expected = per_sample(lambda img, a: TF.rotate(img, a.item()), images, angles)
    out = BF.rotate(images, angles)
    assert torch.equal(out[0], images[0])
    equal = (out - expected).abs().amax(dim=1) < ATOL
    assert equal.float().mean() > 0.97  # nearest-neighbour ties on pixel boundaries


def test_gaussian_blur_matches_torchvision(images: torch.Tensor) -> None:
    sigmas = torch.tensor([0.0, 0.1, 0.5, 1.0, 2.0, 1.7])
    kernel = 2 * math.ceil(3 * 2.0) + 1
    expected = per_sample(
        lambda img, s: TF.gaussian_blur(img, [kernel, kernel], [s.item()] * 2) if s > 0 else img, images, sigmas
    )
    torch.testing.assert_close(BF.gaussian_blur(images, sigmas, kernel), expected, atol=ATOL, rtol=0)


def test_normalize_matches_torchvision(images: torch.Tensor) -> None:
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    torch.testing.assert_close(BF.normalize(images, mean, std), TF.normalize(images, mean, std), atol=ATOL, rtol=0)


def test_random_resized_crop_params_in_bounds_and_distributed_like_torchvision() -> None:
    n, height, width, scale = 4000, 32, 32, (0.2, 1.0)
    gen = torch.Generator().manual_seed(3)
    boxes = BF.random_resized_crop_params(n, height, width, scale, generator=gen).double()
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    area = h * w / (height * width)
    # Sizes are rounded to whole pixels, so the area fraction may undershoot min_scale by that rounding.
    slack = 0.5 * (height + width) / (height * width)
    assert area.min() >= scale[0] - slack and area.max() <= 1.0

    torch.manual_seed(3)  # torchvision's sampler reads the global RNG: the oracle only
    reference = torch.tensor(
        [RandomResizedCrop.get_params(torch.empty(3, height, width), list(scale), [3 / 4, 4 / 3]) for _ in range(n)]
    ).double()
    ref_area = reference[:, 2] * reference[:, 3] / (height * width)
    for ours, theirs in ((area, ref_area), (w / h, reference[:, 3] / reference[:, 2])):
        stderr = math.sqrt((ours.var() + theirs.var()).item() / n)
        assert abs(ours.mean() - theirs.mean()) < 4 * stderr


def test_random_resized_crop_falls_back_to_torchvisions_central_crop() -> None:
    # A 10 x 40 image and a scale above 1: no attempt fits, torchvision crops the centre within the ratio.
    boxes = BF.random_resized_crop_params(3, 10, 40, (2.0, 3.0), generator=torch.Generator().manual_seed(0))
    expected = RandomResizedCrop.get_params(torch.empty(3, 10, 40), [2.0, 3.0], [3 / 4, 4 / 3])
    assert boxes.tolist() == [list(expected)] * 3


def test_per_sample_parameters_must_match_the_batch(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="factors"):
        BF.adjust_brightness(images, torch.ones(5))
    with pytest.raises(ValueError, match="boxes"):
        BF.resized_crop(images, torch.zeros(6, 3, dtype=torch.long), 8)
    with pytest.raises(ValueError, match="order"):
        BF.color_jitter(images, *(torch.ones(6),) * 4, torch.zeros(6, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="kernel_size"):
        BF.gaussian_blur(images, torch.ones(6), 4)


def test_to_float_images_scales_uint8_and_rejects_bad_input() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    torch.testing.assert_close(BF.to_float_images(x), torch.tensor([0.0, 0.2, 1.0]).view(1, 3, 1, 1))
    with pytest.raises(TypeError, match="images.*int64"):
        BF.to_float_images(x.long())
    with pytest.raises(ValueError, match="images.*4-D"):
        BF.to_float_images(x[0])
    with pytest.raises(ValueError, match="images.*3 channels"):
        BF.to_float_images(torch.zeros(1, 1, 4, 4))
