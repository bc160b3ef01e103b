"""Learning-rate schedule that honours SimSiam's fixed-learning-rate parameter groups."""

from __future__ import annotations

from typing import Any

import torch
from lightly.utils.scheduler import CosineWarmupScheduler as _LightlyCosineWarmupScheduler

__all__ = ["CosineWarmupScheduler"]


def _constant(epoch: int) -> float:
    return 1.0


class CosineWarmupScheduler(_LightlyCosineWarmupScheduler):
    """lightly's ``CosineWarmupScheduler`` (same arguments), except that parameter groups with ``fix_lr=True``
    keep their initial learning rate, as SimSiam's predictor does with ``--fix-pred-lr`` (paper, Sec. 4.4).

    Use it with :meth:`lightly_siamese_ext.SimSiam.parameter_groups`. Without such groups it is lightly's scheduler.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, *args, **kwargs)
        self.lr_lambdas = [
            _constant if group.get("fix_lr", False) else self.scale_lr for group in optimizer.param_groups
        ]
        # LambdaLR already applied the cosine factor to every group at construction: redo it per group.
        for group, base_lr, lr_lambda in zip(optimizer.param_groups, self.base_lrs, self.lr_lambdas):
            group["lr"] = base_lr * lr_lambda(self.last_epoch)
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
