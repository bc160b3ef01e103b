"""Metric-learning retrieval metrics on held-out classes: Recall@K and MAP@R."""

from __future__ import annotations

import warnings
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_siamese_ext._validation import (
    check_choice,
    check_embeddings,
    check_finite,
    check_ks,
    check_labels,
    check_non_empty,
    check_positive_int,
    check_same_dim,
)
from lightly_siamese_ext.evaluation._common import DISTANCES

__all__ = ["retrieval_metrics"]


@torch.no_grad()
def retrieval_metrics(
    embeddings: Tensor,
    labels: Tensor,
    ks: Sequence[int] = (1, 4, 16),
    distance: str = "euclidean",
    reference_embeddings: Optional[Tensor] = None,
    reference_labels: Optional[Tensor] = None,
    chunk_size: int = 1024,
) -> Dict[str, float]:
    """Recall@K and MAP@R of every embedding used as a query against the others (or against a reference set).

    - Recall@K, as defined in metric learning (Oh Song et al. 2016): a query is a hit when at least one of its K
      nearest neighbours shares its label. Recall@1 is pytorch-metric-learning's ``precision_at_1``.
    - MAP@R (Musgrave et al. 2020, "A Metric Learning Reality Check"): with R the number of references of the
      query's class, the mean over the query's first R neighbours of precision@i at each same-class neighbour i,
      divided by R.

    Without a reference set, every embedding is a query against all the others, itself excluded (by index, so
    duplicates of a query still count as neighbours). Queries whose class has no reference (R = 0) are left out
    of every metric, as pytorch-metric-learning does, with a warning. Ties in distance are broken arbitrarily.

    Args:
        embeddings: Query embeddings (N, D).
        labels: Integer labels (N,).
        ks: The K of each Recall@K; at most the number of references a query has (N - 1 without a reference set).
        distance: ``"euclidean"`` or ``"cosine"`` (ranks by cosine similarity).
        reference_embeddings: Optional separate reference set (M, D) to search instead of the queries themselves.
        reference_labels: Integer labels (M,) of the reference set.
        chunk_size: Queries ranked at once. Extra memory is about ``chunk_size * (M + 5 * depth)`` numbers, with
            ``depth = max(max(ks), largest R)`` neighbours kept per query (plus a normalised copy of the
            references for cosine, or a float32 one for other dtypes).

    Returns:
        ``{"recall@1": float, "recall@4": float, "recall@16": float, "map@r": float}`` (one recall per K).
    """
    embeddings = check_finite(check_non_empty(check_embeddings(embeddings, "embeddings"), "embeddings"), "embeddings")
    labels = check_labels(labels, "labels", embeddings.shape[0], "row of embeddings")
    distance = check_choice(distance, "distance", DISTANCES)
    check_positive_int(chunk_size, "chunk_size")
    same_source = reference_embeddings is None
    if same_source:
        if reference_labels is not None:
            raise ValueError("reference_labels was given without reference_embeddings")
        references, reference_labels = embeddings, labels
    else:
        name = "reference_embeddings"
        references = check_finite(check_non_empty(check_embeddings(reference_embeddings, name), name), name)
        check_same_dim(embeddings, references, "embeddings and reference_embeddings")
        if reference_labels is None:
            raise ValueError("reference_labels must be given with reference_embeddings")
        reference_labels = check_labels(
            reference_labels, "reference_labels", references.shape[0], "row of reference_embeddings"
        )
    available = references.shape[0] - int(same_source)
    ks = check_ks(ks, "ks", available, "neighbours each query has")

    device = references.device
    labels, reference_labels = labels.to(device=device, dtype=torch.long), reference_labels.to(device, torch.long)
    num_relevant = _class_sizes_in(labels, reference_labels) - int(same_source)  # R of each query
    has_relevant = num_relevant > 0
    num_queries, max_relevant = int(has_relevant.sum()), int(num_relevant.max())  # host syncs, before the loop
    if num_queries == 0:
        raise ValueError("labels: no query has a reference of its own class, so no retrieval metric is defined")
    if num_queries < embeddings.shape[0]:
        warnings.warn(
            f"{embeddings.shape[0] - num_queries} of {embeddings.shape[0]} queries have no reference of their class "
            f"and are left out of the retrieval metrics",
            stacklevel=2,
        )
    depth = max(max(ks), max_relevant)

    references = references.float()
    center = None
    if distance == "cosine":
        references = F.normalize(references, dim=1)
    else:
        # A shift of both sides keeps every distance; centring keeps 2 q.r - |r|^2 from cancelling in float32 when
        # the embeddings sit far from the origin compared with their spread (the losses do the same).
        center = references.mean(dim=0)
        references = references - center
    # Ranking by -|q - r|^2 = 2 q.r - |r|^2 - |q|^2 is ranking by 2 q.r - |r|^2: |q|^2 is the same along a row.
    reference_sq_norms = references.square().sum(dim=1) if distance == "euclidean" else None
    ranks = torch.arange(1, depth + 1, device=device)
    totals = torch.zeros(len(ks) + 1, dtype=torch.float64, device=device)
    for start in range(0, embeddings.shape[0], chunk_size):
        query = embeddings[start : start + chunk_size].to(device=device, dtype=torch.float32)
        rows = torch.arange(query.shape[0], device=device)
        query = F.normalize(query, dim=1) if center is None else query - center
        scores = query @ references.t()
        if reference_sq_norms is not None:
            scores = scores.mul_(2).sub_(reference_sq_norms)
        if same_source:
            scores[rows, start + rows] = float("-inf")
        neighbours = scores.topk(depth, dim=1).indices
        relevant_count = num_relevant[start : start + query.shape[0]]
        matches = reference_labels[neighbours] == labels[start : start + query.shape[0], None]
        hits = [matches[:, :k].any(dim=1) for k in ks]
        # MAP@R: only the first R neighbours of each query count.
        matches &= ranks <= relevant_count[:, None]
        precision_at_i = matches.cumsum(dim=1, dtype=torch.float64) / ranks
        average_precision = (precision_at_i * matches).sum(dim=1) / relevant_count.clamp_min(1)
        per_query = torch.stack([*(hit.double() for hit in hits), average_precision])
        totals += (per_query * has_relevant[start : start + query.shape[0]]).sum(dim=1)
    values = (totals / num_queries).tolist()
    result = {f"recall@{k}": value for k, value in zip(ks, values)}
    result["map@r"] = values[-1]
    return result


def _class_sizes_in(labels: Tensor, reference_labels: Tensor) -> Tensor:
    """For each entry of ``labels`` (N,), how many entries of ``reference_labels`` (M,) equal it."""
    classes, counts = torch.unique(reference_labels, return_counts=True)
    position = torch.searchsorted(classes, labels).clamp_max(classes.shape[0] - 1)
    return torch.where(classes[position] == labels, counts[position], torch.zeros_like(counts[position]))
