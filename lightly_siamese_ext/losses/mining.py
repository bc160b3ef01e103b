"""In-batch triplet mining on a (B, B) distance matrix with label masks.

Definitions, for an anchor ``a``, a positive ``p`` (same label, ``p != a``) and a negative ``n`` (other label):

- **batch_all** (Hermans et al., 2017): every valid triplet ``(a, p, n)``.
- **batch_hard** (Hermans et al., 2017): for every anchor with at least one positive and one negative, the
  farthest positive and the closest negative.
- **semi_hard** (Schroff et al., 2015, FaceNet): every triplet whose negative is farther than the positive but
  inside the margin: ``d(a, p) < d(a, n) < d(a, p) + margin``.

The public functions return index tensors ``(anchor, positive, negative)``, each (T,) int64, sorted by anchor,
then positive, then negative. Their output holds one entry per triplet; they never form a (B, B, B) tensor but
work through the positive pairs in chunks of at most :data:`CHUNK_ELEMENTS` (pair, candidate) elements.
The other functions are the building blocks that :class:`~lightly_siamese_ext.losses.TripletLoss` uses without
listing triplets.

- Schroff et al., FaceNet, 2015, https://arxiv.org/abs/1503.03832
- Hermans et al., In Defense of the Triplet Loss for Person Re-Identification, 2017, https://arxiv.org/abs/1703.07737
"""

from __future__ import annotations

from typing import Callable, Iterator, Tuple

import torch
from torch import Tensor

from lightly_siamese_ext.losses._checks import check_labels, check_margin

__all__ = ["CHUNK_ELEMENTS", "MINING", "mine_batch_all", "mine_batch_hard", "mine_semi_hard"]

MINING = ("batch_all", "batch_hard", "semi_hard")

#: Largest number of (positive pair, candidate) elements handled at once by the chunked loops.
CHUNK_ELEMENTS = 1 << 21

Triplets = Tuple[Tensor, Tensor, Tensor]
# (anchor (P,), positive (P,), negative mask of those rows (P, B)) -> selected negatives (P, B)
_Selector = Callable[[Tensor, Tensor, Tensor], Tensor]


def mine_batch_hard(distances: Tensor, labels: Tensor) -> Triplets:
    """Hardest positive and hardest negative of every anchor that has both.

    Args:
        distances: (B, B) distances, or any matrix that increases with the distance within each row.
        labels: (B,) integer class ids.

    Returns:
        ``(anchor, positive, negative)``, each (T,) with T <= B.
    """
    _check_matrix(distances, labels)
    with torch.no_grad():
        bound = float(distances.abs().max()) if distances.numel() else 1.0
        shifted = label_offsets(labels, bound, distances.dtype).add_(distances)
        positive, negative, valid = hardest_pairs(shifted, bound)
        anchor = torch.arange(labels.shape[0], device=labels.device)
        return anchor[valid], positive[valid], negative[valid]


def mine_semi_hard(distances: Tensor, labels: Tensor, margin: float) -> Triplets:
    """All triplets with ``d(a, p) < d(a, n) < d(a, p) + margin``.

    Args:
        distances: (B, B) distances.
        labels: (B,) integer class ids.
        margin: Width of the semi-hard window, > 0.

    Returns:
        ``(anchor, positive, negative)``, each (T,).
    """
    _check_matrix(distances, labels)
    margin = check_margin(margin)
    with torch.no_grad():
        return _expand_positive_pairs(
            labels,
            lambda a, p, negatives: negatives
            & semi_hard_window(distances[a], distances[a, p].unsqueeze(1), margin, torch.bool),
        )


def mine_batch_all(labels: Tensor) -> Triplets:
    """All valid triplets of the batch.

    Args:
        labels: (B,) integer class ids.

    Returns:
        ``(anchor, positive, negative)``, each (T,) with T = sum over anchors of #positives * #negatives.
    """
    check_labels(labels)
    with torch.no_grad():
        return _expand_positive_pairs(labels, lambda a, p, rows: rows)


def same_label_mask(labels: Tensor) -> Tensor:
    """(B, B) bool: ``labels[i] == labels[j]`` (the diagonal included)."""
    return labels.unsqueeze(1) == labels.unsqueeze(0)


