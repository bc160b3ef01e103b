"""The (B, B) distance matrix of a batch for losses over many pairs: computed once without autograd, yet passing
exact gradients to the embeddings; and the fused distances of each row to a few chosen partners."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from lightly_siamese_ext._validation import check_choice, check_embeddings
from lightly_siamese_ext.distances import DISTANCES, NORM_EPS

__all__ = ["ORDERING_SCORE_BOUND", "DistanceMatrix", "add_ordering_scores_", "distances_to_rows"]


def distances_to_rows(x: Tensor, partners: Tensor, distance: str) -> Tensor:
    """Distances (K, B) from each row ``x[i]`` of ``x`` (B, D) to the rows ``x[partners[k, i]]``, exact (from the
    differences) and differentiable with respect to ``x``.

    A fused autograd function: the backward pass is one scaled copy of the differences and one ``index_add_``,
    O(K B D), instead of autograd's chain through the gather, the subtraction and the norm. Cosine distances are
    half the squared distances of the unit vectors.
    """
    if distance == "cosine":
        return 0.5 * _DistancesToRows.apply(F.normalize(x, dim=1, eps=NORM_EPS), partners, True)
    return _DistancesToRows.apply(x, partners, distance == "squared_euclidean")


class _DistancesToRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, partners: Tensor, squared: bool) -> Tensor:  # type: ignore[override]
        difference = x.unsqueeze(0) - x.index_select(0, partners.flatten()).view(*partners.shape, x.shape[1])
        distances = difference.square().sum(dim=-1) if squared else torch.linalg.vector_norm(difference, dim=-1)
        ctx.save_for_backward(difference, distances, partners)
        ctx.squared = squared
        return distances

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_distances: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        difference, distances, partners = ctx.saved_tensors
        if ctx.squared:
            scale = 2.0 * grad_distances
        else:
            # d |x_i - x_j| / d x_i = (x_i - x_j) / |x_i - x_j|, and 0 at 0.
            scale = torch.where(distances > 0, grad_distances / distances, 0.0)
        scaled = difference * scale.unsqueeze(-1)
        grad = scaled.sum(dim=0)
        grad.index_add_(0, partners.flatten(), scaled.view(-1, scaled.shape[-1]), alpha=-1.0)
        return grad, None, None


#: Bound on the absolute values that :func:`add_ordering_scores_` adds.
ORDERING_SCORE_BOUND = 3.0


def add_ordering_scores_(out: Tensor, x: Tensor, distance: str, scale: float = 1.0) -> Tensor:
    """Sets ``out`` (B, B) to ``scale * out`` plus, without autograd, a matrix that orders every row of ``x``'s
    (B, D) distance matrix like the distances do: enough to find the nearest or the farthest, for one matrix
    product accumulated into ``out`` (no further B x B buffer). For euclidean distances it is
    ``|x_j|^2 - 2 x_i.x_j`` on embeddings centred and scaled to a largest norm of 1, for cosine ``-cos``: both
    bounded by :data:`ORDERING_SCORE_BOUND` in absolute value without reading the data."""
    with torch.no_grad():
        x = x.detach()
        if distance == "cosine":
            unit = F.normalize(x, dim=1, eps=NORM_EPS)
            return out.addmm_(unit, unit.T, beta=scale, alpha=-1.0)
        centred = x - x.mean(dim=0)
        squared_norms = centred.pow(2).sum(dim=1)
        if x.shape[0]:
            norm_scale = squared_norms.max().clamp(min=torch.finfo(x.dtype).tiny)
            centred /= norm_scale.sqrt()
            squared_norms /= norm_scale
        torch.add(squared_norms.unsqueeze(0), out, alpha=scale, out=out)
        return out.addmm_(centred, centred.T, alpha=-2.0)


class DistanceMatrix:
    """The (B, B) distance matrix of a batch, computed once without autograd, for losses over many pairs.

    A loss reads :attr:`values` (no graph) to mine and to evaluate its per-anchor terms, then calls
    :meth:`with_gradient` with those terms and their derivatives with respect to the distances. The backward pass
    is then one or two (B, B) x (B, D + 1) matrix products: no B x B autograd graph is recorded, no B x B
    elementwise work is left for the backward pass, and nothing of size B x B x D is ever formed.

    Args:
        embeddings: (B, D) floating tensor; may require grad.
        distance: One of :data:`DISTANCES`.
    """

    def __init__(self, embeddings: Tensor, distance: str = "euclidean") -> None:
        check_choice(distance, "distance", DISTANCES)
        check_embeddings(embeddings, "embeddings")
        self.embeddings = embeddings
        self.distance = distance
        with torch.no_grad():
            x = embeddings.detach()
            if distance == "cosine":
                self._norms = x.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
                self._coords = x / self._norms
                self.values = torch.mm(self._coords, self._coords.T).neg_().add_(1.0).clamp_(0.0, 2.0)
            else:
                self._norms = None
                self._coords = x - x.mean(dim=0)
                squared_norms = self._coords.pow(2).sum(dim=1)
                # In place on the outer sum: one B x B buffer, no broadcast copy of a bias.
                self.values = squared_norms.unsqueeze(1) + squared_norms.unsqueeze(0)
                self.values.addmm_(self._coords, self._coords.T, alpha=-2.0).clamp_(min=0.0)
                if distance == "euclidean":
                    self.values.sqrt_()
            self.values.fill_diagonal_(0.0)

    def with_gradient(self, row_losses: Tensor, weights: Tensor, symmetric: bool = False) -> Tensor:
        """Returns ``row_losses`` (B,) attached to the embeddings' graph.

        Args:
            row_losses: (B,) values computed from :attr:`values` without autograd; row ``a`` may depend only on
                row ``a`` of the matrix (true for any per-anchor loss).
            weights: (B, B) derivatives ``d row_losses[a] / d values[a, j]``, treated as constants (the mining
                decisions they encode are piecewise constant in the distances). **Overwritten.**
            symmetric: ``weights`` is symmetric (a loss over unordered pairs): saves a matrix product.
        """
        if not (self.embeddings.requires_grad and torch.is_grad_enabled()):
            return row_losses
        with torch.no_grad():
            # Coefficients K of the embedding-space gradient (see _RowLossesFromDistances.backward).
            if self.distance == "euclidean":
                # d d_ij / d x_i = (x_i - x_j) / d_ij, and 0 at d_ij = 0 (the safe square root's convention):
                # w / 0 gives inf or NaN there, which nan_to_num_ zeroes without a mask.
                coefficients = weights.div_(self.values).nan_to_num_(0.0, 0.0, 0.0)
            elif self.distance == "squared_euclidean":
                coefficients = weights.mul_(2.0)
            else:
                coefficients = weights
        return _RowLossesFromDistances.apply(
            self.embeddings, row_losses, coefficients, self._coords, self._norms, symmetric
        )


class _RowLossesFromDistances(torch.autograd.Function):
    """Identity on precomputed per-anchor losses; backward maps their gradient to the embeddings.

    Euclidean distances: ``d L / d x_i = sum_j S_ij (x_i - x_j)`` with ``S = A + A^T``, ``A = diag(g) K``
    (g: gradient of the rows, K: coefficients, ``w / d`` or ``2 w``), so only ``S [x, 1]`` is needed, and
    ``S [x, 1] = diag(g) K [x, 1] + K^T (diag(g) [x, 1])``: matrix products, no B x B elementwise pass.
    Cosine: the same with the unit vectors ``u``, ``d L / d u_i = -(S u)_i``, then through ``u = x / |x|``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        embeddings: Tensor,
        row_losses: Tensor,
        coefficients: Tensor,
        coords: Tensor,
        norms: Optional[Tensor],
        symmetric: bool,
    ) -> Tensor:
        ctx.save_for_backward(coefficients, coords, norms)
        ctx.symmetric = symmetric
        ctx.embeddings_dtype = embeddings.dtype
        return row_losses.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_rows: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        coefficients, coords, norms = ctx.saved_tensors
        extended = torch.cat((coords, coords.new_ones(coords.shape[0], 1)), dim=1)
        if grad_rows.shape[0] > 1 and grad_rows.stride(0) == 0:
            # The gradient of a sum or mean is one scalar expanded (stride 0): factor it out.
            products = torch.mm(coefficients, extended)
            if ctx.symmetric:
                products.mul_(2.0)
            else:
                products.addmm_(coefficients.T, extended)
            products.mul_(grad_rows[0])
        else:
            scale = grad_rows.unsqueeze(1)
            products = torch.mm(coefficients, extended).mul_(scale).addmm_(coefficients.T, extended * scale)
        product, row_sums = products[:, :-1], products[:, -1:]
        if norms is None:
            grad = row_sums * coords - product
        else:
            grad_unit = product.neg()
            grad = (grad_unit - (grad_unit * coords).sum(dim=1, keepdim=True) * coords) / norms
        return grad.to(ctx.embeddings_dtype), None, None, None, None, None
