"""Siamese-network evaluation (Koch, Zemel & Salakhutdinov 2015): pair verification ROC-AUC and N-way one-shot
classification on held-out classes."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_siamese_ext._validation import (
    check_binary_targets,
    check_choice,
    check_embeddings,
    check_finite,
    check_labels,
    check_non_empty,
    check_positive_int,
    check_vector,
)
from lightly_siamese_ext.evaluation._common import DISTANCES

__all__ = ["n_way_one_shot_accuracy", "pair_verification_auc", "sample_one_shot_trials"]


@torch.no_grad()
def pair_verification_auc(distances: Tensor, same: Tensor) -> float:
    """ROC-AUC of telling same-class pairs from different-class pairs by their distance (smaller = same).

    The Mann-Whitney rank statistic: the probability that a random same pair is closer than a random different
    pair, ties counting one half (mid-ranks), which is what ``sklearn.metrics.roc_auc_score(same, -distances)``
    computes. One sort of the P distances, in float64.

    Args:
        distances: Distance (P,) of each pair, e.g. :meth:`lightly_siamese_ext.SiameseNetwork.distance`.
        same: (P,) 1 (True) where the pair shows the same class, else 0 (False): bool, integer or floating, as
            :class:`~lightly_siamese_ext.ContrastiveLoss`'s ``y``; both kinds must occur.
    """
    distances = check_finite(check_non_empty(check_vector(distances, "distances"), "distances"), "distances")
    same = check_binary_targets(same, distances.shape[0], None, "same").to(distances.device)
    num_same_pairs = int(same.sum())
    num_different = distances.shape[0] - num_same_pairs
    if num_same_pairs == 0 or num_different == 0:
        raise ValueError(
            f"same must mark both kinds of pairs, got {num_same_pairs} same and {num_different} different pairs"
        )
    scores, order = torch.sort(-distances.double())
    _, group, group_sizes = torch.unique_consecutive(scores, return_inverse=True, return_counts=True)
    group_sizes = group_sizes.double()
    mid_ranks = group_sizes.cumsum(0) - (group_sizes - 1) / 2  # 1-based rank of each group of tied scores
    rank_sum = (mid_ranks[group] * same[order]).sum()
    auc = (rank_sum - num_same_pairs * (num_same_pairs + 1) / 2) / (num_same_pairs * num_different)
    return float(auc)


def sample_one_shot_trials(
    labels: Tensor, n_way: int, trials: int, generator: Optional[torch.Generator] = None
) -> Tuple[Tensor, Tensor]:
    """Draws N-way one-shot trials: ``(query_index (trials,), support_index (trials, n_way))`` into ``labels``.

    Each trial takes ``n_way`` distinct classes among those with at least 2 samples, one sample of each as the
    support set, and as the query another sample of the first support's class: column 0 of ``support_index`` is
    the right answer. Vectorised over trials; all randomness comes from ``generator`` (a CPU generator; a fresh
    one seeded with 0 when ``None``). Indices are int64 on the CPU.
    """
    labels = check_labels(labels, "labels")
    check_positive_int(n_way, "n_way")
    check_positive_int(trials, "trials")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    labels = labels.detach().to("cpu", torch.long)
    _, class_sizes = torch.unique(labels, return_counts=True)
    by_class = torch.argsort(labels, stable=True)  # sample indices grouped by class, classes in unique()'s order
    class_starts = class_sizes.cumsum(0) - class_sizes
    eligible = (class_sizes >= 2).nonzero().squeeze(1)
    if n_way > eligible.shape[0]:
        raise ValueError(
            f"n_way must be at most the number of classes with >= 2 samples ({eligible.shape[0]}), got {n_way}"
        )
    classes = eligible[torch.rand(trials, eligible.shape[0], generator=generator).topk(n_way, dim=1).indices]
    uniform = torch.rand(trials, n_way + 1, generator=generator, dtype=torch.float64)
    sizes = class_sizes[classes]
    support_pick = (uniform[:, :n_way] * sizes).long()
    # The query: one of the other (size - 1) samples of the answer's class.
    query_pick = (uniform[:, n_way] * (sizes[:, 0] - 1)).long()
    query_pick += query_pick >= support_pick[:, 0]
    support_index = by_class[class_starts[classes] + support_pick]
    query_index = by_class[class_starts[classes[:, 0]] + query_pick]
    return query_index, support_index


@torch.no_grad()
def n_way_one_shot_accuracy(
    embeddings: Tensor,
    labels: Tensor,
    n_way: int = 5,
    trials: int = 1000,
    generator: Optional[torch.Generator] = None,
    seed: int = 0,
    distance: str = "euclidean",
) -> float:
    """N-way one-shot classification accuracy (Koch et al. 2015, Sec. 4.3) of embeddings (N, D) with labels (N,).

    Each trial (see :func:`sample_one_shot_trials`) is right when the query's nearest support is the one of its own
    class. A tie between the right support and k - 1 others at the smallest distance earns 1/k, the expected
    score of breaking the tie at random, so collapsed embeddings score 1 / n_way.

    Args:
        embeddings: Embeddings (N, D) of held-out samples.
        labels: Integer labels (N,).
        n_way: Classes per trial; at most the number of classes with >= 2 samples.
        trials: Number of trials.
        generator: Source of randomness; a fresh one seeded with ``seed`` when ``None``.
        seed: Seed used when no generator is given.
        distance: ``"euclidean"`` or ``"cosine"``.
    """
    embeddings = check_finite(check_non_empty(check_embeddings(embeddings, "embeddings"), "embeddings"), "embeddings")
    labels = check_labels(labels, "labels", embeddings.shape[0], "row of embeddings")
    distance = check_choice(distance, "distance", DISTANCES)
    generator = torch.Generator().manual_seed(seed) if generator is None else generator
    query_index, support_index = sample_one_shot_trials(labels, n_way, trials, generator)
    query_index, support_index = query_index.to(embeddings.device), support_index.to(embeddings.device)
    embeddings = embeddings.float()
    if distance == "cosine":
        embeddings = F.normalize(embeddings, dim=1)
    credit = embeddings.new_zeros((), dtype=torch.float64)
    # Chunks of trials keep the (chunk, n_way, D) support block near 16 M numbers.
    chunk = max(1, (1 << 24) // (n_way * embeddings.shape[1]))
    for start in range(0, trials, chunk):
        query = embeddings[query_index[start : start + chunk]].unsqueeze(1)
        support = embeddings[support_index[start : start + chunk]]
        if distance == "cosine":
            dissimilarity = -(query * support).sum(dim=2)
        else:
            dissimilarity = (query - support).square().sum(dim=2)  # squared: same order, exact at 0
        nearest = dissimilarity == dissimilarity.amin(dim=1, keepdim=True)
        credit += (nearest[:, 0] / nearest.sum(dim=1, dtype=torch.float64)).sum()
    return float(credit / trials)

