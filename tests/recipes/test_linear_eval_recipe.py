import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import lightly_siamese_ext as lse
from conftest import RECIPES, one_line_error
from lightly_siamese_ext.training import save_checkpoint

COMMON = ["--threads", "1", "--no-progress"]


def _simsiam(run_dir: Path) -> lse.SimSiam:
    payload = torch.load(run_dir / "last.pt", weights_only=True)
    trained = payload["extra"]["args"]
    model = lse.SimSiam(trained["backbone"], proj_layers=trained["proj_layers"], proj_dim=trained["proj_dim"],
                        pred_hidden_dim=trained["pred_hidden_dim"])
    model.load_state_dict(payload["model"])
    return model


def _held_out(input_size: int) -> tuple:
    """Features-free ground truth: the digits' held-out split as simsiam_cifar.py builds it (16px, 30 per class)."""
    test = lse.load_train_test(embedded_size=16).test
    return test.images, test.labels, lse.BatchedEvalTransform(input_size, lse.CIFAR10_NORMALIZE)


def _top_k(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    return float((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).double().mean())


def test_features_protocol_reproduces_the_probe_simsiam_printed(linear_eval_recipe, simsiam_run, tmp_path) -> None:
    out = tmp_path / "features"
    assert linear_eval_recipe.main(["--checkpoint", str(simsiam_run / "last.pt"), "--epochs", "3", *COMMON,
                                    "--out-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    trained = json.loads((simsiam_run / "summary.json").read_text())
    for k in ("top1", "top5"):
        assert summary["linear"][k] == pytest.approx(trained["linear"][k], abs=1e-6)
    # The training run's data arguments were taken from the checkpoint: same split, same 128-image subset.
    assert summary["data"] == trained["data"] and summary["train_images"] == 128 and summary["eval_images"] == 300
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["epoch"] == "3"
    assert (out / "per_class.png").read_bytes()[:4] == b"\x89PNG"

    # Recompute the accuracy from the two checkpoints alone: the SimSiam backbone and the saved classifier.
    images, labels, preprocess = _held_out(input_size=8)
    features = lse.extract_features(_simsiam(simsiam_run).embed, images, preprocess=preprocess)[0]
    payload = torch.load(out / "last.pt", weights_only=True)
    classifier = nn.Sequential(nn.BatchNorm1d(features.shape[1], affine=False, eps=1e-6),
                               nn.Linear(features.shape[1], 10)).eval()
    classifier.load_state_dict(payload["model"])
    with torch.no_grad():
        logits = classifier(features)
    assert _top_k(logits, labels, 1) == pytest.approx(summary["linear"]["top1"], abs=1e-9)
    assert _top_k(logits, labels, 5) == pytest.approx(summary["linear"]["top5"], abs=1e-9)
    per_class = torch.tensor(list(summary["per_class_top1"].values()))
    assert per_class.mean().item() == pytest.approx(summary["linear"]["top1"])  # 30 images per class


def test_lightly_protocol_trains_a_head_on_the_frozen_backbone(linear_eval_recipe, simsiam_run, tmp_path) -> None:
    out = tmp_path / "lightly"
    assert linear_eval_recipe.main(["--checkpoint", str(simsiam_run / "last.pt"), "--protocol", "lightly",
                                    "--epochs", "2", "--batch-size", "64", *COMMON, "--out-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert all(0.0 <= float(row["top1"]) <= float(row["top5"]) <= 1.0 for row in rows)
    assert float(rows[-1]["top1"]) == pytest.approx(summary["linear"]["top1"], abs=1e-6)
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    payload = torch.load(out / "last.pt", weights_only=True)
    assert payload["epoch"] == 2 and payload["model"]["weight"].shape == (10, 512)

    # A backbone freshly loaded from the SimSiam checkpoint gives the same accuracy with the saved head: the
    # backbone was frozen (weights and batch-norm statistics) while lightly's classifier trained.
    images, labels, preprocess = _held_out(input_size=8)
    features = lse.extract_features(_simsiam(simsiam_run).embed, images, preprocess=preprocess)[0]
    head = nn.Linear(512, 10)
    head.load_state_dict(payload["model"])
    with torch.no_grad():
        assert _top_k(head(features), labels, 1) == pytest.approx(summary["linear"]["top1"], abs=1e-6)


@pytest.mark.parametrize("cli_kwargs, kwargs", [([], {}), (["channels=(8, 16, 32, 64)", "zero_init_last=False"],
                                                             {"channels": (8, 16, 32, 64), "zero_init_last": False})])
def test_random_init_needs_the_flag_and_is_the_seeded_model(linear_eval_recipe, tmp_path, capsys, cli_kwargs: list,
                                                            kwargs: dict) -> None:
    small = ["--subset", "64", "--input-size", "8", "--epochs", "2", *COMMON,
             *(["--backbone-kwargs", *cli_kwargs] if cli_kwargs else [])]
    assert linear_eval_recipe.main([*small, "--out-dir", str(tmp_path / "refused")]) == 2
    assert "--allow-random-init" in capsys.readouterr().err
    out = tmp_path / "random"
    assert linear_eval_recipe.main([*small, "--allow-random-init", "--out-dir", str(out)]) == 0
    assert "NOT trained" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint"] is None and summary["pretrain_epochs"] == 0
    torch.manual_seed(0)  # what simsiam_cifar.py's random-init baseline builds
    backbone = lse.SimSiam("resnet18_cifar", **kwargs).embed
    images, labels, preprocess = _held_out(input_size=8)
    features = lse.extract_features(backbone, images, preprocess=preprocess)[0]
    width = features.shape[1]
    assert width == (64 if kwargs else 512)
    classifier = nn.Sequential(nn.BatchNorm1d(width, affine=False, eps=1e-6), nn.Linear(width, 10)).eval()
    classifier.load_state_dict(torch.load(out / "last.pt", weights_only=True)["model"])
    with torch.no_grad():
        assert _top_k(classifier(features), labels, 1) == pytest.approx(summary["linear"]["top1"], abs=1e-9)


def test_a_checkpoint_of_another_recipe_is_refused(linear_eval_recipe, tmp_path, capsys) -> None:
    other = tmp_path / "other.pt"
    save_checkpoint(other, model=nn.Linear(2, 2), epoch=1, extra={"args": {"epochs": 1}})
    assert linear_eval_recipe.main(["--checkpoint", str(other), "--out-dir", str(tmp_path / "x")]) == 2
    assert "was not written by simsiam_cifar.py" in capsys.readouterr().err


def test_missing_checkpoint_ends_with_one_line_error(tmp_path) -> None:
    result = subprocess.run([sys.executable, str(RECIPES / "linear_eval.py"), "--checkpoint",
                             str(tmp_path / "missing.pt"), "--out-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert "does not exist" in one_line_error(result)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "-1"], "--threads must be >= 1, got -1"),
        (["--num-workers", "-1"], "--num-workers must be >= 0, got -1"),
        (["--out-dir", "FILE"], "is a file, not a folder"),
    ],
)
def test_bad_run_arguments_are_refused(linear_eval_recipe, simsiam_run, tmp_path, capsys, args: list,
                                       message: str) -> None:
    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / "FILE") if arg == "FILE" else arg for arg in args]
    assert linear_eval_recipe.main(["--checkpoint", str(simsiam_run / "last.pt"), "--out-dir", str(tmp_path / "x"),
                                    *args]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_given_as_checkpoint_is_named_as_such(linear_eval_recipe, tmp_path, capsys) -> None:
    assert linear_eval_recipe.main(["--checkpoint", str(tmp_path), "--out-dir", str(tmp_path / "x")]) == 2
    assert f"--checkpoint {tmp_path} is a folder, not a checkpoint file" in capsys.readouterr().err
