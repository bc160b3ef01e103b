import itertools

import pytest
import torch
import torch.nn.functional as F
from _loss_testing import check_float16_autocast_on_cuda
from _loss_testing import distance as brute_distance
from _loss_testing import labelled_batch as _batch
from _loss_testing import normalised_batch as _normalised_batch
from _loss_testing import triplet_loss as brute_triplet_loss
from _loss_testing import value_and_grad

from lightly_siamese_ext.losses import DISTANCES, MINING, TripletLoss, mining


@pytest.mark.parametrize(
    "mining_mode, distance, soft_margin, mean_over",
    list(itertools.product(MINING, DISTANCES, (False, True), ("valid", "active"))),
)
def test_mined_loss_and_gradient_match_brute_force(mining_mode, distance, soft_margin, mean_over) -> None:
    x, labels = _batch(seed=hash((mining_mode, distance)) % 1000)
    margin = 0.5 if distance != "squared_euclidean" else 2.0
    loss_fn = TripletLoss(margin, mining_mode, distance, soft_margin=soft_margin, mean_over=mean_over)
    ours, grad = value_and_grad(lambda x_: loss_fn(x_, labels), x)
    ref, ref_grad = value_and_grad(
        lambda x_: brute_triplet_loss(x_, labels, distance, mining_mode, margin, soft_margin, mean_over), x
    )
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mining_mode", MINING)
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_reductions_match_brute_force_and_sum_of_none_is_sum(mining_mode, reduction) -> None:
    x, labels = _batch(batch_size=12, classes=4, seed=3)
    loss_fn = TripletLoss(0.8, mining_mode, reduction=reduction)
    # A non-uniform upstream gradient exercises the per-anchor backward path.
    upstream = torch.linspace(0.5, 2.0, len(x), dtype=x.dtype) if reduction == "none" else torch.tensor(1.0)
    ours, grad = value_and_grad(lambda x_: loss_fn(x_, labels), x, upstream)
    ref, ref_grad = value_and_grad(
        lambda x_: brute_triplet_loss(x_, labels, "euclidean", mining_mode, 0.8, reduction=reduction), x, upstream
    )
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)
    if reduction == "none":
        assert ours.shape == (len(x),)
        total = TripletLoss(0.8, mining_mode, reduction="sum")(x, labels)
        torch.testing.assert_close(ours.sum(), total)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("soft_margin", [False, True])
def test_explicit_triplets_match_the_formula(distance, soft_margin) -> None:
    x, _ = _batch(batch_size=24, seed=4)
    anchor, positive, negative = x[:8], x[8:16], x[16:]
    for mean_over in ("valid", "active"):
        loss_fn = TripletLoss(0.3, distance=distance, soft_margin=soft_margin, mean_over=mean_over)
        ours, grad = value_and_grad(lambda a: loss_fn(a, positive, negative), anchor)

        def reference(a):
            terms = []
            for i in range(len(a)):
                diff = brute_distance(a[i], positive[i], distance) - brute_distance(a[i], negative[i], distance)
                terms.append(F.softplus(diff) if soft_margin else torch.relu(diff + 0.3))
            terms = torch.stack(terms)
            count = int((terms > 0).sum()) if mean_over == "active" else len(terms)
            return terms.sum() / max(count, 1)

        ref, ref_grad = value_and_grad(reference, anchor)
        torch.testing.assert_close(ours, ref)
        torch.testing.assert_close(grad, ref_grad)
    per_triplet = TripletLoss(0.3, distance=distance, soft_margin=soft_margin, reduction="none")(*x.split(8))
    assert per_triplet.shape == (8,)


# pytorch-metric-learning, used as an oracle for the configurations where it computes the same thing. PML
# L2-normalises embeddings by default: feed it normalised embeddings. Its default reducer averages the non-zero
# losses: mean_over="active".
pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")


