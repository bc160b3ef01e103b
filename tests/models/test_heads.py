import pytest
import torch
import torch.nn as nn
from lightly.models.modules import heads as lightly_heads

from lightly_siamese_ext import EmbeddingHead, SimSiamPredictionHead, SimSiamProjectionHead


def _structure(module: nn.Module) -> list:
    out = []
    for layer in module.layers:
        if isinstance(layer, nn.Linear):
            out.append(("Linear", layer.in_features, layer.out_features, layer.bias is not None))
        elif isinstance(layer, nn.BatchNorm1d):
            out.append(("BN", layer.num_features, layer.affine))
        else:
            out.append(type(layer).__name__)
    return out


def test_three_layers_equal_lightlys_simsiam_projection_head() -> None:
    ours = SimSiamProjectionHead(512, 2048, 2048, num_layers=3)
    ref = lightly_heads.SimSiamProjectionHead(512, 2048, 2048)
    assert _structure(ours) == _structure(ref)


def test_two_layer_cifar_variant_has_bn_after_every_fc_and_no_output_relu() -> None:
    head = SimSiamProjectionHead(512, 2048, 2048, num_layers=2)
    assert _structure(head) == [
        ("Linear", 512, 2048, False),
        ("BN", 2048, True),
        "ReLU",
        ("Linear", 2048, 2048, False),
        ("BN", 2048, False),  # output BN has no affine parameters (paper)
    ]
    assert head(torch.randn(4, 512)).shape == (4, 2048)


def test_single_layer_projection() -> None:
    head = SimSiamProjectionHead(16, 32, 8, num_layers=1)
    assert _structure(head) == [("Linear", 16, 8, False), ("BN", 8, False)]


def test_prediction_head_is_lightlys() -> None:
    assert SimSiamPredictionHead is lightly_heads.SimSiamPredictionHead
    head = SimSiamPredictionHead()
    assert _structure(head) == [("Linear", 2048, 512, False), ("BN", 512, True), "ReLU", ("Linear", 512, 2048, True)]


@pytest.mark.parametrize("kwargs, name", [({"num_layers": 0}, "num_layers"), ({"hidden_dim": -1}, "hidden_dim")])
def test_projection_head_rejects_bad_sizes(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SimSiamProjectionHead(**kwargs)


def test_embedding_head_structure_and_normalisation() -> None:
    head = EmbeddingHead(64, output_dim=16)
    assert _structure(head) == [("Linear", 64, 64, False), ("BN", 64, True), "ReLU", ("Linear", 64, 16, True)]
    x = torch.randn(8, 64)
    raw = head(x)
    head.normalize = True
    unit = head(x)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(unit, raw / raw.norm(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="output_dim"):
        EmbeddingHead(64, output_dim=0)
