"""What every training recipe does the same way: where a run executes and in which precision, the random stream
of each epoch, stopping early on request, and stopping when the loss stops being finite."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional

import torch


def device_for(args: argparse.Namespace, rank: int = 0) -> torch.device:
    """``--device``: CUDA (this rank's GPU) when asked for or, with ``auto``, when available; else the CPU."""
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    return torch.device("cuda", rank % max(torch.cuda.device_count(), 1)) if use_cuda else torch.device("cpu")


def amp_dtype_for(args: argparse.Namespace, device: torch.device) -> Optional[torch.dtype]:
    """``--precision``: bf16 autocast when asked for or, with ``auto``, on CUDA; None (float32) otherwise."""
    use_bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    return torch.bfloat16 if use_bf16 else None


def epoch_generator(seed: int, epoch: int, device: torch.device, rank: int = 0) -> torch.Generator:
    """The augmentation randomness of ``epoch`` on ``rank``, derived from (seed, epoch, rank) alone: a resumed
    run draws exactly what an uninterrupted one would have, and no two ranks or epochs share a stream."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch * 1_009 + rank)


def stop_requested(args: argparse.Namespace, epoch: int) -> bool:
    """Whether ``--stop-after-epoch`` ends the run after ``epoch`` (0-based) though epochs remain, as if killed."""
    stop = args.stop_after_epoch is not None and args.stop_after_epoch <= epoch + 1 < args.epochs
    return stop


class FiniteLossWatch:
    """Finds the first step of an epoch whose loss is not finite, without a host sync per step: the step and its
    loss are kept on the loss's device (two scalar ops a step) and read once, by :meth:`check` at the epoch's end,
    where the recipes read the epoch's loss anyway. A NaN or inf loss never recovers within the epoch, so checking
    there stops the run before a diverged model is evaluated, logged or checkpointed."""

    def __init__(self, device: torch.device) -> None:
        self.steps = 0
        self._first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self._first_bad_loss = torch.zeros((), device=device)

    def update(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        first = ~torch.isfinite(loss) & (self._first_bad_step < 0)
        self._first_bad_step = torch.where(first, self.steps, self._first_bad_step)
        self._first_bad_loss = torch.where(first, loss, self._first_bad_loss)
        self.steps += 1

    def check(self, epoch: int, epoch_loss: float, model: torch.nn.Module, checkpoint: Path, hint: str) -> None:
        """``ValueError`` naming ``epoch`` (0-based) and the step when a loss of this epoch, the epoch's loss
        (``epoch_loss``, across ranks) or ``model``'s weights are not finite; ``checkpoint`` is named as what the
        run keeps, ``hint`` as what to change."""
        bad_step = int(self._first_bad_step)
        kept = (f"{checkpoint} keeps epoch {epoch}, the last finite one" if epoch > 0 else
                "no checkpoint was written")
        where = f"epoch {epoch + 1}"
        if bad_step >= 0:
            where += f", step {bad_step + 1} of {self.steps}"
        elif math.isfinite(epoch_loss):
            if _all_finite(model):
                return
            bad = next(name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all()))
            raise ValueError(f"the weights became non-finite ({bad}) in {where}: training stopped; {kept} ({hint})")
        else:
            where += " (on another rank)"
        value = float(self._first_bad_loss) if bad_step >= 0 else epoch_loss
        raise ValueError(f"the loss became {value} at {where}: training stopped; {kept} ({hint})")


def _all_finite(model: torch.nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite: one host sync for all of them."""
    flags = [torch.isfinite(p.detach()).all() for p in model.parameters()]
    return not flags or bool(torch.stack(flags).all())
