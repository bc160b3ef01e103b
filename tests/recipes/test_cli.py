import argparse
import io

import pytest

from _cli import (add_backbone_arguments, add_data_arguments, checkpointable_args, create_with_backbone_kwargs,
                  embedded_data_notice, run_cli)


def _backbone_kwargs(*items: str) -> dict:
    parser = argparse.ArgumentParser()
    add_backbone_arguments(parser)  # type: ignore[arg-type]  # a parser takes arguments as a group does
    return parser.parse_args(["--backbone-kwargs", *items]).backbone_kwargs


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


def test_backbone_kwargs_are_timms_model_kwargs_python_literals_or_strings() -> None:
    from timm.utils import ParseKwargs

    items = ["zero_init_last=False", "drop_path_rate=0.1", "channels=(8, 16)", "act_layer=gelu", "depth=3", "name="]
    parsed = _backbone_kwargs(*items)
    assert parsed == {"zero_init_last": False, "drop_path_rate": 0.1, "channels": (8, 16), "act_layer": "gelu",
                      "depth": 3, "name": ""}
    assert type(parsed["depth"]) is int and _backbone_kwargs() == {}
    timm_parser = argparse.ArgumentParser()  # the oracle: timm's own --model-kwargs action
    timm_parser.add_argument("--model-kwargs", nargs="*", default={}, action=ParseKwargs)
    assert timm_parser.parse_args(["--model-kwargs", *items]).model_kwargs == parsed


@pytest.mark.parametrize("item", ["no_equals", "=1", "two words=1", "1x=2"])
def test_malformed_backbone_kwargs_name_the_option(item: str) -> None:
    with pytest.raises(ValueError, match=r"--backbone-kwargs takes KEY=VALUE"):
        _backbone_kwargs(item)


def test_create_with_backbone_kwargs_names_them_when_they_do_not_fit() -> None:
    import timm

    import lightly_siamese_ext  # noqa: F401  # registers the CIFAR models

    model = create_with_backbone_kwargs(timm.create_model, "resnet18_cifar",
                                        {"num_classes": 0, "channels": (8, 8, 8, 16)})
    assert model.num_classes == 0 and model.num_features == 16
    with pytest.raises(ValueError, match=r"--backbone-kwargs chanels=\(8,\) do not fit --backbone resnet18_cifar"):
        create_with_backbone_kwargs(timm.create_model, "resnet18_cifar", {"chanels": (8,)})


def test_backbone_kwargs_that_break_the_builder_are_named_and_other_value_errors_pass() -> None:
    import lightly_siamese_ext as lse

    # Two stages where CifarResNet has four: building SimSiam on it fails with an AttributeError, not a TypeError.
    with pytest.raises(ValueError, match=r"--backbone-kwargs channels=\(8, 16\) do not fit --backbone resnet18_cifar"):
        create_with_backbone_kwargs(lse.SimSiam, "resnet18_cifar", {"channels": (8, 16)})
    with pytest.raises(ValueError, match="must be a positive int, got 0") as caught:  # the model's own error
        create_with_backbone_kwargs(lse.SimSiam, "resnet18_cifar", {"zero_init_last": False}, proj_dim=0)
    assert "--backbone-kwargs" not in str(caught.value)


def test_errors_of_the_machine_and_of_ranks_are_one_line_too(tmp_path) -> None:
    import errno
    import os
    import signal
    import time

    from lightly_siamese_ext.training.distributed import RankFailedError

    def fail_with(error: BaseException):
        def fail() -> None:
            raise error

        return fail

    cases = [
        (OSError(errno.ENOSPC, "could not write runs/x/last.pt: No space left on device"),
         "error: could not write runs/x/last.pt: No space left on device\n"),
        (PermissionError(errno.EACCES, "Permission denied", "/runs/x/metrics.png"),
         "error: Permission denied: /runs/x/metrics.png\n"),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                      "you tried to allocate 4000 bytes."),
         "error: out of memory: DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000 bytes. (a "
         "smaller --batch-size or --input-size needs less)\n"),
        (RankFailedError("rank 1 (pid 7) failed: ...\n\nTraceback", 1, 7, ValueError("the loss became nan")),
         "error: the loss became nan (rank 1; the other ranks were stopped)\n"),
        (RankFailedError("rank 1 (pid 7) was killed by SIGKILL; the other ranks were stopped", 1, 7, None),
         "error: rank 1 (pid 7) was killed by SIGKILL; the other ranks were stopped\n"),
    ]
    for error, expected in cases:
        stderr = io.StringIO()
        assert run_cli(fail_with(error), stderr=stderr) == 2
        assert stderr.getvalue() == expected
    bug = RankFailedError("rank 0 (pid 7) failed: KeyError: 'x'\n\nTraceback ...", 0, 7, KeyError("x"))
    with pytest.raises(RankFailedError):  # a bug in a rank keeps its traceback
        run_cli(fail_with(bug))
    with pytest.raises(OSError):  # an OSError the machine did not cause is a bug
        run_cli(fail_with(OSError(errno.EBADF, "Bad file descriptor")))

    stderr = io.StringIO()
    assert run_cli(lambda: os.kill(os.getpid(), signal.SIGTERM) or time.sleep(5), stderr=stderr) == 143
    assert stderr.getvalue() == "error: stopped by SIGTERM\n"
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C shows where the run was
        run_cli(fail_with(KeyboardInterrupt()))


def test_a_model_that_cannot_be_built_on_the_meta_device_gets_no_estimate() -> None:
    import torch

    from _cli import check_memory

    def reads_a_value():
        torch.zeros(1).item()  # what some models do while they are built: not possible on the meta device
        return torch.nn.Linear(2, 2)

    assert check_memory(reads_a_value, torch.device("cpu"), 1, 10, 1, "--x") is False
    assert check_memory(lambda: torch.nn.Linear(2, 2), torch.device("cpu"), 1, 10, 1, "--x") is True
    with pytest.raises(ValueError, match="named by the model"):
        check_memory(lambda: (_ for _ in ()).throw(ValueError("named by the model")), torch.device("cpu"), 1, 1, 1,
                     "--x")
