"""BatchedSimSiamTransform: Lightly's arguments, outputs, determinism, rates of each random op (binomial
tolerances of 4 standard deviations at a fixed seed) and exact results for configurations whose result is known."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from lightly.transforms import SimSiamTransform

from lightly_siamese_ext.transforms import BatchedSimSiamTransform

# Everything off: the output is the input (min_scale=1 makes every crop the whole image).
IDENTITY = dict(
    input_size=16, cj_prob=0.0, min_scale=1.0, random_gray_scale=0.0, gaussian_blur=0.0, hf_prob=0.0, normalize=None
)


def asymmetric_images(n: int, size: int = 16) -> torch.Tensor:
    """uint8 images that differ from their flips, rotations and grayscale versions."""
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


def within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12


def test_same_arguments_and_defaults_as_lightly_simsiam_transform() -> None:
    ours = inspect.signature(BatchedSimSiamTransform.__init__).parameters
    theirs = inspect.signature(SimSiamTransform.__init__).parameters
    for name, parameter in theirs.items():
        assert name in ours, name
        assert ours[name].default == parameter.default, name
    assert set(ours) - set(theirs) == {"seed"}


def test_two_normalised_float_views_of_the_requested_size() -> None:
    transform = BatchedSimSiamTransform(input_size=24)
    views = transform(asymmetric_images(5, 32))
    assert isinstance(views, list) and len(views) == 2
    for view in views:
        assert view.shape == (5, 3, 24, 24) and view.dtype == torch.float32 and view.is_contiguous()
    assert not torch.allclose(views[0], views[1])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    unnormalised = torch.cat(views) * std + mean
    assert unnormalised.min() >= -1e-5 and unnormalised.max() <= 1 + 1e-5


def test_deterministic_per_seed_and_generator() -> None:
    images = asymmetric_images(4)
    a = BatchedSimSiamTransform(input_size=16, seed=3)(images)
    b = BatchedSimSiamTransform(input_size=16, seed=3)(images)
    c = BatchedSimSiamTransform(input_size=16, seed=4)(images)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    transform = BatchedSimSiamTransform(input_size=16, seed=3)
    first_call, second_call = transform(images), transform(images)
    assert torch.equal(first_call[0], a[0]) and not torch.equal(second_call[0], a[0])  # the generator moves on
    d = transform(images, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, d))


def test_uint8_and_float_inputs_give_the_same_views() -> None:
    images = asymmetric_images(6, 20)
    from_uint8 = BatchedSimSiamTransform(input_size=16, gaussian_blur=0.5, seed=1)(images)
    from_float = BatchedSimSiamTransform(input_size=16, gaussian_blur=0.5, seed=1)(images.double() / 255)
    for x, y in zip(from_uint8, from_float):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=0)


def test_everything_off_is_the_identity() -> None:
    images = asymmetric_images(8)
    for view in BatchedSimSiamTransform(**IDENTITY)(images):
        torch.testing.assert_close(view, images.float() / 255, atol=1e-6, rtol=0)


def test_horizontal_flip_rate() -> None:
    images = asymmetric_images(1000)
    views = torch.cat(BatchedSimSiamTransform(**{**IDENTITY, "hf_prob": 0.3})(images))
    source = torch.cat([images, images]).float() / 255
    flipped = (views - source.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-6
    unchanged = (views - source).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert torch.all(flipped ^ unchanged)
    assert within_binomial(int(flipped.sum()), 2000, 0.3)


def test_vertical_flip_and_rotate90_rates() -> None:
    images = asymmetric_images(500)
    source = torch.cat([images, images]).float() / 255
    views = torch.cat(BatchedSimSiamTransform(**{**IDENTITY, "vf_prob": 0.6})(images))
    flipped = (views - source.flip(-2)).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert within_binomial(int(flipped.sum()), 1000, 0.6)
    views = torch.cat(BatchedSimSiamTransform(**{**IDENTITY, "rr_prob": 0.5})(images))
    rotated = (views - torch.rot90(source, 1, (-2, -1))).abs().amax(dim=(1, 2, 3)) < 1e-6
    unchanged = (views - source).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert torch.all(rotated ^ unchanged) and within_binomial(int(rotated.sum()), 1000, 0.5)


def test_rotation_by_degrees_stays_in_range() -> None:
    images = torch.full((200, 3, 16, 16), 255, dtype=torch.uint8)
    views = torch.cat(BatchedSimSiamTransform(**{**IDENTITY, "rr_prob": 1.0, "rr_degrees": (30.0, 60.0)})(images))
    # A white square rotated by 30..60 degrees loses its corners to the zero fill: 10-25 % of the pixels.
    black = (views[:, 0] == 0).float().mean(dim=(1, 2))
    assert black.min() > 0.08 and black.max() < 0.25


def test_grayscale_rate() -> None:
    images = asymmetric_images(1000)
    views = torch.cat(BatchedSimSiamTransform(**{**IDENTITY, "random_gray_scale": 0.2})(images))
    gray = (views.amax(dim=1) - views.amin(dim=1)).amax(dim=(1, 2)) == 0
    assert within_binomial(int(gray.sum()), 2000, 0.2)
    expected = TF.rgb_to_grayscale(torch.cat([images, images]).float() / 255, 3)
    torch.testing.assert_close(views[gray], expected[gray], atol=1e-6, rtol=0)


def test_colour_jitter_rate() -> None:
    images = asymmetric_images(1000)
    views = torch.cat(BatchedSimSiamTransform(**{**IDENTITY, "cj_prob": 0.8})(images))
    source = torch.cat([images, images]).float() / 255
    changed = (views - source).abs().amax(dim=(1, 2, 3)) > 1e-4  # hue round trip alone moves < 1e-6
    assert within_binomial(int(changed.sum()), 2000, 0.8)


def test_gaussian_blur_matches_torchvision_and_its_rate() -> None:
    images = asymmetric_images(500)
    settings = {**IDENTITY, "gaussian_blur": 0.5, "sigmas": (1.0, 1.0)}
    views = torch.cat(BatchedSimSiamTransform(**settings)(images))
    source = torch.cat([images, images]).float() / 255
    blurred = TF.gaussian_blur(source, [7, 7], [1.0, 1.0])  # kernel 2 * ceil(3 sigma) + 1
    is_blurred = (views - blurred).abs().amax(dim=(1, 2, 3)) < 1e-5
    unchanged = (views - source).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert torch.all(is_blurred ^ unchanged) and within_binomial(int(is_blurred.sum()), 1000, 0.5)


def test_normalisation_matches_torchvision() -> None:
    images = asymmetric_images(4)
    normalize = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    views = BatchedSimSiamTransform(**{**IDENTITY, "normalize": normalize})(images)
    expected = TF.normalize(images.float() / 255, normalize["mean"], normalize["std"])
    torch.testing.assert_close(views[0], expected, atol=1e-5, rtol=0)


def test_crop_sizes_cover_min_scale_to_the_whole_image() -> None:
    # Channel 0 ramps along x, channel 1 along y (8 per pixel). Bilinear upsampling of a ramp is exact and
    # clamps at the crop's border, so a view's value range is 8 * (crop side - 1): the crop size is readable.
    size, n = 32, 1000
    ramp = torch.arange(size, dtype=torch.uint8) * 8
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[:, 0] = ramp.view(1, -1)
    images[:, 1] = ramp.view(-1, 1)
    views = torch.cat(BatchedSimSiamTransform(**{**IDENTITY, "input_size": size, "min_scale": 0.3})(images)) * 255
    width = (views[:, 0].amax(dim=(1, 2)) - views[:, 0].amin(dim=(1, 2))) / 8 + 1
    height = (views[:, 1].amax(dim=(1, 2)) - views[:, 1].amin(dim=(1, 2))) / 8 + 1
    torch.testing.assert_close(width, width.round(), atol=1e-3, rtol=0)
    area = (width * height).round() / size**2
    slack = 0.5 * (2 * size) / size**2  # sizes are rounded to whole pixels
    assert area.min() >= 0.3 - slack and area.max() == 1.0
    assert (area < 0.4).any() and ((width / height).log().abs() <= math.log(4 / 3) + 0.1).all()


@pytest.mark.parametrize(
    "images, error, match",
    [
        (torch.zeros(2, 3, 8, 8, dtype=torch.int64), TypeError, "images must be uint8 .* got dtype torch.int64"),
        (torch.zeros(8, 8, dtype=torch.uint8), ValueError, "images must be a 4-D image batch"),
        (torch.zeros(1, 8, 8, dtype=torch.uint8), ValueError, r"image must be one RGB image of shape \(3, H, W\)"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ValueError, "images must have 3 channels"),
        ([[0.0]], TypeError, "images must be a torch.Tensor"),
    ],
)
def test_bad_input_is_a_clear_error(images, error, match) -> None:
    with pytest.raises(error, match=match):
        BatchedSimSiamTransform(input_size=8)(images)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cj_prob=1.5), "cj_prob"),
        (dict(hf_prob=-0.1), "hf_prob"),
        (dict(cj_hue=0.6), "cj_hue"),
        (dict(cj_bright=-1.0), "cj_bright"),
        (dict(min_scale=0.0), "min_scale"),
        (dict(sigmas=(2.0, 1.0)), "sigmas"),
        (dict(input_size=0), "input_size"),
        (dict(rr_degrees=(10.0, 5.0)), "rr_degrees"),
        (dict(normalize={"mean": [0.5]}), "normalize"),
        (dict(normalize={"mean": [0.5] * 3, "sdt": [0.2] * 3}), "normalize must be None or a dict with 'mean'"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        BatchedSimSiamTransform(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_with_a_device_generator() -> None:
    images = asymmetric_images(64).cuda()
    transform = BatchedSimSiamTransform(input_size=16)
    views = transform(images)
    assert all(v.is_cuda and v.shape == (64, 3, 16, 16) for v in views)
    again = transform(images, generator=torch.Generator(device="cuda").manual_seed(0))
    assert torch.equal(again[0], views[0])
    with pytest.raises(ValueError, match="generator"):
        transform(images, generator=torch.Generator().manual_seed(0))
