import io

import pytest

from lightly_siamese_ext.training.cli import (add_data_arguments, checkpointable_args, embedded_data_notice,
                                             parse_key_values, run_cli)


@pytest.mark.parametrize("error", [ValueError("bad --x\nsecond line"), FileNotFoundError("bad --x"),
                                   NotADirectoryError("bad --x")])
def test_user_errors_become_one_line_and_status_2(error: Exception) -> None:
    def fail() -> None:
        raise error

    stderr = io.StringIO()
    assert run_cli(fail, stderr=stderr) == 2
    assert stderr.getvalue() == "error: bad --x\n"


def test_success_and_bugs() -> None:
    assert run_cli(lambda: None) == 0
    with pytest.raises(KeyError):  # not a user error: keeps its traceback
        run_cli(lambda: {}["missing"])


def test_embedded_notice_is_loud_and_names_the_run() -> None:
    text = embedded_data_notice("a SMOKE RUN (3 epochs)")
    assert "EMBEDDED scikit-learn digits" in text and "a SMOKE RUN (3 epochs)" in text
    assert text.startswith("!" * 78)


def test_checkpointable_args_survive_a_weights_only_checkpoint(tmp_path) -> None:
    import argparse
    from pathlib import Path

    import torch

    args = argparse.Namespace(data_dir=Path("/data/cifar"), cache_dir=None, epochs=3, lr=0.1, resume=False)
    plain = checkpointable_args(args)
    assert plain == {"data_dir": "/data/cifar", "cache_dir": None, "epochs": 3, "lr": 0.1, "resume": False}
    torch.save({"args": plain}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["args"] == plain


def test_data_arguments_default_to_none_when_inherited() -> None:
    import argparse

    own, inheriting = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_data_arguments(own)
    add_data_arguments(inheriting, inherited_from="the checkpoint's")
    assert vars(own.parse_args([])) == {"data_dir": None, "download": False, "cache_dir": None}
    assert vars(inheriting.parse_args([])) == {"data_dir": None, "download": None, "cache_dir": None}
    assert inheriting.parse_args(["--download"]).download is True


def test_key_values_are_python_literals_or_strings() -> None:
    parsed = parse_key_values(["zero_init_last=False", "drop_path_rate=0.1", "channels=(8, 16)", "act_layer=gelu",
                               "depth=3", "name="], "--backbone-kwargs")
    assert parsed == {"zero_init_last": False, "drop_path_rate": 0.1, "channels": (8, 16), "act_layer": "gelu",
                      "depth": 3, "name": ""}
    assert type(parsed["depth"]) is int and parse_key_values([], "--x") == {}


@pytest.mark.parametrize("item", ["no_equals", "=1", "two words=1", "1x=2"])
def test_malformed_key_values_name_the_argument(item: str) -> None:
    with pytest.raises(ValueError, match=r"--backbone-kwargs takes KEY=VALUE"):
        parse_key_values([item], "--backbone-kwargs")


def test_create_with_backbone_kwargs_parses_them_and_names_them_when_they_do_not_fit() -> None:
    import timm

    from lightly_siamese_ext.training.cli import create_with_backbone_kwargs  # the package import registers the models

    model = create_with_backbone_kwargs(timm.create_model, "resnet18_cifar", ["num_classes=0", "channels=(8,8,8,16)"])
    assert model.num_classes == 0 and model.num_features == 16
    with pytest.raises(ValueError, match=r"--backbone-kwargs chanels=\(8,\) do not fit --backbone resnet18_cifar"):
        create_with_backbone_kwargs(timm.create_model, "resnet18_cifar", ["chanels=(8,)"])
    with pytest.raises(ValueError, match="--backbone-kwargs takes KEY=VALUE"):
        create_with_backbone_kwargs(timm.create_model, "resnet18_cifar", ["16"])


def test_backbone_kwargs_that_break_the_builder_are_named_and_other_value_errors_pass() -> None:
    import lightly_siamese_ext as lse
    from lightly_siamese_ext.training.cli import create_with_backbone_kwargs

    # Two stages where CifarResNet has four: building SimSiam on it fails with an AttributeError, not a TypeError.
    with pytest.raises(ValueError, match=r"--backbone-kwargs channels=\(8,16\) do not fit --backbone resnet18_cifar"):
        create_with_backbone_kwargs(lse.SimSiam, "resnet18_cifar", ["channels=(8,16)"])
    with pytest.raises(ValueError, match="must be a positive int, got 0") as caught:  # the model's own error
        create_with_backbone_kwargs(lse.SimSiam, "resnet18_cifar", ["zero_init_last=False"], proj_dim=0)
    assert "--backbone-kwargs" not in str(caught.value)
