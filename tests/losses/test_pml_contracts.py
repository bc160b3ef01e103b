"""The losses take pytorch-metric-learning's call: ``loss(embeddings, labels, indices_tuple=miner(embeddings,
labels))``, with PML itself as the oracle on the same tuples (values and gradients, float64); PML's spellings;
and a clear error for PML's positional call."""

from __future__ import annotations

import pytest
import torch
from _loss_testing import labelled_batch, value_and_grad

from lightly_siamese_ext.losses import ContrastiveLoss, TripletLoss

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")
pml_reducers = pytest.importorskip("pytorch_metric_learning.reducers")

# Our distance -> the PML distance that computes it (PML's default L2-normalises: ours never does).
PML_DISTANCE = {
    "euclidean": lambda: pml_distances.LpDistance(normalize_embeddings=False),
    "squared_euclidean": lambda: pml_distances.LpDistance(normalize_embeddings=False, power=2),
    "cosine": lambda: pml_distances.CosineSimilarity(),  # a similarity: its margin is ours on 1 - cos
}
# Our reduction (and mean_over) -> PML's reducer.
PML_REDUCER = {
    ("mean", "valid"): lambda: pml_reducers.MeanReducer(),
    ("mean", "active"): lambda: pml_reducers.AvgNonZeroReducer(),  # PML's default
    ("sum", "valid"): lambda: pml_reducers.SumReducer(),
}
TRIPLET_MINERS = {
    "semihard": lambda: pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="semihard"),
    "all_violating": lambda: pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="all"),
    "batch_hard": lambda: pml_miners.BatchHardMiner(),
    "pairs": lambda: pml_miners.PairMarginMiner(pos_margin=0.5, neg_margin=1.5),  # combined into triplets, as PML does
}


def _batch():
    return labelled_batch(batch_size=16, dim=6, classes=4, seed=7)


@pytest.mark.parametrize("miner", list(TRIPLET_MINERS))
@pytest.mark.parametrize("distance", list(PML_DISTANCE))
@pytest.mark.parametrize("reduction, mean_over", list(PML_REDUCER))
def test_triplet_loss_on_a_pml_miners_tuples_equals_pml(miner, distance, reduction, mean_over) -> None:
    x, labels = _batch()
    indices = TRIPLET_MINERS[miner]()(x, labels)
    assert len(indices[0]) > 0
    margin = 0.3 if distance != "squared_euclidean" else 1.0
    ours = TripletLoss(margin, distance=distance, reduction=reduction, mean_over=mean_over)
    pml = pml_losses.TripletMarginLoss(margin, distance=PML_DISTANCE[distance](),
                                       reducer=PML_REDUCER[reduction, mean_over]())
    value, grad = value_and_grad(lambda x_: ours(x_, labels, indices_tuple=indices), x)
    reference, reference_grad = value_and_grad(lambda x_: pml(x_, labels, indices), x)
    torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-8, atol=1e-10)


def test_per_triplet_losses_are_pmls_unreduced_ones() -> None:
    x, labels = _batch()
    indices = TRIPLET_MINERS["all_violating"]()(x, labels)
    ours = TripletLoss(0.3, reduction="none")(x, labels, indices_tuple=indices)
    unreduced = pml_losses.TripletMarginLoss(0.3, distance=PML_DISTANCE["euclidean"](),
                                             reducer=pml_reducers.DoNothingReducer())(x, labels, indices)
    torch.testing.assert_close(ours, unreduced["loss"]["losses"], rtol=1e-10, atol=1e-12)
    assert ours.shape == (len(indices[0]),)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("tuples", ["pairs", "triplets"])
def test_contrastive_loss_on_a_pml_miners_tuples_is_the_squared_form_of_pmls_terms(distance, tuples) -> None:
    """Per pair: a positive costs d^2 = PML's term with the squared distance; a negative max(m - d, 0)^2 = the
    square of PML's term. Our mean is over all given pairs; PML averages positives and negatives apart."""
    x, labels = _batch()
    miner = pml_miners.PairMarginMiner(0.5, 1.5) if tuples == "pairs" else TRIPLET_MINERS["all_violating"]()
    indices = miner(x, labels)  # the tuples are only indices: any miner's do, whatever its distance
    assert len(indices) == (4 if tuples == "pairs" else 3) and len(indices[0]) > 0 and len(indices[-1]) > 0
    margin = 1.2 if distance == "euclidean" else 0.6

    def pml_terms(x_, power: int):
        measure = (pml_distances.CosineSimilarity() if distance == "cosine"
                   else pml_distances.LpDistance(normalize_embeddings=False, power=power))
        # Cosine: PML's similarity s, our distance 1 - s; positives 1 - s (pos_margin=1), negatives max(s - (1 - m), 0).
        margins = dict(pos_margin=1.0, neg_margin=1.0 - margin) if distance == "cosine" else dict(neg_margin=margin)
        terms = pml_losses.ContrastiveLoss(**margins, distance=measure, reducer=pml_reducers.DoNothingReducer())(
            x_, labels, indices
        )
        return terms["pos_loss"]["losses"], terms["neg_loss"]["losses"]

    def reference(x_):
        positive = pml_terms(x_, power=2)[0] if distance == "euclidean" else pml_terms(x_, 1)[0].square()
        negative = pml_terms(x_, power=1)[1].square()
        return torch.cat((positive, negative))

    loss_fn = ContrastiveLoss(margin, distance=distance, reduction="none")
    per_pair, grad = value_and_grad(lambda x_: loss_fn(x_, labels, indices_tuple=indices), x)
    expected, expected_grad = value_and_grad(reference, x)
    torch.testing.assert_close(per_pair, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-10)
    mean = ContrastiveLoss(margin, distance=distance)(x, labels, indices_tuple=indices)
    torch.testing.assert_close(mean, expected.mean(), rtol=1e-10, atol=1e-12)


