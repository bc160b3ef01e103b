import pytest
import torch
import torchvision.transforms.v2.functional as TF

from lightly_siamese_ext.transforms import functional as BF
from lightly_siamese_ext.transforms.crop_flip import BatchedCropFlipTransform

NORM = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


def test_matches_torchvision_crop_flip_normalize_per_sample() -> None:
    images = torch.randint(0, 256, (6, 3, 20, 24), dtype=torch.uint8)
    transform = BatchedCropFlipTransform(12, min_scale=0.3, hf_prob=0.5, normalize=NORM)
    got = transform(images, torch.Generator().manual_seed(3))
    # The documented draw order: crop boxes (torchvision's sampling), then one flip coin per sample.
    generator = torch.Generator().manual_seed(3)
    boxes = BF.random_resized_crop_params(6, 20, 24, (0.3, 1.0), (3 / 4, 4 / 3), generator)
    flips = torch.rand(6, generator=generator) < 0.5
    assert 0 < int(flips.sum()) < 6  # the seed exercises both branches
    for i, ((top, left, height, width), flip) in enumerate(zip(boxes.tolist(), flips.tolist())):
        image = TF.to_dtype(images[i], torch.float32, scale=True)
        expected = TF.resized_crop(image, top, left, height, width, [12, 12], antialias=True)
        expected = TF.normalize(TF.horizontal_flip(expected) if flip else expected, NORM["mean"], NORM["std"])
        torch.testing.assert_close(got[i], expected, atol=1e-5, rtol=1e-5)
    assert got.shape == (6, 3, 12, 12) and got.dtype == torch.float32


def test_seeded_module_is_reproducible_and_crops_vary() -> None:
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    first = BatchedCropFlipTransform(8, seed=1)(images)
    torch.testing.assert_close(BatchedCropFlipTransform(8, seed=1)(images), first, rtol=0, atol=0)
    assert not torch.equal(BatchedCropFlipTransform(8, seed=2)(images), first)


def test_whole_image_without_flip_is_a_plain_resize_and_float_input_matches_uint8() -> None:
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    transform = BatchedCropFlipTransform(8, min_scale=1.0, ratio=(1.0, 1.0), hf_prob=0.0)
    expected = TF.resize(TF.to_dtype(images, torch.float32, scale=True), [8, 8], antialias=True)
    torch.testing.assert_close(transform(images), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(transform(images.float() / 255), expected, atol=1e-5, rtol=1e-5)


def test_always_flipping_mirrors_the_unflipped_view() -> None:
    images = torch.randint(0, 256, (4, 3, 10, 10), dtype=torch.uint8)
    kwargs = dict(min_scale=1.0, ratio=(1.0, 1.0))
    flipped = BatchedCropFlipTransform(10, hf_prob=1.0, **kwargs)(images)
    torch.testing.assert_close(flipped, BatchedCropFlipTransform(10, hf_prob=0.0, **kwargs)(images).flip(-1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_size=0), "input_size"),
        (dict(input_size=8, min_scale=0.0), "min_scale"),
        (dict(input_size=8, hf_prob=1.5), "hf_prob"),
        (dict(input_size=8, ratio=(2.0, 1.0)), "ratio"),
        (dict(input_size=8, normalize={"mean": [0.5]}), "normalize"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BatchedCropFlipTransform(**kwargs)


def test_bad_images_and_generator_device() -> None:
    transform = BatchedCropFlipTransform(8)
    with pytest.raises(ValueError, match="4-D image batch"):
        transform(torch.rand(8, 8))
    with pytest.raises(ValueError, match=r"one RGB image of shape \(3, H, W\)"):
        transform(torch.rand(1, 8, 8))  # (3, H, W) is one image
    if torch.cuda.is_available():  # pragma: no cover - CPU CI
        with pytest.raises(ValueError, match="generator"):
            transform(torch.rand(2, 3, 8, 8), torch.Generator(device="cuda"))