def label_offsets(labels: Tensor, bound: float, dtype: torch.dtype) -> Tensor:
    """(B, B): ``-(4 bound + 1)`` where labels differ, 0 where they agree, to add to distance scores bounded by
    ``bound``. Made with float arithmetic on compact class codes: several times faster on the CPU than a bool mask
    and its conversion."""
    codes = compact_labels(labels).to(torch.promote_types(dtype, torch.float32))  # exact below 2^24 classes
    return (codes.unsqueeze(1) - codes.unsqueeze(0)).abs_().clamp_(max=1.0).mul_(-(4.0 * bound + 1.0))


def hardest_pairs(shifted: Tensor, bound: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Per anchor: index of the farthest positive, of the closest negative, and whether both exist; each (B,).

    ``shifted`` is ``scores + label_offsets(labels, bound)`` for (B, B) ``scores`` that increase with the distance
    within each row and are bounded by ``bound`` in absolute value; it is **overwritten**. With the negatives
    pushed below every positive and the diagonal parked between the two, one matrix serves both searches: a row's
    maximum is its farthest positive (or the diagonal if it has none), its minimum its closest negative (or the
    diagonal if it has none).
    """
    middle = -(2.0 * bound + 0.5)
    shifted.fill_diagonal_(middle)
    farthest, positive = shifted.max(dim=1)
    closest, negative = shifted.min(dim=1)
    return positive, negative, (farthest > middle) & (closest < middle)


def compact_labels(labels: Tensor) -> Tensor:
    """Labels renumbered 0, 1, ... in sorted order, (B,) int64; equal exactly where ``labels`` are equal. Small
    integers survive a float32 cast exactly, which arbitrary ids (hashes, > 2^24) do not."""
    sorted_labels, order = labels.sort()
    starts = torch.ones_like(sorted_labels, dtype=torch.long)
    starts[1:] = sorted_labels[1:] != sorted_labels[:-1]
    return torch.empty_like(starts).scatter_(0, order, starts.cumsum(0).sub_(1))


def semi_hard_window(to_negatives: Tensor, to_positive: Tensor, margin: float, dtype: torch.dtype) -> Tensor:
    """(P, B) mask of ``d(a, p) < d(a, n) < d(a, p) + margin`` for distances ``to_negatives`` (P, B) and
    ``to_positive`` (P, 1), as ``dtype`` (bool, or 0/1 floats written directly by the comparisons)."""
    upper = to_positive + margin
    if dtype == torch.bool:
        return (to_negatives > to_positive) & (to_negatives < upper)
    window = torch.gt(to_negatives, to_positive, out=torch.empty_like(to_negatives, dtype=dtype))
    return window.mul_(torch.lt(to_negatives, upper, out=torch.empty_like(window)))


def positive_pair_chunks(same: Tensor, row_length: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """All positive pairs ``(anchor, positive)`` (``a != p``) in chunks of at most ``CHUNK_ELEMENTS // row_length``
    pairs. Listing the pairs is one host sync on CUDA."""
    positives = same.clone()
    positives.fill_diagonal_(False)
    anchor, positive = positives.nonzero(as_tuple=True)
    del positives
    step = max(1, CHUNK_ELEMENTS // max(row_length, 1))
    for start in range(0, anchor.shape[0], step):
        yield anchor[start : start + step], positive[start : start + step]


def _expand_positive_pairs(labels: Tensor, select: _Selector) -> Triplets:
    same = same_label_mask(labels)
    found = []
    for anchor, positive in positive_pair_chunks(same, labels.shape[0]):
        row, negative = select(anchor, positive, ~same[anchor]).nonzero(as_tuple=True)
        found.append((anchor[row], positive[row], negative))
    if not found:
        empty = labels.new_zeros(0, dtype=torch.long)
        return empty, empty, empty
    a, p, n = (torch.cat(parts) for parts in zip(*found))
    return a, p, n


def _check_matrix(distances: Tensor, labels: Tensor) -> None:
    if not isinstance(distances, Tensor):
        raise TypeError(f"distances must be a torch.Tensor of shape (B, B), got {type(distances).__name__}")
    if distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f"distances must be a square (B, B) matrix, got shape {tuple(distances.shape)}")
    if not distances.is_floating_point():
        raise ValueError(f"distances must be a floating-point tensor, got dtype {distances.dtype}")
    check_labels(labels, distances)

