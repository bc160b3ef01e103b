"""Backbones: CIFAR-stem ResNets registered in timm, and a factory for headless timm encoders."""

from lightly_siamese_ext.backbones.cifar_resnet import CIFAR10_MEAN, CIFAR10_NORMALIZE, CIFAR10_STD, CifarResNet
from lightly_siamese_ext.backbones.factory import check_model_name, create_backbone, feature_dim_of

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_NORMALIZE",
    "CIFAR10_STD",
    "CifarResNet",
    "check_model_name",
    "create_backbone",
    "feature_dim_of",
]
