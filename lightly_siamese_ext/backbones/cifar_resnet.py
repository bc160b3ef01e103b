"""CIFAR-stem ResNets registered in timm's own model registry.

The CIFAR variant of ResNet (He et al. 2016, Sec. 4.2; used by SimSiam, Appendix D) replaces the ImageNet stem
(7x7 stride-2 conv + 3x3 stride-2 max-pool, which shrinks a 32x32 image to 8x8 before ``layer1``) with a single
3x3 stride-1 conv and no max-pool, so ``layer1`` sees the full 32x32 map and ``layer4`` ends at 4x4.

Everything else is timm's :class:`~timm.models.resnet.ResNet`, so ``num_classes``, ``global_pool``,
``drop_path_rate``, ``features_only``, ``forward_features`` / ``forward_head`` behave as for any timm model::

    import timm, lightly_siamese_ext  # the import registers the models
    backbone = timm.create_model("resnet18_cifar", num_classes=0)   # (B, 512) pooled features
"""

from __future__ import annotations

from typing import Any, Dict

import torch.nn as nn
from timm.models import build_model_with_cfg, register_model
from timm.models._registry import generate_default_cfgs
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from lightly_siamese_ext.transforms.normalization import CIFAR10_MEAN, CIFAR10_STD

__all__ = ["CifarResNet"]


class CifarResNet(ResNet):
    """timm ResNet with a CIFAR stem: 3x3 stride-1 ``conv1`` and no max-pool (total stride 8, not 32).

    Accepts every argument of :class:`timm.models.resnet.ResNet` except the deep-stem variants, whose
    stride-2 stems are what the CIFAR stem removes, and so a ``stem_width`` other than 64 (``channels`` sets the
    stage widths; the stem stays 64 wide).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        stem_type = kwargs.get("stem_type", "")
        if stem_type:
            raise ValueError(f"stem_type must be '' for a CIFAR-stem ResNet, got {stem_type!r}")
        # timm builds the plain stem 64 wide whatever stem_width says (it only sizes the deep stems): refuse
        # rather than silently ignore a narrower or wider stem.
        if kwargs.get("stem_width", 64) != 64:
            raise ValueError(f"stem_width must be 64 for a CIFAR-stem ResNet (timm's plain stem is 64 wide; "
                             f"stem_width only sizes the deep stems), got {kwargs['stem_width']!r}")
        super().__init__(*args, **kwargs)
        stem_width = self.bn1.num_features
        old_conv = self.conv1
        # Keep the name ``conv1`` so the pretrained cfg's ``first_conv`` stays valid.
        self.conv1 = nn.Conv2d(
            self.in_chans,
            stem_width,
            kernel_size=3,
            stride=1,
            padding=1,
            bias=False,
            device=old_conv.weight.device,
            dtype=old_conv.weight.dtype,
        )
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        # The stem no longer halves the resolution and the max-pool is gone: every reduction shrinks by 4,
        # the stem's (2) by 2.
        for info in self.feature_info:
            info["reduction"] = 1 if info["module"] == "act1" else info["reduction"] // 4


def _cfg(**kwargs: Any) -> Dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (4, 4),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        **kwargs,
    }


# timm reads ``default_cfgs`` of the entrypoint's module at registration time: it must stay above them.
default_cfgs = generate_default_cfgs(
    {
        "resnet18_cifar": _cfg(),
        "resnet34_cifar": _cfg(),
        "resnet50_cifar": _cfg(),
    }
)


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    return build_model_with_cfg(CifarResNet, variant, pretrained, **kwargs)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18 with a CIFAR stem (3x3 stride-1 conv, no max-pool); 512-d features."""
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2))
    return _create_cifar_resnet("resnet18_cifar", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet34_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-34 with a CIFAR stem (3x3 stride-1 conv, no max-pool); 512-d features."""
    model_args = dict(block=BasicBlock, layers=(3, 4, 6, 3))
    return _create_cifar_resnet("resnet34_cifar", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet50_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-50 with a CIFAR stem (3x3 stride-1 conv, no max-pool); 2048-d features."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3))
    return _create_cifar_resnet("resnet50_cifar", pretrained, **dict(model_args, **kwargs))
