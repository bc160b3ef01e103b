"""Triplet loss with in-batch mining (FaceNet; Hermans et al.)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_siamese_ext._validation import (
    check_choice,
    check_embeddings,
    check_float,
    check_labels,
    check_no_positional_indices_tuple,
    check_same_shape,
)
from lightly_siamese_ext.distances import DISTANCES, paired_distances, pairwise_distances
from lightly_siamese_ext.losses._common import (
    REDUCTIONS,
    indexed_call_inputs,
    full_precision,
    gather_batch,
    reduce_losses,
)
from lightly_siamese_ext.losses.distance_matrix import (
    ORDERING_SCORE_BOUND,
    DistanceMatrix,
    add_ordering_scores_,
    distances_to_rows,
)
from lightly_siamese_ext.losses.mining import (
    MINING,
    MINING_ALIASES,
    class_sizes,
    hardest_pairs,
    label_indicator,
    pairs_per_chunk,
    positive_pairs,
    semi_hard_window,
    triplets_from_pairs,
)

MEAN_OVER = ("valid", "active")


class TripletLoss(nn.Module):
    """Triplet loss ``max(d(a, p) - d(a, n) + margin, 0)`` (Schroff et al., 2015), or with ``soft_margin=True``
    ``softplus(d(a, p) - d(a, n))`` (Hermans et al., 2017), for explicit triplets or mined from a labelled batch.

    - ``loss(anchor, positive, negative)``: explicit triplets, each (B, D).
    - ``loss(embeddings, labels)``: embeddings (B, D) and integer labels (B,); the triplets are mined in the batch
      (see :mod:`lightly_siamese_ext.losses.mining` for the definitions):

      - ``"batch_hard"``: per anchor, its farthest positive and closest negative (anchors without a positive or a
        negative are skipped). Time O(B^2 D), memory O(B^2); the backward pass touches only the 2B chosen pairs.
      - ``"batch_all"``: every valid triplet.
      - ``"semi_hard"``: every triplet with ``d(a, p) < d(a, n) < d(a, p) + margin`` (the FaceNet definition;
        pytorch-metric-learning's ``TripletMarginMiner("semihard")`` selects the same set, up to ties at the upper
        edge, which cost 0). Needs ``margin > 0``.

      For ``batch_all`` and ``semi_hard`` no (B, B, B) tensor is formed: the P positive pairs (P = B (K - 1) with
      K samples per class) are processed in chunks of ``max(CHUNK_ELEMENTS, B^2 / 2)`` (pair, negative) elements
      (:data:`~lightly_siamese_ext.losses.mining.CHUNK_ELEMENTS`: 2^21, 8 MiB in float32). Time is
      O(P B + B^2 D); memory is bounded by about four B x B matrices plus two chunk buffers (four for semi_hard),
      i.e. at most about 6 B^2 floats whatever the number of triplets. Listing the positive pairs is one host
      sync on CUDA. The backward pass is two (B, B) x (B, D + 1) matrix products.
    - ``loss(embeddings, labels, indices_tuple=miner(embeddings, labels))``: the triplets a pytorch-metric-learning
      miner chose, ``(anchor, positive, negative)`` index tensors (T,), or its pairs ``(anchor1, positive, anchor2,
      negative)``, combined into triplets as PML does; ``mining`` is not used and ``labels`` may be None. The value
      equals PML's ``TripletMarginLoss`` on the same tuples with ``distance=LpDistance(normalize_embeddings=False)``
      (``"euclidean"``; ``power=2``: ``"squared_euclidean"``; ``CosineSimilarity()``: ``"cosine"``) and
      ``reducer=MeanReducer()`` (``mean_over="valid"``) or PML's default ``AvgNonZeroReducer()``
      (``mean_over="active"``). Checking that the indices lie in the batch is one host sync on CUDA.

    Reduction: ``"mean"`` divides the summed loss by the number of mined triplets (``mean_over="valid"``: all of
    them, i.e. all valid anchors for batch_hard, all valid triplets for batch_all) or by those with a positive loss
    (``mean_over="active"``: Hermans et al.'s "BA != 0", which works better for batch_all, and what
    pytorch-metric-learning's default ``AvgNonZeroReducer`` does). With the soft margin every term is positive;
    semi-hard triplets are active by definition. ``"sum"`` sums; ``"none"`` returns per-triplet losses (B,) for
    explicit or given triplets and per-anchor sums (B,) for the labelled form (0 for anchors without triplets), so that
    ``"sum"`` equals the sum of ``"none"``. A batch without any triplet gives an exact 0 that is still connected
    to the graph (``backward()`` works and gives zero gradients).

    Computation is in float32 (float64 inputs stay float64), also under ``torch.autocast``.

    Args:
        margin: Margin of the hinge (>= 0); FaceNet uses 0.2 on L2-normalised embeddings. With ``soft_margin`` it
            only sets the semi-hard window.
        mining: ``"batch_hard"``, ``"batch_all"`` or ``"semi_hard"`` (also spelt ``"semihard"``, as in PML), for the
            labelled form.
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"`` (1 - cosine similarity).
        soft_margin: Use ``softplus(d(a, p) - d(a, n))`` instead of the hinge.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        mean_over: ``"valid"`` or ``"active"``: what ``"mean"`` divides by (see above).
        gather_distributed: Gather embeddings and labels from all ranks (``lightly.utils.dist.gather``, which keeps
            gradients) and compute the loss of the global batch on every rank. Ranks must hold equal batch sizes.

    Examples:
        >>> loss_fn = TripletLoss(margin=0.2, mining="batch_hard")
        >>> loss = loss_fn(embeddings, labels)           # embeddings (B, D), labels (B,)
        >>> loss = loss_fn(anchor, positive, negative)   # each (B, D)
        >>> loss = loss_fn(embeddings, labels, indices_tuple=miner(embeddings, labels))   # a PML miner's triplets

    - Schroff et al., FaceNet, 2015, https://arxiv.org/abs/1503.03832
    - Hermans et al., In Defense of the Triplet Loss for Person Re-Identification, 2017,
      https://arxiv.org/abs/1703.07737
    """

    def __init__(
        self,
        margin: float = 0.2,
        mining: str = "batch_hard",
        distance: str = "euclidean",
        soft_margin: bool = False,
        reduction: str = "mean",
        mean_over: str = "valid",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.margin = check_float(margin, "margin", 0.0)
        self.mining = check_choice(mining, "mining", MINING, MINING_ALIASES)
        self.distance = check_choice(distance, "distance", DISTANCES)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)
        self.mean_over = check_choice(mean_over, "mean_over", MEAN_OVER)
        if self.mining == "semi_hard" and self.margin == 0:
            raise ValueError("margin must be > 0 with mining='semi_hard' (it is the width of the window), got 0")
        self.soft_margin = bool(soft_margin)
        self.gather_distributed = bool(gather_distributed)

    @overload
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor: ...

    @overload
    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor: ...

    @overload
    def forward(
        self, embeddings: Tensor, labels: Optional[Tensor] = None, *, indices_tuple: Sequence[Tensor]
    ) -> Tensor: ...

    def forward(self, *tensors: Tensor, indices_tuple: Optional[Sequence[Tensor]] = None) -> Tensor:
        """``(embeddings (B, D), labels (B,))``, ``(anchor, positive, negative)``, each (B, D), or ``(embeddings,
        labels, indices_tuple=...)`` -> the loss: a scalar, or with ``reduction="none"`` (B,) (per anchor) or (T,)
        (per given triplet)."""
        check_no_positional_indices_tuple(tensors, "TripletLoss", "(anchor, positive, negative) embeddings")
        if indices_tuple is not None:
            return self._given(tensors, indices_tuple)
        if len(tensors) == 2:
            embeddings = check_embeddings(tensors[0], "embeddings")
            labels = check_labels(tensors[1], length=len(embeddings), device=embeddings.device)
            embeddings, labels = gather_batch((embeddings, labels), self.gather_distributed)
            with full_precision(embeddings) as dtype:
                losses, count = self._mined(embeddings.to(dtype), labels)
                return reduce_losses(losses, count, self.reduction)
        if len(tensors) == 3:
            names = ("anchor", "positive", "negative")
            check_same_shape([check_embeddings(t, name) for t, name in zip(tensors, names)], names)
            anchor, positive, negative = gather_batch(tensors, self.gather_distributed)
            with full_precision(anchor) as dtype:
                anchor, positive, negative = anchor.to(dtype), positive.to(dtype), negative.to(dtype)
                losses = self._terms(
                    paired_distances(anchor, positive, self.distance)
                    - paired_distances(anchor, negative, self.distance)
                )
                count = (losses > 0).sum() if self.mean_over == "active" else losses.shape[0]
                return reduce_losses(losses, count, self.reduction)
        raise TypeError(
            "TripletLoss takes (embeddings, labels) or (anchor, positive, negative), "
            f"got {len(tensors)} tensor arguments"
        )

    def _given(self, tensors: Tuple[Tensor, ...], indices_tuple: Sequence[Tensor]) -> Tensor:
        """The loss of the triplets (or pairs) ``indices_tuple`` index in the batch ``tensors[0]``."""
        embeddings, indices = indexed_call_inputs("TripletLoss", tensors, indices_tuple, self.gather_distributed)
        anchor, positive, negative = indices if len(indices) == 3 else triplets_from_pairs(*indices)
        with full_precision(embeddings) as dtype:
            # One (B, B) matrix, as PML computes it: O(B^2 + T) memory for T triplets, not O(T D).
            distances = pairwise_distances(embeddings.to(dtype), distance=self.distance)
            losses = self._terms(distances[anchor, positive] - distances[anchor, negative])
            count = (losses > 0).sum() if self.mean_over == "active" else losses.shape[0]
            return reduce_losses(losses, count, self.reduction)

    def _terms(self, difference: Tensor) -> Tensor:
        """Loss of triplets with ``d(a, p) - d(a, n) = difference``."""
        if self.soft_margin:
            return F.softplus(difference)
        return F.relu(difference + self.margin)

    def _mined(self, embeddings: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-anchor summed losses (B,) and the number of triplets the mean divides by."""
        if embeddings.shape[0] == 0:
            return embeddings.sum(dim=1) * 0.0, torch.zeros((), dtype=torch.long, device=embeddings.device)
        if self.mining == "batch_hard":
            return self._batch_hard(embeddings, labels)
        matrix = DistanceMatrix(embeddings, self.distance)
        with torch.no_grad():
            rows, weights, count = self._sum_over_positive_pairs(matrix.values, labels)
        return matrix.with_gradient(rows, weights), count

    def _batch_hard(self, embeddings: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor]:
        # Mining without autograd in one B x B buffer: the negatives pushed down, then the ordering scores added.
        shifted = label_indicator(labels, embeddings.dtype, equal=False)
        add_ordering_scores_(shifted, embeddings, self.distance, scale=-(4.0 * ORDERING_SCORE_BOUND + 1.0))
        positive, negative, valid = hardest_pairs(shifted, ORDERING_SCORE_BOUND)
        # Only the 2B chosen pairs are differentiated: O(B D) work in the backward pass.
        to_chosen = distances_to_rows(embeddings, torch.stack((positive, negative)), self.distance)
        losses = self._terms(to_chosen[0] - to_chosen[1])
        # A NaN or inf embedding fails every comparison of the search and would leave no valid anchor: an exact 0
        # that looks like a converged batch. NaN it stays (no host sync).
        diverged = torch.where(torch.isfinite(embeddings.detach()).all(), 0.0, float("nan"))
        losses = torch.where(valid, losses, 0.0) + diverged
        count = (losses > 0) if self.mean_over == "active" else valid
        return losses, count.sum()

    def _sum_over_positive_pairs(self, distances: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Per-anchor loss sums (B,) over the selected triplets, their derivatives (B, B) with respect to the
        distances, and the number of triplets that count for the mean; positive pairs are processed in chunks.

        Rows are read from a copy of the distances that is huge (``_FAR``) where the labels agree, so every
        non-negative drops out of the float arithmetic by itself (hinge, softplus, sigmoid and window all give 0
        there): no bool masks in the loop, whose conversions and reductions are slow on the CPU, and the chunk
        buffers are reused."""
        batch_size = distances.shape[0]
        rows = torch.zeros_like(distances[0])
        weights = torch.zeros_like(distances)
        count = torch.zeros((), dtype=distances.dtype, device=distances.device)
        same = label_indicator(labels, distances.dtype, equal=True)
        candidates = torch.add(distances, same, alpha=_FAR, out=same)
        anchors, positives = positive_pairs(labels)
        step = max(1, min(pairs_per_chunk(batch_size), len(anchors)))
        buffers = distances.new_empty(3 if self.mining == "semi_hard" else 1, step, batch_size)
        slopes_buffer = distances.new_empty(step, batch_size)
        for start in range(0, len(anchors), step):
            anchor, positive = anchors[start : start + step], positives[start : start + step]
            size = len(anchor)
            to_negatives = torch.index_select(candidates, 0, anchor, out=buffers[0, :size])
            to_positive = distances[anchor, positive].unsqueeze(1)
            window = None
            if self.mining == "semi_hard":
                window_buffers = (buffers[1, :size], buffers[2, :size])
                window = semi_hard_window(to_negatives, to_positive, self.margin, out=window_buffers)
            if self.soft_margin:
                difference = to_negatives.neg_().add_(to_positive)
                losses, slopes = F.softplus(difference), torch.sigmoid(difference, out=slopes_buffer[:size])
                if window is not None:
                    losses.mul_(window)
                    slopes.mul_(window)
                    count += window.sum()
            else:
                upper = to_positive + self.margin
                slopes = torch.lt(to_negatives, upper, out=slopes_buffer[:size])  # the active triplets
                if window is not None:
                    slopes.mul_(window)
                losses = to_negatives.neg_().add_(upper).clamp_(min=0.0).mul_(slopes)
            slope_sums = slopes.sum(dim=1)
            rows.index_add_(0, anchor, losses.sum(dim=1))
            weights.index_put_((anchor, positive), slope_sums, accumulate=True)
            weights.index_add_(0, anchor, slopes, alpha=-1.0)
            if not self.soft_margin:
                count += slope_sums.sum()
        if self.mining == "batch_all" and (self.soft_margin or self.mean_over == "valid"):
            sizes = class_sizes(labels)
            count = ((sizes - 1) * (batch_size - sizes)).sum()  # all valid triplets
        return rows, weights, count


# Stands in for the distance to a non-negative: far beyond any margin, yet finite (inf - inf would be NaN).
_FAR = 1e30
