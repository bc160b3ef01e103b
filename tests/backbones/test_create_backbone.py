import pytest
import timm
import torch
import torch.nn as nn

from lightly_siamese_ext import SiameseNetwork, SimSiam, create_backbone


@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        ("resnet18_cifar", {}, 32),
        ("resnet18", {}, 64),
        ("convnext_atto", {}, 64),
        ("efficientnet_b0", {}, 64),
        # timm's num_features (576) is not the pooled width here: the head conv widens it to 1024.
        ("mobilenetv3_small_100", {}, 64),
        ("vit_tiny_patch16_224", {"img_size": 32}, 32),
    ],
)
def test_feature_dim_equals_real_pooled_width(name: str, kwargs: dict, size: int) -> None:
    backbone, feature_dim = create_backbone(name, **kwargs)
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, size, size))
    assert out.shape == (2, feature_dim)


def test_feature_dim_differs_from_num_features_where_timm_says_so() -> None:
    backbone, feature_dim = create_backbone("mobilenetv3_small_100")
    assert feature_dim != backbone.num_features


def test_global_pool_kwarg_changes_feature_dim() -> None:
    _, feature_dim = create_backbone("resnet18_cifar", global_pool="catavgmax")
    assert feature_dim == 1024


def test_backbone_keeps_training_mode_after_probe() -> None:
    backbone, _ = create_backbone("resnet18_cifar")
    assert backbone.training


def test_module_input_is_used_as_is() -> None:
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone, feature_dim = create_backbone(module)
    assert backbone is module and feature_dim == 8


def test_module_that_is_not_headless_is_rejected() -> None:
    with pytest.raises(ValueError, match="name_or_module"):
        create_backbone(nn.Conv2d(3, 8, 3))


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match="name_or_module.*resnet18_cifar"):
        create_backbone("resnet18_cifr")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        create_backbone("resnet18_cifar", num_classes=10)
    with pytest.raises(TypeError, match="name_or_module"):
        create_backbone(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pretrained"):
        create_backbone(nn.Identity(), pretrained=True)


def test_no_download_without_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights were requested although pretrained=False")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", fail)
    monkeypatch.setattr(timm.models._builder, "load_custom_pretrained", fail)
    create_backbone("resnet18")


@pytest.mark.parametrize(
    "build",
    [
        lambda module: create_backbone(module)[0],
        lambda module: __import__("lightly_siamese_ext").SimSiam(module, proj_dim=16, pred_hidden_dim=4),
        lambda module: __import__("lightly_siamese_ext").SiameseNetwork(module, embedding_dim=4),
    ],
    ids=["create_backbone", "SimSiam", "SiameseNetwork"],
)
def test_a_timm_model_with_its_classifier_is_refused_with_the_fix(build) -> None:
    model = timm.create_model("resnet18_cifar")  # timm's default: a 10-class head
    with pytest.raises(ValueError, match=r"classifier on \(num_classes=10\).*10 class logits.*reset_classifier\(0\)"):
        build(model)
    assert model.num_classes == 10  # the user's module is left as it was
    model.reset_classifier(0)  # the fix the message gives
    build(model)
    assert create_backbone(model)[1] == 512


def test_a_timm_model_whose_classifier_cannot_be_told_is_refused_with_the_fix() -> None:
    # convnext's get_classifier() returns self.head.fc: with model.head replaced it raises AttributeError itself.
    model = timm.create_model("convnext_atto", pretrained=False)
    model.head = torch.nn.Identity()
    with pytest.raises(ValueError, match=r"classifier on \(num_classes=1000\).*reset_classifier\(0\)"):
        create_backbone(model)


@pytest.mark.parametrize("build", [create_backbone, SimSiam, SiameseNetwork])
def test_a_timm_model_made_headless_by_replacing_its_classifier_is_accepted(build) -> None:
    # The torchvision / Lightly idiom: the classifier replaced by nn.Identity (timm's num_classes still says 10).
    model = timm.create_model("resnet18_cifar")
    model.fc = torch.nn.Identity()
    build(model)
    assert create_backbone(model)[1] == 512
