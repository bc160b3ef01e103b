from lightly.transforms.utils import IMAGENET_NORMALIZE

import lightly_siamese_ext as lse
from lightly_siamese_ext.transforms import CIFAR10_MEAN, CIFAR10_NORMALIZE, CIFAR10_STD


def test_cifar10_normalize_has_lightlys_layout_and_the_cifar_statistics() -> None:
    assert set(CIFAR10_NORMALIZE) == set(IMAGENET_NORMALIZE) == {"mean", "std"}
    assert CIFAR10_NORMALIZE == {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)}
    assert lse.CIFAR10_NORMALIZE is CIFAR10_NORMALIZE

