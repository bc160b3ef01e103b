"""Batched image operations with per-sample parameters, the building blocks of
:class:`~lightly_siamese_ext.transforms.BatchedSimSiamTransform`.

Every function takes a batch ``(B, C, H, W)`` and one parameter per sample (a tensor
of shape ``(B,)`` or ``(B, k)``) and works without a Python loop over the batch, on
any device. Colour and geometry functions expect float RGB images in ``[0, 1]``
(use :func:`to_float_images` first); they follow the float semantics of
``torchvision.transforms.v2.functional`` so that, for fixed parameters, each one
equals torchvision's op applied image by image (the tests check this).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_siamese_ext._validation import check_per_sample, check_rgb_images

__all__ = [
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "color_jitter",
    "gaussian_blur",
    "grayscale",
    "horizontal_flip",
    "normalize",
    "random_resized_crop_params",
    "resized_crop",
    "rgb_to_grayscale",
    "rotate",
    "rotate90",
    "to_float_images",
    "vertical_flip",
]

# ITU-R 601-2 luma, the weights torchvision and PIL use for grayscale.
_LUMA = (0.2989, 0.587, 0.114)
# Channel offsets (R, G, B) of the branch-free HSV -> RGB formula, in sixths of a turn: the
# usual (5, 3, 1), minus 2 to centre the triangle wave of adjust_hue on zero.
_HUE_OFFSETS = (3.0, 1.0, -1.0)
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


def _per_sample(value: Tensor, images: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1) in the images' dtype, for broadcasting."""
    return value.to(images.dtype).view(-1, 1, 1, 1)


def to_float_images(images: Tensor) -> Tensor:
    """uint8 (0..255) or float (0..1) ``(B, 3, H, W)`` -> float32 in [0, 1]."""
    check_rgb_images(images)
    if images.dtype == torch.uint8:
        return images.to(torch.float32).mul_(1.0 / 255.0)
    return images.to(torch.float32)


