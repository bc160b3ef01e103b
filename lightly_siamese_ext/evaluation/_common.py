"""Shared by the evaluation functions: the distances they rank by, and top-k hit counting."""

from __future__ import annotations

from typing import Sequence

import torch
from lightly.utils.benchmarking.topk import mean_topk_accuracy
from torch import Tensor

#: What the retrieval and verification metrics rank by (the losses also know "squared_euclidean").
DISTANCES = ("euclidean", "cosine")


def topk_hits(predicted: Tensor, targets: Tensor, ks: Sequence[int]) -> Tensor:
    """Number of rows (float64, one per k) whose target is among the first k predicted classes (B, >= max(ks)).

    lightly's :func:`mean_topk_accuracy` gives float32 means; times B they are whole numbers up to rounding, so
    rounding recovers exact counts (0.102, not 0.10199999996).
    """
    accuracy = mean_topk_accuracy(predicted, targets.to(predicted.device), k=ks)
    return (torch.stack([accuracy[k] for k in ks]).double() * predicted.shape[0]).round()