def test_labels_may_be_left_out_with_indices_tuple_and_an_empty_tuple_costs_a_connected_zero() -> None:
    x, labels = _batch()
    indices = TRIPLET_MINERS["semihard"]()(x, labels)
    with_labels = TripletLoss(0.3)(x, labels, indices_tuple=indices)
    torch.testing.assert_close(TripletLoss(0.3)(x, indices_tuple=indices), with_labels)
    torch.testing.assert_close(TripletLoss(0.3)(x, None, indices_tuple=indices), with_labels)
    empty = torch.zeros(0, dtype=torch.long)
    x = x.clone().requires_grad_()
    for loss in (TripletLoss()(x, labels, indices_tuple=(empty,) * 3),
                 ContrastiveLoss()(x, labels, indices_tuple=(empty,) * 4)):
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.equal(grad, torch.zeros_like(x))


def test_pmls_semihard_spelling_is_semi_hard() -> None:
    x, labels = _batch()
    assert TripletLoss(0.3, mining="semihard").mining == "semi_hard"
    torch.testing.assert_close(TripletLoss(0.3, mining="semihard")(x, labels),
                               TripletLoss(0.3, "semi_hard")(x, labels))
    with pytest.raises(ValueError, match="margin must be > 0 with mining='semi_hard'"):
        TripletLoss(0.0, mining="semihard")


@pytest.mark.parametrize(
    "loss_fn, explicit", [(TripletLoss(), "anchor, positive, negative"), (ContrastiveLoss(), "x0, x1, y")]
)
def test_pmls_positional_call_is_an_error_that_names_the_keyword_call(loss_fn, explicit) -> None:
    x, labels = _batch()
    miner = TRIPLET_MINERS["semihard"]() if isinstance(loss_fn, TripletLoss) else pml_miners.PairMarginMiner()
    with pytest.raises(TypeError, match=rf"pytorch-metric-learning's loss\(embeddings, labels, indices_tuple\).*"
                                        rf"\({explicit}\).*indices_tuple=miner\(embeddings, labels\)"):
        loss_fn(x, labels, miner(x, labels))


@pytest.mark.parametrize(
    "indices, error, match",
    [
        ((torch.tensor([0]), torch.tensor([1])), ValueError, "tuple of 3 index tensors .* or 4 .*got a tuple of 2"),
        (torch.tensor([[0], [1], [2]]), TypeError, "tuple of 3 index tensors .* or 4 .*got Tensor"),
        ((torch.tensor([0]), torch.tensor([1]), torch.tensor([-1])), ValueError, r"in \[0, 16\).*from -1 to 1"),
        ((torch.tensor([0]), torch.tensor([16]), torch.tensor([2])), ValueError, r"in \[0, 16\).*from 0 to 16"),
        ((torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([2])), ValueError, "must have the same length"),
        ((torch.tensor([0.0]), torch.tensor([1]), torch.tensor([2])), TypeError,
         r"indices_tuple\[0\] \(anchor\) must hold integer"),
        ((torch.tensor([[0]]), torch.tensor([1]), torch.tensor([2])), ValueError,
         r"indices_tuple\[0\] \(anchor\) must be 1-D"),
        ((torch.tensor([0]), [1], torch.tensor([2])), TypeError,
         r"indices_tuple\[1\] \(positive\) must be a torch.Tensor"),
    ],
)
def test_bad_indices_are_clear_errors(indices, error, match) -> None:
    x, labels = _batch()
    with pytest.raises(error, match=match):
        TripletLoss()(x, labels, indices_tuple=indices)


def test_indices_of_this_ranks_batch_are_refused_with_gather_distributed() -> None:
    x, labels = _batch()
    indices = TRIPLET_MINERS["semihard"]()(x, labels)
    for loss_fn in (TripletLoss(0.3, gather_distributed=True), ContrastiveLoss(gather_distributed=True)):
        with pytest.raises(ValueError, match="indices_tuple cannot be used with gather_distributed=True"):
            loss_fn(x, labels, indices_tuple=indices)
