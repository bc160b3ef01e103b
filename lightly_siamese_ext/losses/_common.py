"""What every loss here does around its formula: gather across ranks, compute in float32, reduce."""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence, Tuple, Union

import torch
from lightly.utils import dist
from torch import Tensor

from lightly_siamese_ext._validation import (
    check_embeddings,
    check_indices_not_gathered,
    check_indices_tuple,
    check_labels,
)

REDUCTIONS = ("mean", "sum", "none")


def indexed_call_inputs(loss: str, tensors: Tuple[Tensor, ...], indices_tuple: Sequence[Tensor],
                        gather_distributed: bool) -> Tuple[Tensor, Tuple[Tensor, ...]]:
    """``(embeddings, indices)`` of a call ``loss(embeddings[, labels], indices_tuple=...)`` (a PML miner's output:
    (a, p, n) triplets or (a1, p, a2, n) pairs), checked; the labels, when given, only for their shape."""
    if len(tensors) not in (1, 2):
        raise TypeError(f"{loss} with indices_tuple takes (embeddings) or (embeddings, labels), got {len(tensors)} "
                        "tensor arguments")
    embeddings = check_embeddings(tensors[0], "embeddings")
    if len(tensors) == 2 and tensors[1] is not None:
        check_labels(tensors[1], length=len(embeddings), device=embeddings.device)
    check_indices_not_gathered(gather_distributed)
    return embeddings, check_indices_tuple(indices_tuple, len(embeddings), embeddings.device)


def gather_batch(tensors: Tuple[Tensor, ...], gather_distributed: bool) -> Tuple[Tensor, ...]:
    """Concatenates each tensor over all ranks (keeping gradients) when asked to and running distributed.

    Every rank must hold the same number of rows. Every rank then computes the loss of the whole global batch,
    so the loss is the same on every rank; ``lightly.utils.dist.gather`` sums the embeddings' gradients over the
    ranks, and DDP's average over the ranks turns that sum back into the single-process gradient.
    """
    if not (gather_distributed and dist.world_size() > 1):
        return tensors
    return tuple(_gather(t) for t in tensors)


def _gather(tensor: Tensor) -> Tensor:
    if tensor.dtype == torch.bool:  # not every backend all-gathers bool tensors
        return _gather(tensor.to(torch.uint8)).bool()
    return torch.cat(dist.gather(tensor.contiguous()), dim=0)


@contextlib.contextmanager
def full_precision(reference: Tensor) -> Iterator[torch.dtype]:
    """Disables autocast on ``reference``'s device and yields the dtype to compute in: float32 for 16-bit
    inputs, else the input's own (float32 or float64)."""
    with torch.autocast(device_type=reference.device.type, enabled=False):
        yield torch.promote_types(reference.dtype, torch.float32)


def reduce_losses(losses: Tensor, count: Union[Tensor, int], reduction: str) -> Tensor:
    """``"none"``: ``losses``; ``"sum"``: their sum; ``"mean"``: the sum over ``max(count, 1)``, a tensor so that
    no host sync happens; with nothing to average this is an exact 0 still connected to the graph."""
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    if isinstance(count, int):
        return total / max(count, 1)
    return total / count.clamp(min=1).to(total.dtype)
