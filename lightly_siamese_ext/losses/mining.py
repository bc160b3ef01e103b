"""In-batch triplet mining on a (B, B) distance matrix with label masks.

Definitions, for an anchor ``a``, a positive ``p`` (same label, ``p != a``) and a negative ``n`` (other label):

- **batch_all** (Hermans et al., 2017): every valid triplet ``(a, p, n)``.
- **batch_hard** (Hermans et al., 2017): for every anchor with at least one positive and one negative, the
  farthest positive and the closest negative.
- **semi_hard** (Schroff et al., 2015, FaceNet): every triplet whose negative is farther than the positive but
  inside the margin: ``d(a, p) < d(a, n) < d(a, p) + margin``.

The public functions return index tensors ``(anchor, positive, negative)``, each (T,) int64, sorted by anchor,
then positive, then negative. Their output holds one entry per triplet; they never form a (B, B, B) tensor but
work through the positive pairs in chunks of at most ``max(CHUNK_ELEMENTS, B^2 / 2)`` (pair, candidate) elements.
The other functions are the building blocks that :class:`~lightly_siamese_ext.losses.TripletLoss` uses without
listing triplets.

- Schroff et al., FaceNet, 2015, https://arxiv.org/abs/1503.03832
- Hermans et al., In Defense of the Triplet Loss for Person Re-Identification, 2017, https://arxiv.org/abs/1703.07737
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from lightly_siamese_ext._validation import check_distance_matrix, check_float, check_labels

__all__ = [
    "CHUNK_ELEMENTS",
    "MINING",
    "MINING_ALIASES",
    "mine_batch_all",
    "mine_batch_hard",
    "mine_semi_hard",
    "pairs_from_triplets",
    "triplets_from_pairs",
]

MINING = ("batch_all", "batch_hard", "semi_hard")
#: Other spellings accepted for :data:`MINING`: pytorch-metric-learning's ``TripletMarginMiner`` says "semihard".
MINING_ALIASES = {"semihard": "semi_hard"}

#: The chunked loops handle at most max(CHUNK_ELEMENTS, B^2 / 2) (positive pair, candidate) elements at once:
#: small batches in small chunks, large ones in at most 2 (K - 1) chunks (K samples per class), since every chunk
#: costs a handful of passes, and a B^2 / 2 buffer is of the size of the B x B matrices around it.
CHUNK_ELEMENTS = 1 << 21

Triplets = Tuple[Tensor, Tensor, Tensor]
# (anchor (P,), positive (P,), negative mask of those rows (P, B)) -> selected negatives (P, B)
_Selector = Callable[[Tensor, Tensor, Tensor], Tensor]


def mine_batch_hard(distances: Tensor, labels: Tensor) -> Triplets:
    """Hardest positive and hardest negative of every anchor that has both.

    Args:
        distances: (B, B) finite distances, or any matrix that increases with the distance within each row.
        labels: (B,) integer class ids.

    Returns:
        ``(anchor, positive, negative)``, each (T,) with T <= B.
    """
    labels = check_distance_matrix(distances, labels)
    with torch.no_grad():
        bound = float(distances.abs().max()) if distances.numel() else 1.0
        if not math.isfinite(bound):  # an inf would sink every shifted row: no triplet at all, silently
            raise ValueError("distances must be finite for batch_hard mining")
        different = label_indicator(labels, distances.dtype, equal=False)
        shifted = torch.add(distances, different, alpha=-(4.0 * bound + 1.0), out=different)
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
    labels = check_distance_matrix(distances, labels)
    margin = check_float(margin, "margin", 0.0)
    if margin == 0:
        raise ValueError("margin must be > 0 for semi_hard mining (the window is empty at 0), got 0")
    if not bool(torch.isfinite(distances).all()):  # NaN fails every window test: no triplet at all, silently
        raise ValueError("distances must be finite for semi_hard mining")
    with torch.no_grad():
        return _expand_positive_pairs(
            labels,
            lambda a, p, negatives: negatives & semi_hard_window(distances[a], distances[a, p].unsqueeze(1), margin),
        )


def mine_batch_all(labels: Tensor) -> Triplets:
    """All valid triplets of the batch.

    Args:
        labels: (B,) integer class ids.

    Returns:
        ``(anchor, positive, negative)``, each (T,) with T = sum over anchors of #positives * #negatives.
    """
    labels = check_labels(labels)
    with torch.no_grad():
        return _expand_positive_pairs(labels, lambda a, p, rows: rows)


def triplets_from_pairs(anchor1: Tensor, positive: Tensor, anchor2: Tensor, negative: Tensor) -> Triplets:
    """Every triplet whose positive pair ``(anchor1[i], positive[i])`` and negative pair ``(anchor2[j],
    negative[j])`` share their anchor, from a pair miner's output: pytorch-metric-learning's conversion
    (``loss_and_miner_utils.convert_to_triplets``), in its order. Memory O(P N) for P positive and N negative pairs;
    sizing the output is one host sync on CUDA.
    """
    positive_pair, negative_pair = torch.where(anchor1.unsqueeze(1) == anchor2)
    return anchor1[positive_pair], positive[positive_pair], negative[negative_pair]


def pairs_from_triplets(anchor: Tensor, positive: Tensor, negative: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The positive and negative pairs ``(anchor, positive, anchor, negative)`` of triplets, as
    pytorch-metric-learning's ``convert_to_pairs`` makes them."""
    return anchor, positive, anchor, negative


