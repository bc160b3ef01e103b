"""SimSiam's augmentation for a whole batch at once, on the batch's device."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple, Union

import torch
from lightly.transforms.utils import IMAGENET_NORMALIZE
from PIL import Image
from torch import Tensor, nn

from lightly_siamese_ext._validation import (
    check_float,
    check_normalize,
    check_positive_int,
    check_probability,
    check_range,
    check_rgb_image,
    check_rgb_images,
    is_single_image,
)
from lightly_siamese_ext.transforms import functional as BF
from lightly_siamese_ext.transforms._generators import SeededGenerators

__all__ = ["BatchedSimSiamTransform"]


def _rotation_range(rr_degrees: Union[None, float, Tuple[float, float]]) -> Optional[Tuple[float, float]]:
    """Lightly's convention: None = 90 degrees, x = [-x, x], (a, b) = [a, b]."""
    if rr_degrees is None:
        return None
    if isinstance(rr_degrees, (tuple, list)):
        return check_range(rr_degrees, "rr_degrees")
    degrees = check_float(rr_degrees, "rr_degrees", 0.0)
    return -degrees, degrees


class BatchedSimSiamTransform(SeededGenerators, nn.Module):
    """Lightly's ``SimSiamTransform`` for a batch tensor: two augmented views of every
    image, with per-sample random parameters drawn on the batch's device.

    Same arguments and defaults as ``lightly.transforms.SimSiamTransform``, same
    pipeline and order: random resized crop (torchvision's sampling, with its
    fallback), horizontal / vertical flip, rotation, colour jitter (brightness,
    contrast, saturation, hue in a random order per sample), grayscale, Gaussian
    blur, normalisation. No Python loop over the batch: both views are one batched
    call over 2B samples.

    Differences from Lightly's PIL pipeline: values stay float between ops (PIL
    rounds to uint8 after each); the ops follow torchvision's float tensor
    semantics; the blur is an exact Gaussian truncated at 3 sigma (PIL's is a box
    approximation); random numbers come from a ``torch.Generator``, so results are
    reproducible per seed and device, not identical to Lightly's.

    Args:
        input_size: side of the square output views.
        cj_prob: probability that colour jitter is applied.
        cj_strength: multiplies ``cj_bright``, ``cj_contrast``, ``cj_sat`` and ``cj_hue``.
        cj_bright, cj_contrast, cj_sat, cj_hue: jitter amounts, as in torchvision's ColorJitter.
        min_scale: smallest crop area, as a fraction of the image area.
        random_gray_scale: probability of grayscale conversion.
        gaussian_blur: probability of Gaussian blur (use 0 for CIFAR).
        sigmas: (min, max) of the blur's standard deviation, in pixels.
        vf_prob, hf_prob: probabilities of vertical / horizontal flip.
        rr_prob: probability of rotation.
        rr_degrees: None rotates by 90 degrees; x by U(-x, x); (a, b) by U(a, b);
            counter-clockwise.
        normalize: dict with "mean" and "std", or None for [0, 1] outputs.
        seed: seeds the generator used when ``forward`` is not given one (one
            generator per device). Under DDP each rank draws its own stream from
            ``seed`` and its rank (read at the call), DataLoader workers too.

    Input: (B, 3, H, W) uint8 (0..255) or float (0..1), on any device; or one image,
    a PIL RGB image or a (3, H, W) tensor, as Lightly's ``MultiViewTransform`` takes
    it, so that it serves as the transform of a ``LightlyDataset`` or a torchvision
    dataset (per image, in the DataLoader workers: slower than one call per batch).
    Output: list of two float32 tensors (B, 3, input_size, input_size), or
    (3, input_size, input_size) for one image.
    """

    def __init__(
        self,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.4,
        cj_contrast: float = 0.4,
        cj_sat: float = 0.4,
        cj_hue: float = 0.1,
        min_scale: float = 0.2,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 0.5,
        sigmas: Tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Optional[Union[float, Tuple[float, float]]] = None,
        normalize: Union[None, Dict[str, List[float]]] = IMAGENET_NORMALIZE,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.input_size = check_positive_int(input_size, "input_size")
        self.cj_prob = check_probability(cj_prob, "cj_prob")
        strength = check_float(cj_strength, "cj_strength", 0.0)
        amounts = {name: strength * check_float(value, name, 0.0)
                   for name, value in (("cj_bright", cj_bright), ("cj_contrast", cj_contrast), ("cj_sat", cj_sat))}
        hue = strength * check_float(cj_hue, "cj_hue", 0.0)
        if hue > 0.5:
            raise ValueError(f"cj_strength * cj_hue must be in [0, 0.5] (a fraction of a turn), got {hue!r}")
        # torchvision's ranges: factors U(max(0, 1 - a), 1 + a), hue U(-h, h).
        self.brightness = (max(0.0, 1.0 - amounts["cj_bright"]), 1.0 + amounts["cj_bright"])
        self.contrast = (max(0.0, 1.0 - amounts["cj_contrast"]), 1.0 + amounts["cj_contrast"])
        self.saturation = (max(0.0, 1.0 - amounts["cj_sat"]), 1.0 + amounts["cj_sat"])
        self.hue = (-float(hue), float(hue))
        self.scale = (check_float(min_scale, "min_scale", 0.0, 1.0, exclusive_minimum=True), 1.0)
        self.random_gray_scale = check_probability(random_gray_scale, "random_gray_scale")
        self.gaussian_blur = check_probability(gaussian_blur, "gaussian_blur")
        self.sigmas = check_range(sigmas, "sigmas", 0.0)
        self.blur_kernel_size = 2 * math.ceil(3.0 * self.sigmas[1]) + 1
        self.vf_prob = check_probability(vf_prob, "vf_prob")
        self.hf_prob = check_probability(hf_prob, "hf_prob")
        self.rr_prob = check_probability(rr_prob, "rr_prob")
        self.rr_range = _rotation_range(rr_degrees)
        self.normalize = check_normalize(normalize)
        self.seed = int(seed)
        self._generators: Dict[str, torch.Generator] = {}

    def __getstate__(self) -> Dict[str, object]:
        # Pickled copies (e.g. for DataLoader workers) start with fresh generators.
        state = self.__dict__.copy()
        state["_generators"] = {}
        return state

    def forward(
        self, images: Union[Tensor, Image.Image], generator: Optional[torch.Generator] = None
    ) -> List[Tensor]:
        """Two augmented views of ``images`` (B, 3, H, W), uint8 or float in [0, 1], each (B, 3, S, S); of one
        image (a PIL image or (3, H, W)), two (3, S, S) views, drawn as for a batch of that one image.

        ``generator`` (on the images' device) overrides this module's own.
        """
        if is_single_image(images):
            return [view[0] for view in self._two_views(check_rgb_image(images), generator)]
        return self._two_views(check_rgb_images(images), generator)

    def _two_views(self, images: Tensor, generator: Optional[torch.Generator]) -> List[Tensor]:
        device = images.device
        gen = self._generator_for(images, generator)
        batch, _, height, width = images.shape
        n = 2 * batch  # both views in one batched pass

        def uniform(low: float, high: float) -> Tensor:
            return torch.empty(n, device=device).uniform_(low, high, generator=gen)

        def coin(p: float) -> Tensor:
            return torch.rand(n, device=device, generator=gen) < p

        boxes = BF.random_resized_crop_params(n, height, width, self.scale, generator=gen, device=device)
        flip_h = coin(self.hf_prob) if self.hf_prob > 0 else None
        flip_v = coin(self.vf_prob) if self.vf_prob > 0 else None
        x = BF._resized_crop(images, boxes, self.input_size, self.input_size, flip_h, flip_v)
        if images.dtype != torch.uint8:
            x = x.clamp_(0.0, 1.0)  # float inputs may overshoot [0, 1] by rounding

        if self.rr_prob > 0:
            rotate = coin(self.rr_prob)
            if self.rr_range is None:
                x = BF.rotate90(x, rotate)
            else:
                x = BF.rotate(x, torch.where(rotate, uniform(*self.rr_range), torch.zeros(n, device=device)))

        if self.cj_prob > 0:
            jitter = coin(self.cj_prob)
            one, zero = torch.ones(n, device=device), torch.zeros(n, device=device)
            ranges = (self.brightness, self.contrast, self.saturation)
            blend_factors = torch.stack([torch.where(jitter, uniform(*bounds), one) for bounds in ranges], dim=1)
            BF._color_jitter_(
                x,
                blend_factors,
                hue=torch.where(jitter, uniform(*self.hue), zero),
                order=torch.rand(n, 4, device=device, generator=gen).argsort(dim=1),
            )

        if self.random_gray_scale > 0:
            BF._grayscale_(x, coin(self.random_gray_scale))

        if self.gaussian_blur > 0:
            blur = coin(self.gaussian_blur)
            sigma = torch.where(blur, uniform(*self.sigmas), torch.zeros(n, device=device))
            x = BF.gaussian_blur(x, sigma, self.blur_kernel_size)

        if self.normalize is not None:
            x = BF.normalize(x, self.normalize["mean"], self.normalize["std"], out=x)
        return list(x.chunk(2, dim=0))  # x is a fresh (2B, 3, S, S) tensor: the crop's output

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, cj_prob={self.cj_prob}, brightness={self.brightness}, "
            f"contrast={self.contrast}, saturation={self.saturation}, hue={self.hue}, scale={self.scale}, "
            f"random_gray_scale={self.random_gray_scale}, gaussian_blur={self.gaussian_blur}, sigmas={self.sigmas}, "
            f"vf_prob={self.vf_prob}, hf_prob={self.hf_prob}, rr_prob={self.rr_prob}, rr_range={self.rr_range}, "
            f"seed={self.seed}"
        )
