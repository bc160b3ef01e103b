"""What every training recipe does the same way: where a run executes and in which precision, the random stream
of each epoch, and stopping early on request."""

from __future__ import annotations

import argparse
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
