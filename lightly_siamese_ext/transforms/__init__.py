"""Batched, device-side augmentations: SimSiam's pipeline for a whole batch, crop + flip, evaluation
preprocessing, their per-sample ops (:mod:`.functional`), and normalisation constants (:mod:`.normalization`)."""

from lightly_siamese_ext.transforms import functional
from lightly_siamese_ext.transforms.crop_flip import BatchedCropFlipTransform
from lightly_siamese_ext.transforms.eval import BatchedEvalTransform
from lightly_siamese_ext.transforms.normalization import CIFAR10_MEAN, CIFAR10_NORMALIZE, CIFAR10_STD
from lightly_siamese_ext.transforms.simsiam import BatchedSimSiamTransform

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_NORMALIZE",
    "CIFAR10_STD",
    "BatchedCropFlipTransform",
    "BatchedEvalTransform",
    "BatchedSimSiamTransform",
    "functional",
]
