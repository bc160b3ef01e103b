import pytest
import torch
import torch.nn as nn
from lightly.loss import NegativeCosineSimilarity

from lightly_siamese_ext import SimSiam, SimSiamOutput, simsiam_loss


def _tiny_backbone() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _tiny_simsiam(**kwargs: object) -> SimSiam:
    torch.manual_seed(0)
    return SimSiam(_tiny_backbone(), proj_dim=32, pred_hidden_dim=8, **kwargs)


def test_default_model_is_the_cifar_recipe() -> None:
    model = SimSiam()
    assert model.feature_dim == 512
    assert model.projection_head.num_layers == 2
    out = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
    assert isinstance(out, SimSiamOutput)
    assert all(t.shape == (4, 2048) for t in out)
    assert model.prediction_head.layers[0].out_features == 512


def test_projections_are_detached_predictions_are_not() -> None:
    out = _tiny_simsiam()(torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8))
    assert out.z0.grad_fn is None and out.z1.grad_fn is None
    assert out.p0.requires_grad and out.p1.requires_grad


def test_target_projection_sends_no_gradient_into_the_backbone() -> None:
    """D(p0, z1) must move view 0's path only: the gradient equals that of D(p0, constant z1)."""
    model = _tiny_simsiam()
    x0 = torch.randn(6, 3, 8, 8)
    x1 = torch.randn(6, 3, 8, 8, requires_grad=True)
    criterion = NegativeCosineSimilarity()
    out = model(x0, x1)
    criterion(out.p0, out.z1).backward()
    assert x1.grad is None  # nothing flowed back through view 1
    grads = [p.grad.clone() for p in model.backbone.parameters()]

    model.zero_grad()
    with torch.no_grad():
        z1_constant = model.projection_head(model.backbone(x1))  # same BN batch statistics (train mode, same input)
    _, p0 = model.forward_view(x0)
    criterion(p0, z1_constant).backward()
    for got, expected in zip(grads, (p.grad for p in model.backbone.parameters())):
        torch.testing.assert_close(got, expected)


def test_symmetric_loss_matches_lightly_recipe_and_is_float32_under_autocast() -> None:
    model = _tiny_simsiam()
    x0, x1 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    out = model(x0, x1)
    criterion = NegativeCosineSimilarity()
    expected = 0.5 * (criterion(out.p0, out.z1) + criterion(out.p1, out.z0))
    torch.testing.assert_close(simsiam_loss(out), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = model(x0, x1)
        loss = simsiam_loss(out_bf16)
    assert out_bf16.p0.dtype == torch.bfloat16
    assert loss.dtype == torch.float32


def test_parameter_groups_cover_every_parameter_exactly_once() -> None:
    model = _tiny_simsiam()
    for fix in (False, True):
        groups = model.parameter_groups(fix_predictor_lr=fix)
        ids = [id(p) for g in groups for p in g["params"]]
        assert len(ids) == len(set(ids))
        assert set(ids) == {id(p) for p in model.parameters()}
        predictor = next(g for g in groups if g["name"] == "predictor")
        assert {id(p) for p in predictor["params"]} == {id(p) for p in model.prediction_head.parameters()}
        assert predictor["fix_lr"] is fix


@pytest.mark.parametrize(
    "x0, x1, error, match",
    [
        (torch.randn(3, 8, 8), torch.randn(3, 8, 8), ValueError, "x0 must be a 4-D"),
        (torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8), ValueError, "x0 must have 3 channels"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.randn(2, 3, 8, 8), TypeError, "x0 must be a floating"),
        (torch.randn(2, 3, 8, 8), torch.randn(3, 3, 8, 8), ValueError, "same batch size"),
        (torch.randn(2, 3, 8, 8), [1, 2], TypeError, "x1 must be a torch.Tensor"),
    ],
)
def test_bad_input_is_named(x0: object, x1: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        _tiny_simsiam()(x0, x1)


def test_channels_last_gives_the_same_result() -> None:
    model = SimSiam("resnet18_cifar", proj_dim=64, pred_hidden_dim=16).eval()
    x0, x1 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    expected = model(x0, x1)
    model_cl = model.to(memory_format=torch.channels_last)
    got = model_cl(x0.contiguous(memory_format=torch.channels_last), x1.contiguous(memory_format=torch.channels_last))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_is_close_to_float32() -> None:
    model = SimSiam("resnet18_cifar", proj_dim=64, pred_hidden_dim=16).eval()
    x0, x1 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    expected = model.embed(x0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.embed(x0)
        out = model(x0, x1)
    assert got.dtype == torch.bfloat16 and all(torch.isfinite(t).all() for t in out)
    cos = torch.nn.functional.cosine_similarity(got.float(), expected, dim=1)
    assert (cos > 0.99).all()


def test_one_view_gives_the_detached_projection_and_the_prediction_as_lightlys_example_model() -> None:
    model = _tiny_simsiam()
    x0, x1 = torch.randn(6, 3, 8, 8), torch.randn(6, 3, 8, 8)
    z0, p0 = model(x0)  # Lightly's examples: `z0, p0 = model(x0)`
    z1, p1 = model(x1)
    assert z0.shape == p0.shape == (6, 32) and z0.grad_fn is None and p0.requires_grad
    criterion = NegativeCosineSimilarity()
    loss = 0.5 * (criterion(z0, p1) + criterion(z1, p0))  # Lightly's loss line, as written there
    torch.testing.assert_close(loss, simsiam_loss(model(x0, x1)))
    for got, expected in zip(model(x0), model.forward_view(x0)):
        torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="x must be a 4-D"):
        model(torch.randn(3, 8, 8))