def rgb_to_grayscale(images: Tensor) -> Tensor:
    """Luma of float RGB images: ``(B, 3, H, W)`` -> ``(B, 1, H, W)``."""
    r, g, b = images.unbind(dim=1)
    return torch.mul(r, _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


def random_resized_crop_params(
    batch_size: int,
    height: int,
    width: int,
    scale: Tuple[float, float] = (0.08, 1.0),
    ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> Tensor:
    """Crop boxes drawn as ``torchvision.transforms.v2.RandomResizedCrop`` draws them.

    Per sample: up to 10 attempts of ``area * U(scale)`` and ``exp(U(log ratio))``,
    sizes rounded, the first attempt that fits is kept and its corner drawn uniformly;
    without one, torchvision's central-crop fallback. The attempts run in parallel.

    Returns:
        Long tensor (B, 4) of ``[top, left, height, width]`` in pixels.
    """
    attempts = 10
    area = float(height * width)
    kwargs = dict(device=device, dtype=torch.float32)
    target_area = torch.empty(batch_size, attempts, **kwargs).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(batch_size, attempts, **kwargs).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    target_area = target_area.mul_(area)
    aspect = log_ratio.exp_()
    w = torch.sqrt(target_area * aspect).round_()
    h = torch.sqrt(target_area / aspect).round_()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first fitting attempt
    w = w.gather(1, first).squeeze_(1)
    h = h.gather(1, first).squeeze_(1)

    # torchvision's fallback when no attempt fits: the largest central crop within `ratio`.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fallback_w, fallback_h = int(round(height * max(ratio))), height
    else:
        fallback_w, fallback_h = width, height
    any_fits = fits.any(dim=1)
    w = torch.where(any_fits, w, torch.full_like(w, fallback_w))
    h = torch.where(any_fits, h, torch.full_like(h, fallback_h))
    corner = torch.rand(batch_size, 2, generator=generator, **kwargs)
    top = torch.where(any_fits, (corner[:, 0] * (height - h + 1)).floor_(), (height - h).div(2).floor_())
    left = torch.where(any_fits, (corner[:, 1] * (width - w + 1)).floor_(), (width - w).div(2).floor_())
    return torch.stack((top, left, h, w), dim=1).long()


def _resize_weights(start: Tensor, length: Tensor, in_size: int, out_size: int, flip: Optional[Tensor]) -> Tensor:
    """(B, out_size, in_size) rows that resample [start, start + length) to out_size pixels.

    The weights are those of ``torch.nn.functional.interpolate(mode="bilinear",
    antialias=True)`` (which torchvision's resize uses): a triangle filter on pixel
    centres, widened by the scale when shrinking, cut at the crop's border and
    renormalised. Reversing the output rows flips the result for free.
    """
    device = start.device
    start = start.to(torch.float32).view(-1, 1, 1)
    length = length.to(torch.float32).view(-1, 1, 1)
    out_index = torch.arange(out_size, device=device, dtype=torch.float32).view(1, -1, 1)
    if flip is not None:
        out_index = out_index + flip.view(-1, 1, 1) * (out_size - 1 - 2 * out_index)
    scale = length / out_size
    centre = (out_index + 0.5) * scale + start - 0.5  # in pixel-index units
    pixel = torch.arange(in_size, device=device, dtype=torch.float32).view(1, 1, -1)
    inside = ((pixel >= start) & (pixel < start + length)).to(torch.float32)  # (B, 1, in_size)
    weights = (pixel - centre).abs_().mul_(-1.0 / scale.clamp(min=1.0)).add_(1.0).clamp_(min=0.0).mul_(inside)
    return weights.div_(weights.sum(dim=2, keepdim=True))


def resized_crop(
    images: Tensor,
    boxes: Tensor,
    size: int | Tuple[int, int],
    horizontal_flip: Optional[Tensor] = None,
    vertical_flip: Optional[Tensor] = None,
) -> Tensor:
    """Crops ``boxes`` and resizes them to ``size`` (bilinear, antialiased), optionally flipped.

    Equals ``torchvision.transforms.v2.functional.resized_crop(..., antialias=True)``
    followed by the flips, per sample. Done as two batched matrix products (columns,
    then rows) with per-sample resampling matrices, so a whole batch of different
    crops costs two ``bmm`` calls.

    Args:
        images: (B, C, H, W) uint8 (read as value / 255) or float images.
        boxes: (B, 4) ``[top, left, height, width]`` in pixels, inside the image.
        size: output side, or (height, width).
        horizontal_flip, vertical_flip: optional (B,) bool, flip these samples.

    Returns:
        (B, C, size_h, size_w) float32, a new tensor.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    check_per_sample(boxes, "boxes", images.shape[0], (4,))
    return _resized_crop(images, boxes, out_h, out_w, horizontal_flip, vertical_flip)


def _resized_crop(
    images: Tensor,
    boxes: Tensor,
    out_h: int,
    out_w: int,
    horizontal_flip: Optional[Tensor],
    vertical_flip: Optional[Tensor],
) -> Tensor:
    """``resized_crop`` where ``boxes`` may hold several crops per image: ``boxes[v * B + b]`` crops image ``b``."""
    views = boxes.shape[0] // images.shape[0]
    _, channels, height, width = images.shape
    batch, device = boxes.shape[0], images.device
    rows = _resize_weights(boxes[:, 0], boxes[:, 2], height, out_h, vertical_flip)
    cols = _resize_weights(boxes[:, 1], boxes[:, 3], width, out_w, horizontal_flip)
    if images.dtype == torch.uint8:
        rows = rows.mul_(1.0 / 255.0)
    # One copy converts to float32 and tiles the views; the channels ride along in the matrix rows.
    stacked = torch.empty(batch, channels * height, width, dtype=torch.float32, device=device)
    stacked.view(views, -1, channels, height, width).copy_(images.expand(views, -1, -1, -1, -1))
    resized_cols = torch.bmm(stacked, cols.transpose(1, 2))
    # Rows: one (out_h, H) matrix per sample, repeated per channel so the result comes out (B, C, out_h, out_w).
    rows_per_channel = rows.unsqueeze(1).expand(-1, channels, -1, -1).contiguous()
    out = torch.bmm(
        rows_per_channel.view(batch * channels, out_h, height), resized_cols.view(batch * channels, height, out_w)
    )
    return out.view(batch, channels, out_h, out_w)


def horizontal_flip(images: Tensor, apply: Tensor) -> Tensor:
    """Mirrors left-right the samples where ``apply`` (B,) is True."""
    check_per_sample(apply, "apply", images.shape[0])
    return torch.where(apply.view(-1, 1, 1, 1), images.flip(-1), images)


def vertical_flip(images: Tensor, apply: Tensor) -> Tensor:
    """Mirrors top-bottom the samples where ``apply`` (B,) is True."""
    check_per_sample(apply, "apply", images.shape[0])
    return torch.where(apply.view(-1, 1, 1, 1), images.flip(-2), images)


def rotate90(images: Tensor, apply: Tensor) -> Tensor:
    """Rotates square images by 90 degrees counter-clockwise where ``apply`` (B,) is True."""
    check_per_sample(apply, "apply", images.shape[0])
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images must be square for rotate90, got shape {tuple(images.shape)}")
    return torch.where(apply.view(-1, 1, 1, 1), torch.rot90(images, k=1, dims=(-2, -1)), images)


def rotate(images: Tensor, angles: Tensor) -> Tensor:
    """Rotates each image counter-clockwise by ``angles`` (B,) degrees about its centre.

    Nearest-neighbour sampling, zero fill, same size: torchvision's ``rotate`` defaults.
    """
    batch, _, height, width = images.shape
    check_per_sample(angles, "angles", batch)
    radians = angles.to(torch.float32).deg2rad()
    cos, sin = radians.cos(), radians.sin()
    # Inverse map from output to input, in normalised coordinates (x by W/2, y by H/2).
    theta = torch.stack(
        (
            torch.stack((cos, -sin * (height / width), torch.zeros_like(cos)), dim=1),
            torch.stack((sin * (width / height), cos, torch.zeros_like(cos)), dim=1),
        ),
        dim=1,
    ).to(images.dtype)
    grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    rotated = F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return torch.where((angles != 0).view(-1, 1, 1, 1), rotated, images)


def _blend(images: Tensor, factors: Tensor, target: Tensor | float) -> Tensor:
    """``clamp(f * images + (1 - f) * target, 0, 1)``: torchvision's ``_blend`` per sample."""
    f = _per_sample(factors, images)
    return images.mul(f).add_((1.0 - f) * target).clamp_(0.0, 1.0)


def adjust_brightness(images: Tensor, factors: Tensor) -> Tensor:
    """Scales each image by ``factors`` (B,), clamped to [0, 1]."""
    check_per_sample(factors, "factors", images.shape[0])
    return _blend(images, factors, 0.0)


def adjust_contrast(images: Tensor, factors: Tensor) -> Tensor:
    """Blends each image with the mean of its grayscale by ``factors`` (B,)."""
    check_per_sample(factors, "factors", images.shape[0])
    return _blend(images, factors, rgb_to_grayscale(images).mean(dim=(-3, -2, -1), keepdim=True))


def adjust_saturation(images: Tensor, factors: Tensor) -> Tensor:
    """Blends each image with its grayscale by ``factors`` (B,)."""
    check_per_sample(factors, "factors", images.shape[0])
    return _blend(images, factors, rgb_to_grayscale(images))


def adjust_hue(images: Tensor, factors: Tensor, inplace: bool = False) -> Tensor:
    """Shifts the HSV hue of each image by ``factors`` (B,) turns, in [-0.5, 0.5].

    Same result as torchvision's RGB -> HSV -> RGB round trip, computed without the
    round trip: value V and chroma C are kept, and the branch-free HSV -> RGB formula
    gives the channels directly, ``c = V - C * clamp(||j_c| - 3| - 1, 0, 1)`` with
    ``j_c`` the shifted hue (in sixths of a turn, wrapped to [-3, 3]) plus a channel
    offset. Only arithmetic on single-channel planes: ``torch.where``, ``remainder``
    and broadcasts to three channels are several times slower on the CPU.
    """
    check_per_sample(factors, "factors", images.shape[0])
    out = images if inplace else images.clone()
    _adjust_hue_(out, factors)
    return out


def _adjust_hue_(images: Tensor, factors: Tensor) -> None:
    r, g, b = images.unbind(dim=1)
    planes = [torch.empty_like(r) for _ in range(6)]
    maxc, chroma, red_max, green_max, blue_case, scratch = planes
    maxc = torch.maximum(torch.maximum(r, g, out=maxc), b, out=maxc)
    chroma = torch.sub(maxc, torch.minimum(torch.minimum(r, g, out=chroma), b, out=chroma), out=chroma)
    # Which channel holds the maximum, with torchvision's precedence red, green, blue (0/1 planes).
    red_max = torch.eq(r, maxc, out=red_max)
    green_max = torch.eq(g, maxc, out=green_max).sub_(red_max).clamp_(min=0.0)
    # Hue in sixths of a turn, times C: (g - b), 2C + (b - r) or 4C + (r - g) by the max channel.
    blue_case = torch.sub(r, g, out=blue_case).add_(chroma, alpha=4.0)
    green_case = torch.sub(b, r, out=scratch).add_(chroma, alpha=2.0).sub_(blue_case).mul_(green_max)
    hue6 = torch.sub(g, b, out=green_max).sub_(blue_case).mul_(red_max).add_(green_case).add_(blue_case)
    inverse = torch.clamp(chroma, min=1e-12, out=red_max).reciprocal_()  # gray pixels: hue6 = 0 * (1 / eps)
    hue6 = hue6.mul_(inverse).add_(factors.to(images.dtype).view(-1, 1, 1), alpha=6.0)
    hue6 = hue6.sub_(torch.mul(hue6, 1.0 / 6.0, out=scratch).round_().mul_(6.0))  # wrap to [-3, 3]
    for channel, offset in enumerate(_HUE_OFFSETS):
        ramp = torch.add(hue6, offset, out=scratch).abs_().sub_(3.0).abs_().sub_(1.0).clamp_(0.0, 1.0)
        torch.addcmul(maxc, chroma, ramp, value=-1.0, out=images[:, channel])


def color_jitter(
    images: Tensor,
    brightness: Tensor,
    contrast: Tensor,
    saturation: Tensor,
    hue: Tensor,
    order: Tensor,
    inplace: bool = False,
) -> Tensor:
    """torchvision's ``ColorJitter`` with per-sample factors and a per-sample op order.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1].
        brightness, contrast, saturation: (B,) blend factors (1 = unchanged).
        hue: (B,) hue shift in turns (0 = unchanged).
        order: (B, 4) long, a permutation of 0..3 per sample (0 brightness,
            1 contrast, 2 saturation, 3 hue), like torchvision's ``fn_idx``.
        inplace: overwrite ``images`` instead of returning a new tensor.

    The three blends share one formula, ``clamp(f * x + (1 - f) * t)`` with
    ``t = 0``, mean gray or gray, so the order is vectorised as three blend rounds
    before the hue shift and three after it: round ``r`` applies, per sample, the
    op at position ``r`` of its order if that op falls on that side of the hue
    (factor 1 otherwise). The hue shift, the costly op, runs once.
    """
    batch = images.shape[0]
    for value, name in ((brightness, "brightness"), (contrast, "contrast"), (saturation, "saturation"), (hue, "hue")):
        check_per_sample(value, name, batch)
    check_per_sample(order, "order", batch, (4,))
    out = images if inplace else images.clone()
    _color_jitter_(out, torch.stack((brightness, contrast, saturation), dim=1), hue, order)
    return out


def _color_jitter_(images: Tensor, blend_factors: Tensor, hue: Tensor, order: Tensor) -> None:
    """``color_jitter`` in place; ``blend_factors`` (B, 3) holds brightness, contrast, saturation."""
    factors = torch.cat((blend_factors, torch.ones_like(blend_factors[:, :1])), dim=1).to(images.dtype)
    hue_position = (order == HUE).int().argmax(dim=1)
    for before_hue, positions in ((True, (0, 1, 2)), (False, (1, 2, 3))):
        for position in positions:
            op = order[:, position]
            active = (position < hue_position) if before_hue else (position > hue_position)
            factor = factors.gather(1, op.unsqueeze(1)).squeeze(1)  # the hue column is 1: no blend
            _blend_round_(images, op, factor.where(active, 1.0))
        if before_hue:
            _adjust_hue_(images, hue)


def _blend_round_(images: Tensor, op: Tensor, factors: Tensor) -> None:
    """One jitter round, in place: per sample, brightness / contrast / saturation by ``op`` (B,).

    The target is ``(1 - f) * (a * gray + b * mean(gray))`` with per-sample 0/1
    weights ``a``, ``b``: arithmetic instead of ``torch.where`` on images, which is
    slow on the CPU.
    """
    f = _per_sample(factors, images)
    gray_weight = (op == SATURATION).to(images.dtype).view(-1, 1, 1, 1) * (1.0 - f)
    mean_weight = (op == CONTRAST).to(images.dtype).view(-1, 1, 1, 1) * (1.0 - f)
    gray = rgb_to_grayscale(images)
    target = gray.mean(dim=(-2, -1), keepdim=True).mul_(mean_weight)
    target = gray.mul_(gray_weight).add_(target)
    torch.addcmul(target, images, f, out=images).clamp_(0.0, 1.0)


def grayscale(images: Tensor, apply: Tensor, inplace: bool = False) -> Tensor:
    """Replaces the samples where ``apply`` (B,) is True by their luma on all 3 channels."""
    check_per_sample(apply, "apply", images.shape[0])
    out = images if inplace else images.clone()
    _grayscale_(out, apply)
    return out


def _grayscale_(images: Tensor, apply: Tensor) -> None:
    weight = apply.to(images.dtype).view(-1, 1, 1, 1)
    # x * 0 + gray * 1 and x * 1 + gray * 0 are exact: no torch.where over the images.
    gray = rgb_to_grayscale(images).mul_(weight)
    images.mul_(1.0 - weight).add_(gray)


def _blur_matrix(sigmas: Tensor, size: int, kernel_size: int) -> Tensor:
    """(B, size, size) Gaussian blur as a matrix, with torch's "reflect" padding folded in."""
    radius = kernel_size // 2
    device = sigmas.device
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    sigma = sigmas.to(torch.float32).clamp(min=1e-6).view(-1, 1)
    kernel = torch.softmax(-(offsets.view(1, -1) / sigma).square_().mul_(0.5), dim=1)  # (B, K), sums to 1
    source = torch.arange(size, device=device).view(-1, 1) + offsets.long().view(1, -1)  # (size, K)
    if size > 1:  # mirror without repeating the edge pixel, any number of times
        period = 2 * size - 2
        source = source.remainder(period)
        source = torch.where(source >= size, period - source, source)
    else:
        source = torch.zeros_like(source)
    matrix = torch.zeros(sigmas.shape[0], size, size, device=device, dtype=torch.float32)
    weights = kernel.unsqueeze(1).expand(-1, size, -1)
    return matrix.scatter_add_(2, source.expand(sigmas.shape[0], -1, -1), weights)


def gaussian_blur(images: Tensor, sigmas: Tensor, kernel_size: int) -> Tensor:
    """Gaussian blur with a per-sample standard deviation ``sigmas`` (B,), in pixels.

    Equals ``torchvision.transforms.v2.functional.gaussian_blur(img, [k, k], [s, s])``
    per sample (separable kernel, reflect padding). ``sigma = 0`` leaves a sample
    unchanged.
    """
    check_per_sample(sigmas, "sigmas", images.shape[0])
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
    height, width = images.shape[-2:]
    rows = _blur_matrix(sigmas, height, kernel_size).to(images.dtype).unsqueeze(1)
    cols = rows if width == height else _blur_matrix(sigmas, width, kernel_size).to(images.dtype).unsqueeze(1)
    return torch.matmul(torch.matmul(rows, images), cols.transpose(-1, -2))


def normalize(
    images: Tensor, mean: Sequence[float], std: Sequence[float], out: Optional[Tensor] = None
) -> Tensor:
    """``(images - mean) / std`` per channel, into ``out`` if given (may be ``images``).

    Per-channel scalar ops: no constant tensor is copied to the device (which would
    wait for the device's queued work).
    """
    if len(mean) != images.shape[1] or len(std) != images.shape[1]:
        raise ValueError(
            f"mean and std must have one value per channel ({images.shape[1]}), got {len(mean)} and {len(std)}"
        )
    out = torch.empty_like(images) if out is None else out
    for channel, (m, s) in enumerate(zip(mean, std)):
        torch.mul(images[:, channel], 1.0 / s, out=out[:, channel]).sub_(m / s)
    return out
