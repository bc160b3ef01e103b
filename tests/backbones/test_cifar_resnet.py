import pytest
import timm
import torch
import torch.nn as nn

import lightly_siamese_ext  # noqa: F401  (registers the *_cifar models)
from lightly_siamese_ext.backbones import CifarResNet
from lightly_siamese_ext.transforms import CIFAR10_MEAN, CIFAR10_STD

CIFAR_MODELS = ["resnet18_cifar", "resnet34_cifar", "resnet50_cifar"]


def test_models_are_listed_in_timms_registry() -> None:
    assert timm.list_models("*_cifar") == sorted(CIFAR_MODELS)
    for name in CIFAR_MODELS:
        assert timm.is_model(name)


@pytest.mark.parametrize("size", [32, 64])
def test_resnet18_cifar_headless_features(size: int) -> None:
    model = timm.create_model("resnet18_cifar", num_classes=0).eval()
    out = model(torch.randn(3, 3, size, size))
    assert out.shape == (3, 512)
    assert model.num_features == 512


def test_stem_is_3x3_stride1_without_maxpool_and_last_map_is_4x4() -> None:
    model = timm.create_model("resnet18_cifar", num_classes=0).eval()
    assert isinstance(model, CifarResNet)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.padding == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)


@pytest.mark.parametrize("name, imagenet_name", [("resnet18_cifar", "resnet18"), ("resnet50_cifar", "resnet50")])
def test_parameter_count_is_timms_resnet_minus_the_stem_difference(name: str, imagenet_name: str) -> None:
    ours = timm.create_model(name, num_classes=0)
    ref = timm.create_model(imagenet_name, num_classes=0)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    stem_width = ref.conv1.out_channels
    stem_difference = (7 * 7 - 3 * 3) * 3 * stem_width
    assert n_ours == n_ref - stem_difference


def test_num_classes_global_pool_and_drop_path_behave_as_in_timm() -> None:
    with_head = timm.create_model("resnet18_cifar", num_classes=10).eval()
    assert with_head(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    default_head = timm.create_model("resnet18_cifar")
    assert default_head.num_classes == 10  # the cfg's CIFAR-10 default
    catpool = timm.create_model("resnet18_cifar", num_classes=0, global_pool="catavgmax").eval()
    assert catpool(torch.randn(2, 3, 32, 32)).shape == (2, 1024)
    drop = timm.create_model("resnet18_cifar", num_classes=0, drop_path_rate=0.1)
    rates = [m.drop_prob for m in drop.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.1)
    one_channel = timm.create_model("resnet18_cifar", num_classes=0, in_chans=1).eval()
    assert one_channel(torch.randn(2, 1, 32, 32)).shape == (2, 512)


def test_features_only_reports_cifar_reductions() -> None:
    model = timm.create_model("resnet18_cifar", features_only=True).eval()
    maps = model(torch.randn(1, 3, 32, 32))
    assert model.feature_info.reduction() == [1, 1, 2, 4, 8]
    assert [m.shape[-1] for m in maps] == [32 // r for r in model.feature_info.reduction()]


def test_pretrained_cfg_describes_cifar_input() -> None:
    cfg = timm.create_model("resnet18_cifar").pretrained_cfg
    assert cfg["input_size"] == (3, 32, 32)
    assert tuple(cfg["mean"]) == CIFAR10_MEAN and tuple(cfg["std"]) == CIFAR10_STD
    data_cfg = timm.data.resolve_data_config({}, model=timm.create_model("resnet18_cifar"))
    assert data_cfg["input_size"] == (3, 32, 32)


def test_deep_stem_is_rejected() -> None:
    with pytest.raises(ValueError, match="stem_type"):
        timm.create_model("resnet18_cifar", stem_type="deep")


def test_a_stem_width_timm_would_ignore_is_rejected_and_channels_set_the_stages() -> None:
    with pytest.raises(ValueError, match="stem_width must be 64.*got 32"):
        timm.create_model("resnet18_cifar", stem_width=32)
    narrow = timm.create_model("resnet18_cifar", stem_width=64, channels=(32, 64, 128, 256), num_classes=0)
    assert narrow.conv1.out_channels == 64 and narrow.layer1[0].conv1.out_channels == 32
    assert narrow(torch.randn(2, 3, 32, 32)).shape == (2, 256)
