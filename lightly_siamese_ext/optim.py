"""Learning-rate schedule that honours SimSiam's fixed-learning-rate parameter groups."""

from __future__ import annotations

from typing import Any

import torch
from lightly.utils.scheduler import CosineWarmupScheduler as _LightlyCosineWarmupScheduler

from lightly_siamese_ext._validation import check_positive_int

__all__ = ["CosineWarmupScheduler", "epoch_cosine_scheduler"]


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


def epoch_cosine_scheduler(
    optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: int = 0, end_value: float = 0.0
) -> CosineWarmupScheduler:
    """A :class:`CosineWarmupScheduler` stepped once per epoch in which epoch ``e`` of ``epochs`` trains at
    ``lr * 0.5 * (1 + cos(pi * e / epochs))`` after warm-up: SimSiam's (and MoCo's) ``adjust_learning_rate``.

    lightly's schedule reaches ``end_value`` at step ``max_epochs - 1``; with ``max_epochs=epochs`` the last epoch
    would train at ``end_value`` (0: an epoch of compute that changes nothing, 10 % of a 10-epoch run). Here the
    schedule runs over ``epochs + 1`` steps, so every trained epoch has a learning rate above ``end_value``.
    """
    check_positive_int(epochs, "epochs")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"warmup_epochs must be an int in [0, epochs], got {warmup_epochs!r} (epochs={epochs})")
    return CosineWarmupScheduler(optimizer, warmup_epochs=warmup_epochs, max_epochs=epochs + 1, end_value=end_value)
