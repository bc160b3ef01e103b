"""Contrastive (pairwise margin) loss of Hadsell, Chopra & LeCun (2006)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_siamese_ext._validation import (
    check_binary_targets,
    check_choice,
    check_embeddings,
    check_float,
    check_labels,
    check_no_positional_indices_tuple,
    check_same_shape,
)
from lightly_siamese_ext.distances import paired_distances, pairwise_distances
from lightly_siamese_ext.losses._common import (
    REDUCTIONS,
    indexed_call_inputs,
    full_precision,
    gather_batch,
    reduce_losses,
)
from lightly_siamese_ext.losses.distance_matrix import DistanceMatrix
from lightly_siamese_ext.losses.mining import label_indicator, pairs_from_triplets

CONTRASTIVE_DISTANCES = ("euclidean", "cosine")


class ContrastiveLoss(nn.Module):
    """Contrastive loss ``L = y * d^2 + (1 - y) * max(margin - d, 0)^2`` (Hadsell, Chopra & LeCun, 2006).

    Convention: ``y = 1`` marks a **similar** pair (pulled together), ``y = 0`` a dissimilar one (pushed to at
    least ``margin`` apart); some texts flip it. The paper's factors 1/2 are left out.

    - ``loss(x0, x1, y)``: pairs ``(x0[i], x1[i])``, each (B, D), with targets ``y`` (B,) of 0/1 (bool, integer
      or floating). Reading ``y`` to check it holds only 0 and 1 is one host sync on CUDA.
    - ``loss(embeddings, labels)``: every pair ``i < j`` of the batch (B, D), similar when
      ``labels[i] == labels[j]``, from one B x B distance matrix and masks. The backward pass is two (B, B) x
      (B, D) matrix products; no B x B autograd graph is recorded (except with ``reduction="none"``).
    - ``loss(embeddings, labels, indices_tuple=miner(embeddings, labels))``: the pairs a pytorch-metric-learning
      miner chose, ``(anchor1, positive, anchor2, negative)`` index tensors (positive pairs ``(anchor1[i],
      positive[i])``, negative pairs ``(anchor2[j], negative[j])``), or its triplets ``(anchor, positive,
      negative)``, split into pairs as PML does; ``labels`` may be None. Each pair costs the formula above, so a
      positive pair costs PML's ``ContrastiveLoss`` term with ``distance=LpDistance(normalize_embeddings=False,
      power=2)`` and a negative pair the square of its term with ``LpDistance(normalize_embeddings=False)`` and
      ``neg_margin=margin``. Checking that the indices lie in the batch is one host sync on CUDA.

    Reduction: ``"mean"`` over the pairs (B for the pair form, B (B - 1) / 2 for the labelled form, all given
    pairs for ``indices_tuple``), ``"sum"``, or ``"none"``: (B,) per pair, (B (B - 1) / 2,) per pair ``i < j`` in
    ``torch.triu_indices(B, B, 1)`` order, or the given positive pairs then the given negative pairs.
    Note that pytorch-metric-learning's ``ContrastiveLoss`` differs: linear in ``d`` (``max(d - pos_margin, 0)``,
    ``max(neg_margin - d, 0)``), its embeddings L2-normalised by default, and its positive and negative terms
    averaged separately over the non-zero ones, then added. A batch without pairs gives an exact 0 still connected
    to the graph.

    Computation is in float32 (float64 inputs stay float64), also under ``torch.autocast``.

    Args:
        margin: Distance (>= 0) beyond which dissimilar pairs cost nothing.
        distance: ``"euclidean"`` or ``"cosine"`` (1 - cosine similarity, in [0, 2]).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        gather_distributed: Gather the inputs from all ranks (``lightly.utils.dist.gather``, which keeps gradients)
            and compute the loss of the global batch on every rank. Ranks must hold equal batch sizes.

    Examples:
        >>> loss_fn = ContrastiveLoss(margin=1.0)
        >>> loss = loss_fn(x0, x1, y)              # x0, x1 (B, D); y (B,), 1 = similar
        >>> loss = loss_fn(embeddings, labels)     # all pairs of a labelled batch
        >>> loss = loss_fn(embeddings, labels, indices_tuple=pair_miner(embeddings, labels))   # a PML miner's pairs

    - Hadsell, Chopra & LeCun, Dimensionality Reduction by Learning an Invariant Mapping, CVPR 2006.
    """

    def __init__(
        self,
        margin: float = 1.0,
        distance: str = "euclidean",
        reduction: str = "mean",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.margin = check_float(margin, "margin", 0.0)
        self.distance = check_choice(distance, "distance", CONTRASTIVE_DISTANCES)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)
        self.gather_distributed = bool(gather_distributed)

    @overload
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor: ...

    @overload
    def forward(self, x0: Tensor, x1: Tensor, y: Tensor) -> Tensor: ...

    @overload
    def forward(
        self, embeddings: Tensor, labels: Optional[Tensor] = None, *, indices_tuple: Sequence[Tensor]
    ) -> Tensor: ...

    def forward(self, *tensors: Tensor, indices_tuple: Optional[Sequence[Tensor]] = None) -> Tensor:
        """``(embeddings (B, D), labels (B,))``, ``(x0, x1, y)`` or ``(embeddings, labels, indices_tuple=...)`` -> the
        loss: a scalar, or per pair with ``reduction="none"``."""
        check_no_positional_indices_tuple(tensors, "ContrastiveLoss", "pairs (x0, x1, y)")
        if indices_tuple is not None:
            return self._given(tensors, indices_tuple)
        if len(tensors) == 2:
            embeddings = check_embeddings(tensors[0], "embeddings")
            labels = check_labels(tensors[1], length=len(embeddings), device=embeddings.device)
            embeddings, labels = gather_batch((embeddings, labels), self.gather_distributed)
            with full_precision(embeddings) as dtype:
                return self._all_pairs(embeddings.to(dtype), labels)
        if len(tensors) == 3:
            x0, x1, y = tensors
            check_same_shape((check_embeddings(x0, "x0"), check_embeddings(x1, "x1")), ("x0", "x1"))
            similar = check_binary_targets(y, x0.shape[0], x0.device)
            x0, x1, similar = gather_batch((x0, x1, similar), self.gather_distributed)
            with full_precision(x0) as dtype:
                x0, x1 = x0.to(dtype), x1.to(dtype)
                squared = paired_distances(x0, x1, "squared_euclidean") if self.distance == "euclidean" else None
                distances = paired_distances(x0, x1, self.distance)
                losses = self._terms(distances, similar, squared)
                return reduce_losses(losses, losses.shape[0], self.reduction)
        raise TypeError(
            f"ContrastiveLoss takes (embeddings, labels) or (x0, x1, y), got {len(tensors)} tensor arguments"
        )

    def _given(self, tensors: Tuple[Tensor, ...], indices_tuple: Sequence[Tensor]) -> Tensor:
        """The loss of the pairs (or triplets) ``indices_tuple`` index in the batch ``tensors[0]``."""
        embeddings, indices = indexed_call_inputs("ContrastiveLoss", tensors, indices_tuple, self.gather_distributed)
        anchor1, positive, anchor2, negative = indices if len(indices) == 4 else pairs_from_triplets(*indices)
        with full_precision(embeddings) as dtype:
            distances = pairwise_distances(embeddings.to(dtype), distance=self.distance)
            rows, cols = torch.cat((anchor1, anchor2)), torch.cat((positive, negative))
            similar = torch.arange(len(rows), device=rows.device) < len(anchor1)
            losses = self._terms(distances[rows, cols], similar)
            return reduce_losses(losses, losses.shape[0], self.reduction)

    def _terms(self, distances: Tensor, similar: Tensor, squared: "Tensor | None" = None) -> Tensor:
        """Per-pair losses; ``squared`` is ``distances ** 2`` when computed more accurately elsewhere."""
        squared = distances.pow(2) if squared is None else squared
        return torch.where(similar, squared, F.relu(self.margin - distances).pow(2))

    def _all_pairs(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        batch_size = embeddings.shape[0]
        num_pairs = batch_size * (batch_size - 1) // 2
        if self.reduction == "none":
            rows, cols = torch.triu_indices(batch_size, batch_size, offset=1, device=embeddings.device)
            distances = pairwise_distances(embeddings, distance=self.distance)[rows, cols]
            return self._terms(distances, labels[rows] == labels[cols])
        matrix = DistanceMatrix(embeddings, self.distance)
        with torch.no_grad():
            # Per pair the loss is w^2 and its derivative 2 w, with w = d (similar) or -max(margin - d, 0)
            # (dissimilar), i.e. w = d - different * max(d, margin): float arithmetic, no bool mask (slow on the
            # CPU). Each pair appears twice in the symmetric matrix: halve. The diagonal (d = 0) costs 0.
            different = label_indicator(labels, matrix.values.dtype, equal=False)
            weights = matrix.values.clamp(min=self.margin).mul_(different)
            weights = torch.sub(matrix.values, weights, out=weights)
            losses = torch.linalg.vector_norm(weights, dim=1).square_().mul_(0.5)
        return reduce_losses(matrix.with_gradient(losses, weights, symmetric=True), num_pairs, self.reduction)
