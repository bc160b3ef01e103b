"""Normalisation constants in the layout of lightly's ``IMAGENET_NORMALIZE`` (what every ``normalize`` argument of the
transforms takes)."""

from __future__ import annotations

__all__ = ["CIFAR10_MEAN", "CIFAR10_NORMALIZE", "CIFAR10_STD"]

# Per-channel statistics of the CIFAR-10 training set (pixel values in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_NORMALIZE = {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)}
