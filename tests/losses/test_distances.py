import pytest
import torch
from _loss_testing import distance as brute_distance

from lightly_siamese_ext.distances import DISTANCES, paired_distances, pairwise_distances, safe_sqrt
from lightly_siamese_ext.losses.distance_matrix import DistanceMatrix


def _points(n=7, dim=4, seed=0, dtype=torch.float64):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_safe_sqrt_is_the_square_root_with_a_zero_gradient_at_and_below_zero() -> None:
    x = torch.tensor([4.0, 0.25, 0.0, -1e-9], requires_grad=True)
    y = safe_sqrt(x)
    assert y.tolist() == [2.0, 0.5, 0.0, 0.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.25, 1.0, 0.0, 0.0]


def _brute_matrix(x, y, distance):
    return torch.stack([torch.stack([brute_distance(a, b, distance) for b in y]) for a in x])


def _value_and_grads(fn, *tensors):
    tensors = [t.clone().requires_grad_() for t in tensors]
    out = fn(*tensors)
    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view(out.shape)
    return (out.detach(), *torch.autograd.grad((out * weights).sum(), tensors))


@pytest.mark.parametrize("distance", DISTANCES)
def test_paired_and_pairwise_distances_and_gradients_match_brute_force(distance) -> None:
    x, y = _points(seed=1), _points(n=5, seed=2)
    for ours, reference in [
        (lambda a, b: paired_distances(a[:5], b, distance), lambda a, b: torch.stack(
            [brute_distance(a[i], b[i], distance) for i in range(5)])),
        (lambda a, b: pairwise_distances(a, b, distance), lambda a, b: _brute_matrix(a, b, distance)),
    ]:
        for got, expected in zip(_value_and_grads(ours, x, y), _value_and_grads(reference, x, y)):
            torch.testing.assert_close(got, expected)
    square = pairwise_distances(x, distance=distance)
    assert torch.equal(square.diagonal(), torch.zeros(7, dtype=x.dtype))
    for got, expected in zip(
        _value_and_grads(lambda a: pairwise_distances(a, distance=distance), x),
        _value_and_grads(lambda a: _brute_matrix(a, a, distance), x),
    ):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(DistanceMatrix(x, distance).values, square)


@pytest.mark.parametrize("distance", DISTANCES)
def test_pairwise_distances_of_duplicates_are_near_zero_with_finite_gradients(distance) -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 1.0, -1.0]], requires_grad=True)
    d = pairwise_distances(x, distance=distance)
    # The Gram form leaves float32 rounding noise: sqrt(eps * |x|^2) for the euclidean distance (cdist's is
    # larger, as it does not centre the batch); paired_distances, from the differences, is exact.
    assert d[0, 1].item() == pytest.approx(0.0, abs=2e-3 if distance == "euclidean" else 1e-6)
    assert paired_distances(x[:1], x[1:2], distance).item() == pytest.approx(0.0, abs=1e-6)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("uniform_upstream", [False, True])
def test_distance_matrix_gradient_matches_autograd_through_pairwise_distances(
    distance, symmetric, uniform_upstream
) -> None:
    x = _points(n=9, dim=5, seed=3)
    generator = torch.Generator().manual_seed(4)
    weights = torch.randn(9, 9, generator=generator, dtype=x.dtype)
    if symmetric:
        weights = weights + weights.T
    upstream = torch.ones(9, dtype=x.dtype) if uniform_upstream else torch.rand(9, generator=generator, dtype=x.dtype)

    x_ours = x.clone().requires_grad_()
    matrix = DistanceMatrix(x_ours, distance)
    rows = (weights * matrix.values).sum(dim=1)
    out = matrix.with_gradient(rows, weights.clone(), symmetric=symmetric)
    # The upstream gradient of a sum arrives as an expanded scalar (stride 0): that shortcut is tested too.
    (out.sum() if uniform_upstream else (out * upstream).sum()).backward()

    x_ref = x.clone().requires_grad_()
    ((weights * pairwise_distances(x_ref, distance=distance)).sum(dim=1) * upstream).sum().backward()
    torch.testing.assert_close(out.detach(), rows)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)


def test_distance_matrix_without_grad_returns_the_rows_unchanged() -> None:
    x = _points()
    matrix = DistanceMatrix(x)
    rows = torch.arange(7.0, dtype=x.dtype)
    assert matrix.with_gradient(rows, torch.zeros(7, 7, dtype=x.dtype)) is rows


def test_bad_inputs_raise_errors_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="distance must be one of"):
        paired_distances(torch.randn(3, 2), torch.randn(3, 2), "l1")
    with pytest.raises(ValueError, match="x, y must have the same shape"):
        paired_distances(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="feature size"):
        pairwise_distances(torch.randn(3, 2), torch.randn(4, 3))
    with pytest.raises(TypeError, match="embeddings.*floating"):
        DistanceMatrix(torch.ones(3, 2, dtype=torch.long))
