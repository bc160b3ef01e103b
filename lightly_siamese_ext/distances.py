"""Distances between embeddings: paired (B,) and pairwise (B, C). Used by the models, the losses and the
evaluation alike (the losses' fused (B, B) matrix is in :mod:`lightly_siamese_ext.losses.distance_matrix`).

Conventions for every function here:

- ``"euclidean"``: ``||x - y||_2``, with a square root whose gradient at 0 is 0 (not NaN or inf), so identical
  embeddings give finite gradients.
- ``"squared_euclidean"``: ``||x - y||_2^2``.
- ``"cosine"``: ``1 - cos(x, y)``, in [0, 2].

Pairwise matrices use the Gram form ``|x|^2 + |y|^2 - 2 x.y`` on embeddings centred on their mean (distances do not
change under a shift, and centring keeps the cancellation error small when the batch sits far from the origin,
as a collapsing network's does), clamped at 0, with an exact zero diagonal for the distance of a batch to itself.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_siamese_ext._validation import check_choice, check_embeddings, check_same_shape

DISTANCES = ("euclidean", "squared_euclidean", "cosine")

__all__ = ["DISTANCES", "NORM_EPS", "paired_distances", "pairwise_distances", "safe_sqrt"]

NORM_EPS = 1e-12  # as in torch.nn.functional.normalize


def safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(x)`` for ``x > 0`` and 0 for ``x <= 0``, with gradient 0 (not inf or NaN) there; NaN stays NaN (a
    diverged batch must not look like identical embeddings)."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0).sqrt(), x * 0.0)  # x * 0: 0, or NaN for NaN


def paired_distances(x: Tensor, y: Tensor, distance: str = "euclidean") -> Tensor:
    """Row-wise distances (B,) between ``x`` (B, D) and ``y`` (B, D), from the differences (no Gram-form error)."""
    check_choice(distance, "distance", DISTANCES)
    check_same_shape((check_embeddings(x, "x"), check_embeddings(y, "y")), ("x", "y"))
    if distance == "cosine":
        return (1.0 - F.cosine_similarity(x, y, dim=1, eps=1e-8)).clamp(0.0, 2.0)
    difference = x - y
    if distance == "squared_euclidean":
        return difference.square().sum(dim=1)
    return torch.linalg.vector_norm(difference, dim=1)  # its gradient at 0 is 0


def pairwise_distances(x: Tensor, y: Optional[Tensor] = None, distance: str = "euclidean") -> Tensor:
    """Distances (B, C) between every row of ``x`` (B, D) and every row of ``y`` (C, D) (``y=None``: ``x`` itself,
    with an exactly zero diagonal). Differentiable; for a loss over the whole matrix see
    :class:`lightly_siamese_ext.losses.distance_matrix.DistanceMatrix`."""
    check_choice(distance, "distance", DISTANCES)
    check_embeddings(x, "x")
    same = y is None
    if y is not None:
        check_embeddings(y, "y")
        if y.shape[1] != x.shape[1]:
            raise ValueError(f"x and y must have the same feature size, got {x.shape[1]} and {y.shape[1]}")
    if distance == "cosine":
        xn = F.normalize(x, dim=1, eps=NORM_EPS)
        yn = xn if y is None else F.normalize(y, dim=1, eps=NORM_EPS)
        dist = (1.0 - xn @ yn.T).clamp(0.0, 2.0)
    else:
        center = x.detach().mean(dim=0)  # any common shift leaves the distances unchanged
        xc = x - center
        yc = xc if y is None else y - center
        dist = squared_from_gram(xc, yc)
        if distance == "euclidean":
            dist = safe_sqrt(dist)
    if same:
        dist = dist.masked_fill(torch.eye(x.shape[0], dtype=torch.bool, device=x.device), 0.0)
    return dist


def squared_from_gram(xc: Tensor, yc: Tensor) -> Tensor:
    """Squared euclidean distances (B, C) of centred rows by the Gram form, clamped at 0."""
    sq_x = xc.pow(2).sum(dim=1)
    sq_y = sq_x if yc is xc else yc.pow(2).sum(dim=1)
    return torch.addmm(sq_y.unsqueeze(0), xc, yc.T, alpha=-2.0).add_(sq_x.unsqueeze(1)).clamp_(min=0.0)
