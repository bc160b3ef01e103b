"""Shared by the loss tests: random batches, value-and-gradient, and brute-force references (Python loops over
pairs and triplets, one scalar at a time, with the textbook formulas: slow, obviously right, and independent of
the vectorised code under test)."""

from __future__ import annotations

import itertools
from typing import Callable, List, Optional, Set, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def labelled_batch(batch_size=10, dim=5, classes=3, seed=0, dtype=torch.float64) -> Tuple[Tensor, Tensor]:
    """Gaussian embeddings (B, D) and random labels (B,) from ``classes`` classes."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, dim, generator=generator, dtype=dtype)
    return x, torch.randint(0, classes, (batch_size,), generator=generator)


def normalised_batch(batch_size=64, dim=16, per_class=8, seed=0) -> Tuple[Tensor, Tensor]:
    """L2-normalised float32 embeddings with ``per_class`` samples per class, labels shuffled (the benchmark's)."""
    generator = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(batch_size, dim, generator=generator), dim=1)
    return x, (torch.arange(batch_size) // per_class)[torch.randperm(batch_size, generator=generator)]


def check_float16_autocast_on_cuda(loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, labels: Tensor) -> None:
    """Under fp16 autocast on CUDA the loss is float32, its gradients finite, and it matches the CPU's float32."""
    cuda_x = x.cuda().requires_grad_()
    with torch.autocast("cuda", dtype=torch.float16):
        loss = loss_fn(cuda_x, labels.cuda())
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(cuda_x.grad).all()
    torch.testing.assert_close(loss.cpu(), loss_fn(x, labels), rtol=1e-4, atol=1e-5)


def value_and_grad(fn: Callable[[Tensor], Tensor], x: Tensor, upstream: Optional[Tensor] = None):
    """``fn(x)`` (detached) and the gradient of ``sum(fn(x) * upstream)`` (default: of ``sum(fn(x))``) w.r.t. x."""
    x = x.clone().requires_grad_()
    out = fn(x)
    (grad,) = torch.autograd.grad((out if upstream is None else out * upstream).sum(), x)
    return out.detach(), grad


def distance(a: Tensor, b: Tensor, kind: str) -> Tensor:
    """Distance between two 1-D tensors, differentiable; the square root is taken of a positive number only."""
    if kind == "cosine":
        return 1 - torch.dot(a, b) / (a.norm() * b.norm())
    squared = ((a - b) ** 2).sum()
    if kind == "squared_euclidean":
        return squared
    return squared.sqrt() if squared > 0 else squared * 0


def distance_table(x: Tensor, kind: str) -> List[List[Tensor]]:
    return [[distance(x[i], x[j], kind) for j in range(len(x))] for i in range(len(x))]


def triplets(labels: Tensor, table: List[List[Tensor]], mining: str, margin: float) -> List[Tuple[int, int, int]]:
    """The mined triplets (a, p, n), by the definitions in the docstrings, in lexicographic order."""
    n = len(labels)
    found = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        if mining == "batch_hard":
            if positives and negatives:
                p = max(positives, key=lambda j: float(table[a][j].detach()))
                k = min(negatives, key=lambda j: float(table[a][j].detach()))
                found.append((a, p, k))
            continue
        for p, k in itertools.product(positives, negatives):
            d_ap, d_an = float(table[a][p].detach()), float(table[a][k].detach())
            if mining == "batch_all" or d_ap < d_an < d_ap + margin:
                found.append((a, p, k))
    return found


def triplet_loss(
    x: Tensor,
    labels: Tensor,
    kind: str,
    mining: str,
    margin: float,
    soft_margin: bool = False,
    mean_over: str = "valid",
    reduction: str = "mean",
) -> Tensor:
    table = distance_table(x, kind)
    per_anchor = [x.sum() * 0 for _ in range(len(x))]
    terms = []
    for a, p, k in triplets(labels, table, mining, margin):
        difference = table[a][p] - table[a][k]
        term = torch.nn.functional.softplus(difference) if soft_margin else torch.relu(difference + margin)
        per_anchor[a] = per_anchor[a] + term
        terms.append(term)
    if reduction == "none":
        return torch.stack(per_anchor)
    total = sum(terms, x.sum() * 0)
    if reduction == "sum":
        return total
    count = sum(1 for t in terms if t > 0) if mean_over == "active" else len(terms)
    return total / max(count, 1)


def contrastive_pair_losses(x: Tensor, labels: Tensor, kind: str, margin: float) -> Tensor:
    """Losses of all pairs i < j, row-major (the order of torch.triu_indices)."""
    losses = []
    for i, j in itertools.combinations(range(len(x)), 2):
        d = distance(x[i], x[j], kind)
        losses.append(d**2 if labels[i] == labels[j] else torch.relu(margin - d) ** 2)
    return torch.stack(losses) if losses else x.sum() * torch.zeros(0, dtype=x.dtype)


def as_set(indices: Tuple[Tensor, Tensor, Tensor]) -> Set[Tuple[int, int, int]]:
    return set(zip(*(t.tolist() for t in indices)))
