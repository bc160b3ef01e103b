"""Batched, device-side augmentations: SimSiam's pipeline for a whole batch, and its per-sample ops."""

from lightly_siamese_ext.transforms import functional
from lightly_siamese_ext.transforms.crop_flip import BatchedCropFlipTransform
from lightly_siamese_ext.transforms.eval import BatchedEvalTransform
from lightly_siamese_ext.transforms.simsiam import BatchedSimSiamTransform

__all__ = ["BatchedCropFlipTransform", "BatchedEvalTransform", "BatchedSimSiamTransform", "functional"]