def label_indicator(labels: Tensor, dtype: torch.dtype, equal: bool) -> Tensor:
    """(B, B) 0/1 floats: ``labels[i] == labels[j]`` (``equal=True``) or ``!=``. The comparison of compact float
    class codes writes the floats itself: no bool mask, no conversion, several times faster on the CPU."""
    codes = compact_labels(labels).to(torch.promote_types(dtype, torch.float32))  # exact below 2^24 classes
    out = codes.new_empty(len(codes), len(codes))
    return (torch.eq if equal else torch.ne)(codes.unsqueeze(1), codes.unsqueeze(0), out=out)


def hardest_pairs(shifted: Tensor, bound: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Per anchor: index of the farthest positive, of the closest negative, and whether both exist; each (B,).

    ``shifted`` is ``scores - (4 bound + 1) * label_indicator(labels, equal=False)`` for (B, B) ``scores`` that
    increase with the distance within each row and are bounded by ``bound`` in absolute value; it is
    **overwritten**. With the negatives pushed below every positive and the diagonal parked between the two, one
    matrix serves both searches: a row's maximum is its farthest positive (or the diagonal if it has none), its
    minimum its closest negative (or the diagonal if it has none).
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


def class_sizes(labels: Tensor) -> Tensor:
    """(B,) int64: how many samples of the batch share each sample's label (itself included). O(B log B)."""
    sorted_labels = labels.sort().values
    return torch.searchsorted(sorted_labels, labels, right=True) - torch.searchsorted(sorted_labels, labels)


def positive_pairs(labels: Tensor) -> Tuple[Tensor, Tensor]:
    """All ordered pairs ``(anchor, positive)`` with equal labels and ``anchor != positive``, each (P,), grouped
    by class. O(P + B log B) from the sorted labels, without a B x B mask; sizing the output is one host sync on
    CUDA."""
    order = labels.argsort(stable=True)
    sorted_labels = labels[order]
    first = torch.searchsorted(sorted_labels, sorted_labels)  # start of each sorted sample's class run
    partners = torch.searchsorted(sorted_labels, sorted_labels, right=True) - first - 1
    anchor = torch.repeat_interleave(torch.arange(len(labels), device=labels.device), partners)
    run_starts = torch.cumsum(partners, 0) - partners
    partner = first[anchor] + torch.arange(len(anchor), device=labels.device) - run_starts[anchor]
    partner += partner >= anchor  # skip the anchor itself
    return order[anchor], order[partner]


def pairs_per_chunk(row_length: int) -> int:
    """How many positive pairs a chunk of (pair, candidate) rows of length ``row_length`` (= B) holds."""
    return max(1, CHUNK_ELEMENTS // max(row_length, 1), row_length // 2)


def semi_hard_window(
    to_negatives: Tensor, to_positive: Tensor, margin: float, out: Optional[Tuple[Tensor, Tensor]] = None
) -> Tensor:
    """(P, B) mask of ``d(a, p) < d(a, n) < d(a, p) + margin`` for distances ``to_negatives`` (P, B) and
    ``to_positive`` (P, 1): bool, or 0/1 floats written straight into the two (P, B) buffers ``out``."""
    upper = to_positive + margin
    if out is None:
        return (to_negatives > to_positive) & (to_negatives < upper)
    window = torch.gt(to_negatives, to_positive, out=out[0])
    return window.mul_(torch.lt(to_negatives, upper, out=out[1]))


def _expand_positive_pairs(labels: Tensor, select: _Selector) -> Triplets:
    anchor, positive = positive_pairs(labels)
    key = anchor * len(labels) + positive
    order = key.argsort()
    anchor, positive = anchor[order], positive[order]
    step = pairs_per_chunk(len(labels))
    found = []
    for start in range(0, len(anchor), step):
        a, p = anchor[start : start + step], positive[start : start + step]
        row, negative = select(a, p, labels[a].unsqueeze(1) != labels.unsqueeze(0)).nonzero(as_tuple=True)
        found.append((a[row], p[row], negative))
    if not found:
        empty = labels.new_zeros(0, dtype=torch.long)
        return empty, empty, empty
    a, p, n = (torch.cat(parts) for parts in zip(*found))
    return a, p, n
