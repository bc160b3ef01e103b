import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lightly_siamese_ext as lse

from conftest import RECIPES, SIMSIAM_TINY, one_line_error

# A configuration that runs in seconds on a CPU: 8px digits, a narrow head, a small subset.
TINY = ["--subset", "128", "--batch-size", "32", "--input-size", "8", "--proj-dim", "32", "--pred-hidden-dim", "8",
        "--linear-epochs", "3", "--eval-every", "1", "--knn-k", "20", "--no-progress", "--no-baselines",
        "--threads", "1"]


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def test_tiny_run_writes_metrics_plot_checkpoint_and_summary(simsiam_recipe, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert simsiam_recipe.main([*TINY, "--epochs", "2", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "EMBEDDED scikit-learn digits" in printed and "SMOKE RUN" in printed
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(float(r["collapse_std"]) > 0 for r in rows)
    # The rate each epoch trained at (paper cosine, epoch e at 0.5 * (1 + cos(pi * e / 2))), not the next one's.
    peak = 0.03 * 32 / 256
    assert [float(r["lr"]) for r in rows] == pytest.approx([peak, peak * 0.5])
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    payload = torch.load(out / "last.pt", weights_only=True)
    assert payload["epoch"] == 2 and payload["extra"]["args"]["epochs"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["embedded_smoke_run"] is True
    assert 0.0 <= summary["knn"]["top1"] <= 1.0 and 0.0 <= summary["linear"]["top1"] <= 1.0
    assert summary["train_flops_per_image"] > 0


def test_paper_defaults(simsiam_recipe) -> None:
    args = simsiam_recipe.parse_args([])
    simsiam_recipe.resolve_defaults(args, embedded=False)
    assert (args.backbone, args.proj_layers, args.proj_dim, args.pred_hidden_dim) == ("resnet18_cifar", 2, 2048, 512)
    assert (args.epochs, args.batch_size, args.input_size) == (800, 512, 32)
    assert (args.base_lr, args.momentum, args.weight_decay, args.gaussian_blur) == (0.03, 0.9, 5e-4, 0.0)
    assert args.min_scale == 0.2 and args.knn_k == 200 and args.knn_t == 0.1


def test_kill_and_resume_gives_the_same_weights_as_a_straight_run(simsiam_recipe, tmp_path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = [*TINY, "--epochs", "2", "--linear-epochs", "0"]
    assert simsiam_recipe.main([*common, "--out-dir", str(straight)]) == 0
    assert simsiam_recipe.main([*common, "--out-dir", str(resumed), "--stop-after-epoch", "1"]) == 0
    assert torch.load(resumed / "last.pt", weights_only=True)["epoch"] == 1
    torch.manual_seed(1234)  # a fresh process would start from other global random states
    assert simsiam_recipe.main([*common, "--out-dir", str(resumed), "--resume"]) == 0
    for key, value in _weights(straight / "last.pt").items():
        torch.testing.assert_close(_weights(resumed / "last.pt")[key], value, rtol=0, atol=0, msg=key)
    with (straight / "metrics.csv").open() as a, (resumed / "metrics.csv").open() as b:
        losses = [[row["loss"] for row in csv.DictReader(f)] for f in (a, b)]
    assert losses[0] == losses[1]


def test_backbone_kwargs_reach_timm_and_the_checkpoint(simsiam_recipe, linear_eval_recipe, tmp_path) -> None:
    out = tmp_path / "narrow"
    kwargs = ["channels=(8, 16, 32, 64)", "zero_init_last=False"]
    assert simsiam_recipe.main([*TINY, "--epochs", "1", "--linear-epochs", "0", "--backbone-kwargs", *kwargs,
                                "--out-dir", str(out)]) == 0
    payload = torch.load(out / "last.pt", weights_only=True)
    assert payload["extra"]["args"]["backbone_kwargs"] == {"channels": (8, 16, 32, 64), "zero_init_last": False}
    weights = payload["model"]
    assert weights["backbone.layer4.1.conv2.weight"].shape == (64, 64, 3, 3)  # timm got the narrow channels
    assert weights["projection_head.layers.0.weight"].shape[1] == 64
    # timm zero-initialises each block's last BN unless told not to; the trained weights moved from 1.
    assert weights["backbone.layer1.0.bn2.weight"].abs().min() > 0.5
    default = simsiam_recipe.build_model(simsiam_recipe.parse_args([]))
    assert torch.count_nonzero(default.backbone.layer1[0].bn2.weight) == 0
    # linear_eval.py rebuilds the same architecture from the checkpoint alone (a size mismatch otherwise).
    assert linear_eval_recipe.main(["--checkpoint", str(out / "last.pt"), "--epochs", "1", "--threads", "1",
                                    "--no-progress", "--out-dir", str(tmp_path / "linear")]) == 0
    assert linear_eval_recipe.main(["--checkpoint", str(out / "last.pt"), "--backbone-kwargs", "drop_rate=0.1",
                                    "--out-dir", str(tmp_path / "refused")]) == 2
    # A checkpoint written before the recipes parsed --backbone-kwargs into a dict holds the KEY=VALUE list.
    payload["extra"]["args"]["backbone_kwargs"] = kwargs
    torch.save(payload, tmp_path / "old_format.pt")
    assert linear_eval_recipe.main(["--checkpoint", str(tmp_path / "old_format.pt"), "--epochs", "1", "--threads",
                                    "1", "--no-progress", "--out-dir", str(tmp_path / "old")]) == 0


def test_lightly_pipeline_trains_on_lightlys_views(simsiam_recipe, tmp_path) -> None:
    out = tmp_path / "lightly"
    assert simsiam_recipe.main([*TINY, "--epochs", "1", "--pipeline", "lightly", "--num-workers", "0",
                                "--linear-epochs", "0", "--out-dir", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["pipeline"] == "lightly"
    with (out / "metrics.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    # Lightly's transform produced two views per image: the step ran on them (a real loss, a real rate).
    assert -1.0 <= float(row["loss"]) <= 1.0 and float(row["images_per_s"]) > 0
    assert float(row["collapse_std"]) > 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPES / "simsiam_cifar.py"), *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data-dir", "/nonexistent/cifar"], "does not exist"),
        (["--batch-size", "4096"], "larger than the training set"),
        (["--backbone", "resnet18_cifr", "--epochs", "1"], "unknown timm model"),
        (["--backbone-kwargs", "zero_init_lst=False"], "do not fit --backbone resnet18_cifar"),
        (["--backbone-kwargs", "zero_init_last"], "KEY=VALUE"),
    ],
)
def test_bad_arguments_end_with_one_line_error(args: list, message: str, tmp_path) -> None:
    result = _cli(*TINY, *args, "--out-dir", str(tmp_path))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip() and "gpuGetDeviceCount" not in line]
    assert len(errors) == 1 and errors[0].startswith("error:") and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_two_gloo_processes_agree_on_the_weights(tmp_path) -> None:
    out = tmp_path / "ddp"
    result = _cli(*TINY, "--epochs", "1", "--devices", "2", "--linear-epochs", "0", "--out-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"] == 2 and summary["ranks_agree"] is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["--devices", "0"], "--devices must be >= 1, got 0"),
        (["--devices", "-1"], "--devices must be >= 1, got -1"),
        (["--threads", "-1"], "--threads must be >= 1, got -1"),
        (["--base-lr", "0"], "--base-lr must be a finite number > 0, got 0.0"),
        (["--momentum", "-0.5"], "--momentum must be a finite number in [0, 1), got -0.5"),
        (["--knn-t", "0"], "--knn-t must be a finite number > 0, got 0.0"),
        (["--knn-k", "0"], "--knn-k must be >= 1"),
        (["--epochs", "2", "--stop-after-epoch", "0"], "--stop-after-epoch must be >= 1, got 0"),
        (["--linear-epochs", "-1"], "--linear-epochs must be >= 0, got -1"),
        (["--pipeline", "lightly", "--num-workers", "-1"], "--num-workers must be >= 0, got -1"),
        (["--backbone-kwargs", "channels=(8,16)"], "do not fit --backbone resnet18_cifar"),
    ],
)
def test_more_bad_arguments_are_refused_before_training(simsiam_recipe, args: list, message: str, tmp_path,
                                                        capsys) -> None:
    assert simsiam_recipe.main([*TINY, "--epochs", "1", *args, "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "last.pt").exists()


def test_an_out_dir_that_is_a_file_is_refused(simsiam_recipe, tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("")
    assert simsiam_recipe.main([*TINY, "--epochs", "1", "--out-dir", str(tmp_path / "file")]) == 2
    assert f"--out-dir {tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--proj-dim", "16"], "trained with --proj-dim 32 (now 16)"),  # the weights would not fit
        (["--epochs", "3"], "trained with --epochs 1 (now 3)"),  # the restored schedule ends after epoch 1
        (["--batch-size", "16"], "trained with --batch-size 32 (now 16)"),  # the restored lr is the old batch's
    ],
)
def test_resume_refuses_other_training_arguments(simsiam_recipe, simsiam_run, args: list, message: str, tmp_path,
                                                 capsys) -> None:
    shutil.copy(simsiam_run / "last.pt", tmp_path / "last.pt")
    assert simsiam_recipe.main([*SIMSIAM_TINY, *args, "--resume", "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_resume_from_a_corrupt_checkpoint_is_refused(simsiam_recipe, tmp_path, capsys) -> None:
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    assert simsiam_recipe.main([*TINY, "--epochs", "1", "--resume", "--out-dir", str(tmp_path)]) == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err


def test_resume_errors_of_a_multi_process_run_are_one_line(tmp_path) -> None:
    # Checked before the processes start: an error inside them comes back as a traceback of each.
    result = _cli(*TINY, "--epochs", "1", "--devices", "2", "--resume", "--out-dir", str(tmp_path))
    assert "--resume: no checkpoint at" in one_line_error(result)


def test_knn_k_larger_than_the_bank_is_reported_as_the_k_used(simsiam_recipe, tmp_path, capsys) -> None:
    assert simsiam_recipe.main([*TINY, "--epochs", "1", "--linear-epochs", "0", "--knn-k", "500",
                                "--out-dir", str(tmp_path)]) == 0
    assert "kNN (k=128, t=0.1)" in capsys.readouterr().out  # the bank is the 128 training images


def test_a_cpu_run_on_a_gpu_machine_launches_gloo_ranks(simsiam_recipe, tmp_path, monkeypatch) -> None:
    # launch() alone would pick NCCL whenever CUDA is present; --device cpu ranks cannot use it.
    seen = {}
    monkeypatch.setattr(simsiam_recipe, "launch", lambda fn, world_size, args, backend: seen.update(backend=backend))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert simsiam_recipe.main([*TINY, "--epochs", "1", "--device", "cpu", "--out-dir", str(tmp_path)]) == 0
    assert seen == {"backend": "gloo"}


def test_the_collapse_warning_names_the_epoch_and_the_std_and_only_fires_on_collapse(simsiam_recipe, capsys) -> None:
    monitor = lse.CollapseMonitor()
    monitor.update(torch.ones(64, 32) + 1e-4 * torch.randn(64, 32))  # every output the same direction
    simsiam_recipe.warn_if_collapsed(monitor, epoch=4)
    line = capsys.readouterr().out
    assert line.startswith("WARNING: representations look collapsed at epoch 5: std of the normalised projections "
                           f"is {monitor.compute():.4f}, {monitor.ratio:.2f} of the healthy"), line
    healthy = lse.CollapseMonitor()
    healthy.update(torch.randn(512, 32))
    simsiam_recipe.warn_if_collapsed(healthy, epoch=0)
    assert capsys.readouterr().out == ""
