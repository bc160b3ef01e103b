"""Any timm model (or a ready nn.Module) as a headless encoder that returns pooled (B, D) features."""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import timm
import torch
import torch.nn as nn

from lightly_siamese_ext._validation import check_headless, check_model_name

__all__ = ["check_model_name", "create_backbone", "feature_dim_of", "infer_in_chans"]


def infer_in_chans(module: nn.Module) -> Optional[int]:
    """Input channels of a backbone: timm's ``in_chans`` attribute, else the first Conv2d's ``in_channels``."""
    in_chans = getattr(module, "in_chans", None)
    if isinstance(in_chans, int):
        return in_chans
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            return child.in_channels
    return None


def create_backbone(
    name_or_module: Union[str, nn.Module],
    pretrained: bool = False,
    **timm_kwargs: Any,
) -> Tuple[nn.Module, int]:
    """Builds a headless encoder and returns it with the width of its pooled features.

    Args:
        name_or_module: A timm model name (``timm.list_models()``, including the ``*_cifar`` models this package
            registers) or an ``nn.Module`` that already maps (B, C, H, W) images to (B, D) features. A timm model
            with its classifier on (``timm.create_model(name)``, ``num_classes > 0``) is refused with a
            ``ValueError`` rather than trained on its logits or changed in place: call its
            ``reset_classifier(0)`` first, or create it with ``num_classes=0``. One whose classifier was replaced
            by ``nn.Identity`` (``model.fc = nn.Identity()``) is headless.
        pretrained: Load timm's pretrained weights. Weights are never downloaded unless this is True.
        **timm_kwargs: Passed to ``timm.create_model`` (``in_chans``, ``global_pool``, ``drop_path_rate``, ``img_size``
            ...). ``num_classes`` is forced to 0 (headless); any other value is an error.

    Returns:
        ``(backbone, feature_dim)``: ``backbone(x)`` has shape (B, feature_dim). ``feature_dim`` is measured with a
        one-image forward pass, so it is right even where timm's ``num_features`` is not the pooled width
        (e.g. MobileNetV3's head conv, ``global_pool="catavgmax"``).
    """
    if isinstance(name_or_module, nn.Module):
        if pretrained or timm_kwargs:
            raise ValueError(
                "pretrained and timm keyword arguments only apply when name_or_module is a timm model name; "
                f"got an nn.Module with pretrained={pretrained} and {sorted(timm_kwargs)}"
            )
        module = check_headless(name_or_module)
    elif isinstance(name_or_module, str):
        check_model_name(name_or_module)
        num_classes = timm_kwargs.pop("num_classes", 0)
        if num_classes != 0:
            raise ValueError(f"num_classes must be 0 for a headless backbone, got {num_classes!r}")
        module = timm.create_model(name_or_module, pretrained=pretrained, num_classes=0, **timm_kwargs)
    else:
        raise TypeError(f"name_or_module must be a timm model name or an nn.Module, got {type(name_or_module).__name__}")
    return module, feature_dim_of(module)


def _probe_input_size(module: nn.Module) -> Tuple[int, int, int]:
    channels = infer_in_chans(module) or 3
    # Fixed-size models (timm ViTs) built with ``img_size=...`` keep the cfg's 224 but only accept img_size.
    img_size = getattr(getattr(module, "patch_embed", None), "img_size", None)
    if img_size is not None:
        return channels, int(img_size[0]), int(img_size[1])
    cfg = getattr(module, "pretrained_cfg", None) or {}
    if "input_size" in cfg:
        _, height, width = cfg["input_size"]
        return channels, height, width
    return channels, 32, 32


@torch.no_grad()
def feature_dim_of(module: nn.Module) -> int:
    """Width D of ``module``'s (B, D) output, from a one-image forward pass in eval mode (training state restored)."""
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    was_training = module.training
    module.eval()
    try:
        out = module(torch.zeros(1, *_probe_input_size(module), device=device, dtype=dtype))
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            "name_or_module must produce pooled (B, D) features; its output on a (1, C, H, W) probe was "
            f"{shape}. For timm models pass num_classes=0; wrap other modules with pooling and flatten."
        )
    return int(out.shape[1])
