import pytest
import torch
import torch.nn as nn

from lightly_siamese_ext import SiameseNetwork


def _tiny_twin(**kwargs: object) -> SiameseNetwork:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return SiameseNetwork(backbone, embedding_dim=4, **kwargs)


def test_issue_example_shapes() -> None:
    twin = SiameseNetwork("resnet18_cifar", embedding_dim=128)
    e0, e1 = twin(torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32))
    assert e0.shape == e1.shape == (3, 128)


def test_branches_share_one_set_of_parameters() -> None:
    twin = _tiny_twin().eval()
    x0, x1 = torch.randn(5, 3, 8, 8), torch.randn(5, 3, 8, 8)
    e0, e1 = twin(x0, x1)
    torch.testing.assert_close(e0, twin.embed(x0))
    torch.testing.assert_close(e1, twin.embed(x1))
    # Swapping inputs swaps outputs: one function, not two copies.
    f0, f1 = twin(x1, x0)
    torch.testing.assert_close(f0, e1)
    torch.testing.assert_close(f1, e0)
    # Changing a weight changes both branches.
    with torch.no_grad():
        twin.embedding_head.layers[-1].bias.add_(1.0)
    g0, g1 = twin(x0, x1)
    torch.testing.assert_close(g0, e0 + 1.0)
    torch.testing.assert_close(g1, e1 + 1.0)


def test_loss_on_both_outputs_accumulates_gradients_from_both_branches() -> None:
    twin = _tiny_twin().eval()
    x0, x1 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    e0, e1 = twin(x0, x1)
    (e0.sum() + 2.0 * e1.sum()).backward()
    both = [p.grad.clone() for p in twin.parameters()]
    separate = []
    for x, weight in ((x0, 1.0), (x1, 2.0)):
        twin.zero_grad()
        (weight * twin.embed(x).sum()).backward()
        separate.append([p.grad.clone() for p in twin.parameters()])
    for total, a, b in zip(both, *separate):
        torch.testing.assert_close(total, a + b)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_distance_against_brute_force(distance: str) -> None:
    twin = _tiny_twin(distance=distance).eval()
    x0, x1 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    got = twin.distance(x0, x1)
    e0, e1 = twin(x0, x1)
    for i in range(4):
        if distance == "euclidean":
            expected = torch.sqrt(((e0[i] - e1[i]) ** 2).sum())
        else:
            expected = 1 - (e0[i] @ e1[i]) / (e0[i].norm() * e1[i].norm())
        torch.testing.assert_close(got[i], expected, rtol=1e-4, atol=1e-5)
    same = twin.distance(x0, x0)
    assert same.abs().max() < 1e-4


def test_normalised_embeddings_have_unit_norm() -> None:
    twin = _tiny_twin(normalize=True)
    e0, _ = twin(torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8))
    torch.testing.assert_close(e0.norm(dim=1), torch.ones(4))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="distance"):
        _tiny_twin(distance="manhattan")
    twin = _tiny_twin()
    with pytest.raises(ValueError, match="x0 must be a 4-D"):
        twin(torch.randn(3, 8, 8), torch.randn(3, 8, 8))
    with pytest.raises(TypeError, match="x1 must be a floating"):
        twin(torch.randn(2, 3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="3 channels"):
        twin.embed(torch.randn(2, 4, 8, 8))


def test_channels_last_and_bf16_autocast() -> None:
    twin = SiameseNetwork("resnet18_cifar", embedding_dim=16).eval()
    x0, x1 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    e0, e1 = twin(x0, x1)
    twin_cl = twin.to(memory_format=torch.channels_last)
    c0, c1 = twin_cl(x0.contiguous(memory_format=torch.channels_last), x1.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(c0, e0, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b0, _ = twin(x0, x1)
        d = twin.distance(x0, x1)
    assert b0.dtype == torch.bfloat16 and d.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(b0.float(), e0, dim=1).min() > 0.98
