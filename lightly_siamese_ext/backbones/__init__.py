"""Backbones: CIFAR-stem ResNets registered in timm, and a factory for headless timm encoders."""

from lightly_siamese_ext.backbones.cifar_resnet import CifarResNet
from lightly_siamese_ext.backbones.factory import check_model_name, create_backbone, feature_dim_of, infer_in_chans

__all__ = ["CifarResNet", "check_model_name", "create_backbone", "feature_dim_of", "infer_in_chans"]
