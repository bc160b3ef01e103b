"""One SimSiam optimisation step (forward, loss in float32, backward, optimizer step), for a user's own loop, the
recipes and the benchmarks."""

from __future__ import annotations

import contextlib
from typing import ContextManager, Optional, Tuple

import torch
from torch import Tensor

from lightly_siamese_ext.models.simsiam import SimSiam, SimSiamOutput, simsiam_loss

__all__ = ["autocast_context", "simsiam_train_step"]


def autocast_context(device: torch.device, amp_dtype: Optional[torch.dtype]) -> ContextManager[object]:
    """``torch.autocast`` for ``device`` with ``amp_dtype`` (e.g. torch.bfloat16), or a no-op when it is None."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def simsiam_train_step(
    model: SimSiam,
    x0: Tensor,
    x1: Tensor,
    optimizer: torch.optim.Optimizer,
    amp_dtype: Optional[torch.dtype] = None,
) -> Tuple[Tensor, SimSiamOutput]:
    """Forward both views (B, C, H, W), symmetric loss in float32, backward and ``optimizer.step()``.

    ``model`` may be a SimSiam wrapped in DDP or ``torch.compile``. Returns the loss (0-d) and the model's outputs,
    all detached and on the model's device: no host sync happens here (call ``.item()`` only when logging).
    bf16 autocast needs no gradient scaler; fp16 is not supported here for that reason.
    """
    if amp_dtype not in (None, torch.bfloat16, torch.float32):
        raise ValueError(f"amp_dtype must be None, torch.bfloat16 or torch.float32, got {amp_dtype}")
    with autocast_context(x0.device, amp_dtype):
        output = model(x0, x1)
        loss = simsiam_loss(output)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), SimSiamOutput(*(t.detach() for t in output))
