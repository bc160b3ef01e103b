"""torch.jit.script and torch.export.export on the models and heads give the eager outputs; the eager input checks
stay out of the compiled graphs and still run in eager mode."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from lightly_siamese_ext import EmbeddingHead, SiameseNetwork, SimSiam, SimSiamProjectionHead

X0, X1 = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))  # two views (B, C, H, W)


def _backbone() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def _models() -> dict:
    torch.manual_seed(0)
    return {
        "SimSiam": SimSiam(_backbone(), proj_dim=16, pred_hidden_dim=4),
        "SiameseNetwork": SiameseNetwork(_backbone(), embedding_dim=4, normalize=True),
        "SimSiamProjectionHead": SimSiamProjectionHead(8, 16, 16, num_layers=2),
        "EmbeddingHead": EmbeddingHead(8, output_dim=4, normalize=True),
    }


def _calls(name: str) -> list:
    """The argument tuples each module is compared on."""
    if name in ("SimSiam", "SiameseNetwork"):
        return [(X0, X1)] + ([(X0,)] if name == "SimSiam" else [])  # SimSiam: two views, and one
    return [(torch.randn(4, 8, generator=torch.Generator().manual_seed(2)),)]


def _assert_same(got, expected) -> None:
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        return
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["SimSiam", "SiameseNetwork", "SimSiamProjectionHead", "EmbeddingHead"])
def test_torch_jit_script_gives_the_eager_outputs(name: str) -> None:
    module = _models()[name].eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated in favour of export
        scripted = torch.jit.script(module)
    for args in _calls(name):
        expected = module(*args)
        got = scripted(*args)
        _assert_same(got, expected)
        if name == "SimSiam" and len(args) == 2:
            assert got.z0.shape == (4, 16) and got.p1.shape == (4, 16)  # still a named tuple


@pytest.mark.parametrize("name", ["SimSiam", "SiameseNetwork", "SimSiamProjectionHead", "EmbeddingHead"])
def test_torch_export_gives_the_eager_outputs(name: str) -> None:
    module = _models()[name].eval()
    for args in _calls(name):
        exported = torch.export.export(module, args).module()
        _assert_same(exported(*args), module(*args))


def test_a_timm_backbone_scripts_too() -> None:
    model = SimSiam("resnet18_cifar", proj_dim=16, pred_hidden_dim=4).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(model)
    x0, x1 = torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    _assert_same(scripted(x0, x1), model(x0, x1))


def test_eager_input_checks_still_run_after_compiling() -> None:
    models = _models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(models["SimSiam"])
    with pytest.raises(ValueError, match="x1 must have 3 channels"):
        models["SimSiam"](X0, torch.randn(4, 1, 8, 8))
    torch.export.export(models["SiameseNetwork"].eval(), (X0, X1))
    with pytest.raises(ValueError, match="x0, x1 must have the same batch size"):
        models["SiameseNetwork"](X0, X1[:2])
