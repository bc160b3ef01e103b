import pytest
import torch
import torch.nn as nn

from lightly_siamese_ext import SimSiam, simsiam_loss
from lightly_siamese_ext.training import (count_flops, model_flops_utilization, peak_flops_per_second,
                                          simsiam_train_step)


def _model() -> SimSiam:
    torch.manual_seed(0)
    return SimSiam(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), proj_dim=8,
                   pred_hidden_dim=4)


def test_train_step_equals_the_manual_step() -> None:
    a, b = _model(), _model()
    x0, x1 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    loss, out = simsiam_train_step(a, x0, x1, opt_a)
    expected_out = b(x0, x1)
    manual = simsiam_loss(expected_out)
    manual.backward()
    opt_b.step()
    assert loss.grad_fn is None and all(t.grad_fn is None for t in out)
    for got, expected in zip(out, expected_out):
        torch.testing.assert_close(got, expected.detach())
    torch.testing.assert_close(loss, manual.detach())
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_train_step_rejects_fp16() -> None:
    model = _model()
    with pytest.raises(ValueError, match="amp_dtype"):
        simsiam_train_step(model, torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8),
                           torch.optim.SGD(model.parameters(), lr=0.1), amp_dtype=torch.float16)


def test_flop_count_of_a_linear_layer_matches_the_formula() -> None:
    layer = nn.Linear(16, 8)
    x = torch.randn(4, 16, requires_grad=True)
    assert count_flops(lambda: layer(x)) == 2 * 4 * 16 * 8
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 4 * 16 * 8  # forward + 2 backward matmuls


def test_mfu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert model_flops_utilization(1e12, 1.0, torch.device("cpu")) is None
    monkeypatch.setenv("LSE_PEAK_FLOPS", "4e12")
    assert model_flops_utilization(1e12, 0.5, torch.device("cpu")) == pytest.approx(0.5)


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H200", 989.4e12), ("NVIDIA H200 NVL", 835e12), ("NVIDIA H100 80GB HBM3", 989.4e12),
    ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12), ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA GeForce GTX 1080", None),
])
def test_peak_is_the_dense_bf16_rate_of_the_exact_part(monkeypatch: pytest.MonkeyPatch, name, peak) -> None:
    # The PCIe / NVL parts start with the SXM part's name: a first match on "H100" would overstate their peak.
    monkeypatch.delenv("LSE_PEAK_FLOPS", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert peak_flops_per_second(torch.device("cuda")) == peak
