import math

import pytest
import torch
import torch.nn as nn
from lightly.loss import NegativeCosineSimilarity

from lightly_siamese_ext import CosineWarmupScheduler, SimSiam, SimSiamOutput, epoch_cosine_scheduler, simsiam_loss


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


def test_scheduler_keeps_predictor_lr_fixed_and_decays_the_encoder() -> None:
    model = _tiny_simsiam()
    optimizer = torch.optim.SGD(model.parameter_groups(fix_predictor_lr=True), lr=0.1)
    scheduler = CosineWarmupScheduler(optimizer, warmup_epochs=0, max_epochs=10, end_value=0.0)
    lrs = []
    for _ in range(9):
        optimizer.step()
        scheduler.step()
        lrs.append([g["lr"] for g in optimizer.param_groups])
    encoder_lrs = [lr[0] for lr in lrs]
    assert encoder_lrs == sorted(encoder_lrs, reverse=True) and encoder_lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(lr[1] == 0.1 for lr in lrs)


def test_scheduler_without_fixed_groups_equals_lightlys() -> None:
    from lightly.utils.scheduler import CosineWarmupScheduler as LightlyScheduler

    lrs = []
    for cls in (CosineWarmupScheduler, LightlyScheduler):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
        scheduler = cls(optimizer, warmup_epochs=2, max_epochs=10)
        trace = []
        for _ in range(10):
            optimizer.step()
            scheduler.step()
            trace.append(optimizer.param_groups[0]["lr"])
        lrs.append(trace)
    assert lrs[0] == lrs[1]


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


def test_epoch_cosine_scheduler_is_the_papers_per_epoch_cosine_and_never_wastes_the_last_epoch() -> None:
    epochs, base = 4, 0.2
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = epoch_cosine_scheduler(optimizer, epochs)
    trained_at = []
    for _ in range(epochs):
        trained_at.append(optimizer.param_groups[0]["lr"])  # the rate this epoch trains at
        optimizer.step()
        scheduler.step()
    # SimSiam's adjust_learning_rate: init_lr * 0.5 * (1 + cos(pi * epoch / epochs)), epoch = 0 .. epochs - 1
    expected = [base * 0.5 * (1 + math.cos(math.pi * e / epochs)) for e in range(epochs)]
    assert trained_at == pytest.approx(expected, rel=1e-9)
    assert min(trained_at) > 0.1 * base
    # lightly's scheduler with max_epochs=epochs trains the last epoch at end_value (0).
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    lightly_like = CosineWarmupScheduler(optimizer, warmup_epochs=0, max_epochs=epochs, end_value=0.0)
    for _ in range(epochs - 1):
        optimizer.step()
        lightly_like.step()
    assert optimizer.param_groups[0]["lr"] == 0.0


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"epochs": 2.0}, {"epochs": 3, "warmup_epochs": 4},
                                    {"epochs": 3, "warmup_epochs": -1}])
def test_epoch_cosine_scheduler_rejects_bad_epochs(kwargs: dict) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    name = "warmup_epochs" if "warmup_epochs" in kwargs else "epochs"
    with pytest.raises(ValueError, match=f"^{name} must be"):
        epoch_cosine_scheduler(optimizer, **kwargs)
