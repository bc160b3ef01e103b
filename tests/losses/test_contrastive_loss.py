import pytest
import torch
from _loss_testing import check_float16_autocast_on_cuda, contrastive_pair_losses
from _loss_testing import distance as brute_distance
from _loss_testing import labelled_batch as _batch
from _loss_testing import normalised_batch
from _loss_testing import value_and_grad

from lightly_siamese_ext.losses import ContrastiveLoss


@pytest.mark.parametrize("distance, margin", [("euclidean", 3.0), ("cosine", 0.9)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_pairs_loss_and_gradient_match_brute_force(distance, margin, reduction) -> None:
    x, labels = _batch(seed=1)
    loss_fn = ContrastiveLoss(margin, distance, reduction)
    upstream = torch.rand(45, dtype=x.dtype) if reduction == "none" else None
    ours, grad = value_and_grad(lambda x_: loss_fn(x_, labels), x, upstream)

    def reference(x_):
        losses = contrastive_pair_losses(x_, labels, distance, margin)
        return {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]

    ref, ref_grad = value_and_grad(reference, x, upstream)
    assert ours.shape == ref.shape and ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


def test_all_pairs_convention_similar_pairs_are_pulled_and_dissimilar_ones_pushed() -> None:
    x = torch.tensor([[0.0, 0.0], [0.3, 0.4], [3.0, 4.0]])  # d01 = 0.5, d02 = 5, d12 = 4.5
    labels = torch.tensor([7, 7, 9])
    # similar pair: d^2 = 0.25; dissimilar pairs beyond the margin of 1: 0.
    assert ContrastiveLoss(1.0, reduction="sum")(x, labels).item() == pytest.approx(0.25)
    # with a margin of 5: the pair at 4.5 costs (5 - 4.5)^2; the one at exactly 5 costs 0.
    assert ContrastiveLoss(5.0, reduction="none")(x, labels).tolist() == pytest.approx([0.25, 0.0, 0.25])


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pair_form_matches_the_formula(distance, reduction) -> None:
    x, _ = _batch(batch_size=16, seed=2)
    x0, x1 = x[:8], x[8:]
    y = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])
    margin = 2.5 if distance == "euclidean" else 0.8
    upstream = torch.rand(8, dtype=x.dtype) if reduction == "none" else None
    ours, grad = value_and_grad(lambda a: ContrastiveLoss(margin, distance, reduction)(a, x1, y), x0, upstream)

    def reference(a):
        losses = []
        for i in range(8):
            d = brute_distance(a[i], x1[i], distance)
            losses.append(d**2 if y[i] == 1 else torch.relu(margin - d) ** 2)
        losses = torch.stack(losses)
        return {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]

    ref, ref_grad = value_and_grad(reference, x0, upstream)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_pair_targets_may_be_bool_integer_or_float() -> None:
    x0, x1 = torch.randn(4, 3), torch.randn(4, 3)
    loss_fn = ContrastiveLoss()
    expected = loss_fn(x0, x1, torch.tensor([True, False, True, False]))
    for y in (torch.tensor([1, 0, 1, 0]), torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([1, 0, 1, 0]).byte()):
        torch.testing.assert_close(loss_fn(x0, x1, y), expected)


def test_pair_form_and_all_pairs_form_agree_on_the_same_pairs() -> None:
    x, labels = _batch(batch_size=6, seed=3)
    rows, cols = torch.triu_indices(6, 6, offset=1)
    loss_fn = ContrastiveLoss(2.0, reduction="none")
    torch.testing.assert_close(loss_fn(x, labels), loss_fn(x[rows], x[cols], labels[rows] == labels[cols]))


