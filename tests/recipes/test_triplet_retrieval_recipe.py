import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import lightly_siamese_ext as lse
from conftest import RECIPES, one_line_error
from lightly_siamese_ext.data import load_digits_arrays

# Seconds on a CPU: timm's tiny test_resnet (0.4 M parameters), 8px digits, 4 x 8 batches from 160 training images,
# 20 held-out images per class.
TINY = ["--backbone", "test_resnet", "--input-size", "8",
        "--embedding-dim", "8", "--hidden-dim", "16", "--p", "4", "--k", "8", "--subset", "160",
        "--eval-per-class", "20", "--threads", "1", "--no-progress", "--lr", "3e-3"]
EPOCHS = 4


@pytest.fixture(scope="module")
def run_dir(triplet_recipe: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triplet")
    # Averaged over all valid triplets, the loss must fall (averaged over the active ones it need not).
    assert triplet_recipe.main([*TINY, "--mean-over", "valid", "--epochs", str(EPOCHS), "--out-dir", str(out)]) == 0
    return out


def _rows(path: Path) -> list:
    with (path / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_tiny_run_writes_its_outputs_and_holds_out_the_test_classes(run_dir: Path) -> None:
    rows = _rows(run_dir)
    assert [row["epoch"] for row in rows] == [str(e) for e in range(1, EPOCHS + 1)]
    assert (run_dir / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    payload = torch.load(run_dir / "last.pt", weights_only=True)
    assert payload["epoch"] == EPOCHS and payload["extra"]["args"]["mining"] == "batch_all"  # the default
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["train_classes"]).isdisjoint(summary["test_classes"])
    assert summary["test_classes"] == ["7", "8", "9"] and summary["eval_images"] == 60
    assert summary["images_per_batch"] == 32
    for key in ("trained", "trained_backbone", "random_init", "random_init_backbone", "raw_pixels"):
        result = summary[key]
        assert 0.0 <= result["map@r"] <= result["recall@1"] <= result["recall@4"] <= result["recall@16"] <= 1.0
    assert float(rows[-1]["map@r"]) == pytest.approx(summary["trained"]["map@r"], abs=1e-5)


def test_metrics_log_the_learning_rate_each_epoch_trained_at(run_dir: Path) -> None:
    lrs = [float(row["lr"]) for row in _rows(run_dir)]
    # --lr 3e-3, no warmup, the paper's per-epoch cosine: epoch e (from 0) trains at 0.5 * (1 + cos(pi * e / E)).
    assert lrs == pytest.approx([3e-3 * 0.5 * (1 + math.cos(math.pi * e / EPOCHS)) for e in range(EPOCHS)])


def test_loss_falls(run_dir: Path) -> None:
    losses = [float(row["loss"]) for row in _rows(run_dir)]
    assert losses[-1] < 0.8 * losses[0]


def test_retrieval_metrics_match_a_brute_force_recomputation(run_dir: Path) -> None:
    payload = torch.load(run_dir / "last.pt", weights_only=True)
    args = payload["extra"]["args"]
    model = lse.SiameseNetwork(args["backbone"], embedding_dim=args["embedding_dim"], hidden_dim=args["hidden_dim"],
                               normalize=args["normalize"])
    model.load_state_dict(payload["model"])
    digits = load_digits_arrays(8)
    keep = torch.cat([(digits.labels == c).nonzero().squeeze(1)[:20] for c in (7, 8, 9)]).sort().values
    labels = digits.labels[keep].tolist()
    embeddings = lse.extract_features(model.embed, digits.images[keep],
                                      preprocess=lse.BatchedEvalTransform(8, lse.CIFAR10_NORMALIZE))[0].double()
    recall = {1: 0.0, 4: 0.0, 16: 0.0}
    average_precision = 0.0
    for i, label in enumerate(labels):
        others = sorted((float((embeddings[i] - embeddings[j]).norm()), j) for j in range(60) if j != i)
        relevant = [labels[j] == label for _, j in others]
        for k in recall:
            recall[k] += any(relevant[:k]) / 60
        r = sum(relevant)
        hits = 0
        for rank, is_relevant in enumerate(relevant[:r], start=1):
            hits += is_relevant
            average_precision += is_relevant * hits / rank / r / 60
    summary = json.loads((run_dir / "summary.json").read_text())["trained"]
    for k, value in recall.items():
        assert summary[f"recall@{k}"] == pytest.approx(value, abs=1e-9)
    assert summary["map@r"] == pytest.approx(average_precision, abs=1e-9)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--p", "8"], "--p must be in [2, 7]"),
        (["--k", "1"], "--k must be >= 2"),
        (["--mining", "semi_hard", "--margin", "0"], "> 0 with --mining semi_hard"),
        (["--eval-per-class", "5"], "Recall@16 needs more than 16 held-out images"),
        (["--k", "100"], "--p x --k: a batch draws 400 images"),  # the recipe has no --batch-size
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--backbone-kwargs", "nonsense=1"], "--backbone-kwargs nonsense=1 do not fit --backbone test_resnet"),
    ],
)
def test_bad_arguments_are_refused_before_training(triplet_recipe, args, message, tmp_path, capsys) -> None:
    assert triplet_recipe.main([*TINY, *args, "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "last.pt").exists()


def test_missing_data_dir_ends_with_one_line_error(tmp_path) -> None:
    result = subprocess.run([sys.executable, str(RECIPES / "triplet_retrieval.py"), *TINY, "--data-dir",
                             str(tmp_path / "nowhere"), "--out-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert "does not exist" in one_line_error(result)


def test_backbone_kwargs_reach_timm_and_the_checkpoint(triplet_recipe, tmp_path) -> None:
    # test_resnet's last stage is 96 wide; the embedding head's first layer reads the backbone's width.
    assert triplet_recipe.main([*TINY, "--epochs", "1", "--no-baselines", "--backbone-kwargs", "channels=(8,8,8,24)",
                                 "--out-dir", str(tmp_path)]) == 0
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    assert payload["model"]["embedding_head.layers.0.weight"].shape == (16, 24)
    assert payload["extra"]["args"]["backbone_kwargs"] == {"channels": (8, 8, 8, 24)}
