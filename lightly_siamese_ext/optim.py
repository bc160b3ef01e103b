"""SimSiam's learning-rate schedule: a per-epoch cosine that leaves fixed-learning-rate parameter groups alone."""

from __future__ import annotations

import math
from typing import Callable, List

import torch
from torch.optim.lr_scheduler import LambdaLR

from lightly_siamese_ext._validation import check_float, check_int, check_positive_int

__all__ = ["epoch_cosine_scheduler"]


def epoch_cosine_scheduler(
    optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: int = 0, end_value: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` stepped once per epoch, with one lambda per parameter group (torch's own mechanism): epoch
    ``e`` trains at ``lr * (end + (1 - end) * 0.5 * (1 + cos(pi * (e - w) / (epochs - w))))`` after a linear warm-up
    over the first ``w = warmup_epochs`` epochs (``lr * (e + 1) / w``), and groups with ``fix_lr=True`` keep their
    learning rate.

    With ``w = 0`` and ``end = 0`` this is the official SimSiam (and MoCo) ``adjust_learning_rate``, including its
    predictor rule (``--fix-pred-lr``, paper Sec. 4.4: :meth:`lightly_siamese_ext.SimSiam.parameter_groups`). Every
    trained epoch has a rate above ``end_value``; lightly's ``CosineWarmupScheduler(max_epochs=epochs)`` reaches it
    at the last epoch, which then trains at 0 (a wasted epoch, 10 % of a 10-epoch run).
    """
    check_positive_int(epochs, "epochs")
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", 0, epochs)
    end_value = check_float(end_value, "end_value", 0.0, 1.0)

    def cosine(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / warmup_epochs
        progress = (epoch - warmup_epochs) / max(epochs - warmup_epochs, 1)
        return end_value + (1.0 - end_value) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    lambdas: List[Callable[[int], float]] = [
        (lambda epoch: 1.0) if group.get("fix_lr", False) else cosine for group in optimizer.param_groups
    ]
    return LambdaLR(optimizer, lr_lambda=lambdas)