@pytest.mark.parametrize(
    "labels", [torch.zeros(1, dtype=torch.long), torch.zeros(0, dtype=torch.long)], ids=["single", "empty"]
)
def test_a_batch_without_pairs_gives_a_zero_loss_still_connected_to_the_graph(labels) -> None:
    x = torch.randn(len(labels), 3, requires_grad=True)
    for reduction in ("mean", "sum"):
        loss = ContrastiveLoss(reduction=reduction)(x, labels)
        assert loss.item() == 0.0 and loss.requires_grad
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.equal(grad, torch.zeros_like(x))
    assert ContrastiveLoss(reduction="none")(x, labels).shape == (0,)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_identical_embeddings_give_finite_zero_gradients(distance) -> None:
    x = torch.ones(6, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = ContrastiveLoss(1.0, distance)(x, labels)
    loss.backward()
    # 12 of the 15 pairs are dissimilar, all at distance 0: each costs margin^2.
    assert loss.item() == pytest.approx(12 / 15)
    assert torch.equal(x.grad, torch.zeros_like(x))
    x0 = torch.ones(3, 4, requires_grad=True)
    ContrastiveLoss(1.0, distance)(x0, x0.detach().clone(), torch.tensor([1, 0, 1])).backward()
    assert torch.equal(x0.grad, torch.zeros_like(x0))


def test_far_from_the_origin_the_all_pairs_loss_keeps_float32_precision() -> None:
    x, labels = _batch(batch_size=16, dim=8, seed=4)
    offset = 100.0 * torch.ones(8, dtype=torch.float64)
    loss_fn = ContrastiveLoss(3.0)
    torch.testing.assert_close(loss_fn((x + offset).float(), labels).double(), loss_fn(x, labels), rtol=1e-4, atol=1e-5)


def test_under_bfloat16_autocast_the_loss_is_float32() -> None:
    x, labels = normalised_batch(batch_size=32, seed=5)
    loss_fn = ContrastiveLoss(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = loss_fn(x, labels)
        pair = loss_fn(x[:16].bfloat16(), x[16:].bfloat16(), labels[:16] == labels[16:])
    assert ours.dtype == torch.float32 and pair.dtype == torch.float32
    torch.testing.assert_close(ours, loss_fn(x, labels))
    rounded = x.bfloat16().float()
    torch.testing.assert_close(pair, loss_fn(rounded[:16], rounded[16:], labels[:16] == labels[16:]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"margin": -1.0}, "margin"),
        ({"distance": "squared_euclidean"}, "distance"),
        ({"reduction": "max"}, "reduction"),
    ],
)
def test_bad_configuration_raises_a_value_error_naming_the_argument(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        ContrastiveLoss(**kwargs)


@pytest.mark.parametrize(
    "tensors, error, message",
    [
        ((torch.randn(4, 3), torch.randn(5, 3), torch.ones(4)), ValueError, "x0, x1 must have the same shape"),
        ((torch.randn(4, 3), torch.randn(4, 3), torch.ones(5)), ValueError, r"y must have shape \(4,\)"),
        ((torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 1])), ValueError, "y must hold 1.*or 0"),
        ((torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0.0, 0.5, 1.0, 1.0])), ValueError, "y must hold"),
        ((torch.arange(12).view(4, 3), torch.randn(4, 3), torch.ones(4)), TypeError, "x0.*floating"),
        ((torch.randn(4, 3), torch.randn(4, 3)), ValueError, "labels.*1-D"),
        ((torch.randn(4, 3), torch.zeros(3, dtype=torch.long)), ValueError,
         r"labels must have one entry per embedding \(4\), got 3"),
        ((torch.randn(4, 3).long(), torch.zeros(4, dtype=torch.long)), TypeError, "embeddings.*floating"),
    ],
)
def test_bad_inputs_raise_an_error_naming_the_argument(tensors, error, message) -> None:
    with pytest.raises(error, match=message):
        ContrastiveLoss()(*tensors)


def test_wrong_number_of_inputs_raises_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"\(embeddings, labels\) or \(x0, x1, y\)"):
        ContrastiveLoss()(torch.randn(4, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_under_float16_autocast_on_cuda_the_loss_is_float32_and_matches_the_cpu() -> None:
    check_float16_autocast_on_cuda(ContrastiveLoss(1.0), *normalised_batch(batch_size=64, seed=6))