def test_batch_hard_matches_pml_batch_hard_miner() -> None:
    x, labels = _normalised_batch()
    ours = TripletLoss(0.2, "batch_hard", mean_over="active")(x, labels)
    miner = pml_miners.BatchHardMiner()
    reference = pml_losses.TripletMarginLoss(margin=0.2)(x, labels, miner(x, labels))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_semi_hard_matches_pml_semihard_triplet_margin_miner() -> None:
    x, labels = _normalised_batch(seed=1)
    ours = TripletLoss(0.2, "semi_hard")(x, labels)
    miner = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
    reference = pml_losses.TripletMarginLoss(margin=0.2)(x, labels, miner(x, labels))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("soft_margin", [False, True])
def test_batch_all_matches_pml_all_triplets(soft_margin) -> None:
    x, labels = _normalised_batch(seed=2)
    ours = TripletLoss(0.2 if not soft_margin else 0.0, "batch_all", soft_margin=soft_margin, mean_over="active")(
        x, labels
    )
    reference = pml_losses.TripletMarginLoss(margin=0.2 if not soft_margin else 0.0, smooth_loss=soft_margin)(
        x, labels
    )
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_batch_all_is_the_same_when_the_positive_pairs_come_in_many_chunks(monkeypatch) -> None:
    x, labels = _batch(batch_size=40, classes=3, seed=5)
    for mode in ("batch_all", "semi_hard"):
        for soft_margin in (False, True):
            loss_fn = TripletLoss(0.5, mode, soft_margin=soft_margin)
            whole, whole_grad = value_and_grad(lambda x_: loss_fn(x_, labels), x)
            monkeypatch.setattr(mining, "CHUNK_ELEMENTS", 3 * 40)  # chunks of B / 2 = 20 positive pairs
            chunked, chunked_grad = value_and_grad(lambda x_: loss_fn(x_, labels), x)
            monkeypatch.undo()
            torch.testing.assert_close(chunked, whole)
            torch.testing.assert_close(chunked_grad, whole_grad)


@pytest.mark.parametrize("mining_mode", MINING)
@pytest.mark.parametrize(
    "labels",
    [torch.zeros(6, dtype=torch.long), torch.arange(6), torch.zeros(1, dtype=torch.long), torch.zeros(0).long()],
    ids=["one-class", "all-distinct", "single", "empty"],
)
def test_a_batch_without_triplets_gives_a_zero_loss_still_connected_to_the_graph(mining_mode, labels) -> None:
    x = torch.randn(len(labels), 4, requires_grad=True)
    for reduction in ("mean", "sum"):
        loss = TripletLoss(0.2, mining_mode, reduction=reduction)(x, labels)
        assert loss.item() == 0.0
        assert loss.requires_grad
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.equal(grad, torch.zeros_like(x))
    assert TripletLoss(0.2, mining_mode, reduction="none")(x, labels).shape == (len(labels),)


@pytest.mark.parametrize("mining_mode", MINING)
@pytest.mark.parametrize("distance", DISTANCES)
def test_identical_embeddings_give_finite_gradients(mining_mode, distance) -> None:
    x = torch.ones(8, 4).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = TripletLoss(0.2, mining_mode, distance)(x, labels)
    loss.backward()
    # Every distance is 0: every triplet costs the margin (none is semi-hard: d(a, n) = d(a, p)), and the
    # gradient at d = 0 is 0 by convention.
    assert loss.item() == pytest.approx(0.0 if mining_mode == "semi_hard" else 0.2)
    assert torch.equal(x.grad, torch.zeros_like(x))
    anchor = torch.ones(3, 4, requires_grad=True)
    TripletLoss(0.2, distance=distance)(anchor, anchor, anchor).backward()
    assert torch.isfinite(anchor.grad).all()


