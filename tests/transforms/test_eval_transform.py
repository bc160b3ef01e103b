import pytest
import torch
import torchvision.transforms.v2.functional as TF

from lightly_siamese_ext.transforms import BatchedEvalTransform

NORM = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


def test_matches_torchvision_resize_and_normalize() -> None:
    images = torch.randint(0, 256, (4, 3, 24, 24), dtype=torch.uint8)
    got = BatchedEvalTransform(16, NORM)(images)
    expected = TF.normalize(TF.resize(TF.to_dtype(images, torch.float32, scale=True), [16, 16], antialias=True),
                            NORM["mean"], NORM["std"])
    assert got.shape == (4, 3, 16, 16) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_same_size_is_not_resampled_and_float_input_is_accepted() -> None:
    images = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(BatchedEvalTransform(8)(images), images)
    torch.testing.assert_close(BatchedEvalTransform()(images), images)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="input_size"):
        BatchedEvalTransform(0)
    with pytest.raises(ValueError, match="normalize"):
        BatchedEvalTransform(8, {"mean": [0.5]})
    with pytest.raises((ValueError, TypeError)):
        BatchedEvalTransform(8)(torch.rand(3, 8, 8))


@pytest.mark.parametrize("bad, error", [(["mean", "std"], TypeError), ({"mean": [0.5] * 3, "sdt": [0.2] * 3}, ValueError),
                                        ({"mean": [0.5] * 3, "std": 0.2}, TypeError),
                                        ({"mean": [0.5] * 3, "std": [0.2, 0.2]}, ValueError),
                                        ({"mean": [0.5] * 3, "std": [0.2, 0.0, 0.2]}, ValueError)])
def test_every_batched_transform_checks_normalize_the_same_way(bad, error) -> None:
    from lightly_siamese_ext.transforms import BatchedSimSiamTransform
    from lightly_siamese_ext.transforms.crop_flip import BatchedCropFlipTransform

    for make in (lambda: BatchedEvalTransform(normalize=bad), lambda: BatchedCropFlipTransform(8, normalize=bad),
                 lambda: BatchedSimSiamTransform(normalize=bad)):
        with pytest.raises(error, match=r"normalize"):
            make()
