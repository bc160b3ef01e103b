"""One augmented view per image for supervised-style training: random resized crop + horizontal flip, batched."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from torch import Tensor, nn

from lightly_siamese_ext._validation import check_float, check_normalize, check_positive_int
from lightly_siamese_ext._validation import check_probability, check_range, check_rgb_image, check_rgb_images
from lightly_siamese_ext._validation import is_single_image
from lightly_siamese_ext.transforms import functional as BF
from lightly_siamese_ext.transforms._generators import SeededGenerators

__all__ = ["BatchedCropFlipTransform"]


class BatchedCropFlipTransform(SeededGenerators, nn.Module):
    """``RandomResizedCrop(input_size, scale=(min_scale, 1)) -> RandomHorizontalFlip(hf_prob) -> Normalize`` for a
    whole batch, one view per image: the training augmentation of lightly's linear-evaluation benchmarks, and a
    mild augmentation for pair / triplet training.

    Crops are drawn as torchvision draws them (:func:`~lightly_siamese_ext.transforms.functional.
    random_resized_crop_params`) and resampled as ``torchvision.transforms.v2.functional.resized_crop(...,
    antialias=True)`` does; per-sample parameters come from a ``torch.Generator`` on the images' device, boxes
    first, then the flips. No Python loop over the batch.

    Args:
        input_size: Side of the square output images.
        min_scale: Smallest crop area, as a fraction of the image area (torchvision's default 0.08).
        ratio: (min, max) aspect ratio of the crops.
        hf_prob: Probability of a horizontal flip.
        normalize: dict with "mean" and "std" (lightly's convention), or None for [0, 1] outputs.
        seed: Seeds the generator used when ``forward`` is not given one (one generator per device).

    Input: (B, 3, H, W) uint8 (0..255) or float (0..1); or one image (a PIL RGB image or a (3, H, W) tensor), as a
    torchvision dataset's transform. Output: float32 (B, 3, input_size, input_size), or (3, input_size, input_size).
    """

    def __init__(
        self,
        input_size: int,
        min_scale: float = 0.08,
        ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        hf_prob: float = 0.5,
        normalize: Optional[Dict[str, Sequence[float]]] = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.input_size = check_positive_int(input_size, "input_size")
        self.scale = (check_float(min_scale, "min_scale", 0.0, 1.0, exclusive_minimum=True), 1.0)
        self.ratio = check_range(ratio, "ratio", 1e-6)
        self.hf_prob = check_probability(hf_prob, "hf_prob")
        self.normalize = check_normalize(normalize)
        self.seed = int(seed)
        self._generators: Dict[str, torch.Generator] = {}

    def forward(self, images: Union[Tensor, Image.Image], generator: Optional[torch.Generator] = None) -> Tensor:
        """One augmented view (B, 3, input_size, input_size) of every image of ``images`` (B, 3, H, W); of one image
        (a PIL image or (3, H, W)), one (3, input_size, input_size) view."""
        if is_single_image(images):
            return self._view(check_rgb_image(images), generator)[0]
        return self._view(check_rgb_images(images), generator)

    def _view(self, images: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        device = images.device
        gen = self._generator_for(images, generator)
        batch, _, height, width = images.shape
        boxes = BF.random_resized_crop_params(batch, height, width, self.scale, self.ratio, gen, device)
        flip = torch.rand(batch, device=device, generator=gen) < self.hf_prob if self.hf_prob > 0 else None
        x = BF.resized_crop(images, boxes, self.input_size, horizontal_flip=flip)
        if images.dtype != torch.uint8:
            x = x.clamp_(0.0, 1.0)  # float inputs may overshoot [0, 1] by rounding
        if self.normalize is not None:
            x = BF.normalize(x, self.normalize["mean"], self.normalize["std"], out=x)
        return x

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, scale={self.scale}, ratio={self.ratio}, hf_prob={self.hf_prob}"