@pytest.mark.parametrize("mining_mode", MINING)
def test_under_bfloat16_autocast_the_loss_is_float32_and_matches_float32(mining_mode) -> None:
    x, labels = _normalised_batch(batch_size=32, seed=6)
    loss_fn = TripletLoss(0.2, mining_mode)
    reference = loss_fn(x, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = loss_fn(x, labels)
        from_bf16 = loss_fn(x.bfloat16(), labels)
    assert ours.dtype == torch.float32 and from_bf16.dtype == torch.float32
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(from_bf16, loss_fn(x.bfloat16().float(), labels))


def test_float64_stays_float64_and_half_inputs_get_float32_gradients() -> None:
    x, labels = _batch()
    assert TripletLoss()(x, labels).dtype == torch.float64
    half = x.half().requires_grad_()
    loss = TripletLoss(mining="batch_all")(half, labels)
    assert loss.dtype == torch.float32
    loss.backward()
    assert half.grad.dtype == torch.float16 and torch.isfinite(half.grad).all()


def test_far_from_the_origin_the_mined_loss_keeps_float32_precision() -> None:
    # A collapsing network's embeddings: a large common offset, small differences. The Gram form without
    # centring loses them to cancellation.
    x, labels = _batch(batch_size=16, dim=8, seed=7)
    offset = 100.0 * torch.ones(8, dtype=torch.float64)
    for mode in MINING:
        loss_fn = TripletLoss(0.5, mode)
        far = loss_fn((x + offset).float(), labels).double()
        torch.testing.assert_close(far, loss_fn(x, labels), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"margin": -0.1}, "margin"),
        ({"margin": float("nan")}, "margin"),
        ({"mining": "hardest"}, "mining"),
        ({"distance": "manhattan"}, "distance"),
        ({"reduction": "avg"}, "reduction"),
        ({"mean_over": "nonzero"}, "mean_over"),
        ({"mining": "semi_hard", "margin": 0.0}, "margin"),
    ],
)
def test_bad_configuration_raises_a_value_error_naming_the_argument(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        TripletLoss(**kwargs)


def test_bad_configuration_types_raise_type_errors_and_flags_are_read_as_truth_values() -> None:
    with pytest.raises(TypeError, match="margin"):
        TripletLoss(margin="0.2")
    assert TripletLoss(soft_margin=1).soft_margin is True and TripletLoss(gather_distributed=0).gather_distributed is False


@pytest.mark.parametrize(
    "tensors, error, message",
    [
        ((torch.randn(4, 3), torch.zeros(5, dtype=torch.long)), ValueError,
         r"labels must have one entry per embedding \(4\), got 5"),
        ((torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long)), ValueError, "labels.*1-D"),
        ((torch.randn(4, 3), torch.zeros(4)), TypeError, "labels.*integer"),
        ((torch.arange(12).view(4, 3), torch.zeros(4, dtype=torch.long)), TypeError, "embeddings.*floating"),
        ((torch.randn(4), torch.zeros(4, dtype=torch.long)), ValueError, r"embeddings.*\(B, D\)"),
        ((torch.randn(4, 3), torch.randn(5, 3), torch.randn(4, 3)), ValueError,
         "anchor, positive, negative.*same shape"),
        ((torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 2)), ValueError, "same shape"),
        ((torch.randn(4, 3), torch.randn(4, 3), torch.arange(12).view(4, 3)), TypeError, "negative.*floating"),
    ],
)
def test_bad_inputs_raise_an_error_naming_the_argument(tensors, error, message) -> None:
    with pytest.raises(error, match=message):
        TripletLoss()(*tensors)


def test_wrong_number_of_inputs_raises_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"\(embeddings, labels\) or \(anchor, positive, negative\)"):
        TripletLoss()(torch.randn(4, 3))


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int32])
def test_labels_of_any_integer_dtype_give_the_same_loss(dtype) -> None:
    x, labels = _batch(classes=2)
    for mode in MINING:
        loss_fn = TripletLoss(0.5, mode)
        torch.testing.assert_close(loss_fn(x, labels.to(dtype)), loss_fn(x, labels))


def test_gather_distributed_without_a_process_group_changes_nothing() -> None:
    x, labels = _batch()
    assert torch.equal(TripletLoss(gather_distributed=True)(x, labels), TripletLoss()(x, labels))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mining_mode", MINING)
def test_under_float16_autocast_on_cuda_the_loss_is_float32_and_matches_the_cpu(mining_mode) -> None:
    check_float16_autocast_on_cuda(TripletLoss(0.2, mining_mode), *_normalised_batch(batch_size=64, seed=8))
