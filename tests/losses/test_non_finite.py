"""NaN and inf never turn into a number: distances and both losses, in every mining mode, propagate them (a loss is
a hot path: no host sync to raise), and the mining functions refuse non-finite distances."""

import pytest
import torch

from lightly_siamese_ext import ContrastiveLoss, TripletLoss
from lightly_siamese_ext.distances import DISTANCES, paired_distances, pairwise_distances, safe_sqrt
from lightly_siamese_ext.losses import MINING, mine_batch_hard, mine_semi_hard
from lightly_siamese_ext.losses.distance_matrix import DistanceMatrix

LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def _batch(bad: float) -> torch.Tensor:
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    x[2, 1] = bad
    return x


def test_safe_sqrt_keeps_nan_and_inf() -> None:
    x = torch.tensor([4.0, 0.0, -1.0, float("nan"), float("inf")], requires_grad=True)
    y = safe_sqrt(x)
    assert y[:3].tolist() == [2.0, 0.0, 0.0] and torch.isnan(y[3]) and y[4] == float("inf")
    y[:3].sum().backward()
    assert x.grad[:3].tolist() == [0.25, 0.0, 0.0]  # still no NaN gradient at or below zero


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("distance", DISTANCES)
def test_distances_of_a_non_finite_embedding_are_not_finite(bad: float, distance: str) -> None:
    x = _batch(bad)
    # The pairs with the bad row (a shared centring may spread it further: never a number that looks right).
    assert not torch.isfinite(pairwise_distances(x, distance=distance)[2, [0, 1, 3, 4, 5]]).any()
    assert not torch.isfinite(DistanceMatrix(x, distance).values[2, [0, 1, 3, 4, 5]]).any()
    assert not torch.isfinite(paired_distances(x, x.flip(0), distance)[[2, 3]]).any()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("mining", MINING)
def test_triplet_loss_of_a_non_finite_batch_is_not_finite(bad: float, distance: str, mining: str) -> None:
    for soft_margin in (False, True):
        loss = TripletLoss(mining=mining, distance=distance, soft_margin=soft_margin)(_batch(bad), LABELS)
        assert not torch.isfinite(loss), (mining, distance, soft_margin)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_contrastive_loss_of_a_non_finite_batch_is_not_finite(bad: float, distance: str) -> None:
    x = _batch(bad)
    assert not torch.isfinite(ContrastiveLoss(distance=distance)(x, LABELS))
    assert not torch.isfinite(ContrastiveLoss(distance=distance)(x, x.flip(0), torch.ones(6)))


def test_mining_refuses_non_finite_distances() -> None:
    distances = torch.rand(6, 6)
    distances[0, 1] = float("nan")
    for mine in (lambda d: mine_semi_hard(d, LABELS, 0.2), lambda d: mine_batch_hard(d, LABELS)):
        with pytest.raises(ValueError, match="distances must be finite"):
            mine(distances)
