import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from sklearn.metrics import roc_auc_score

import lightly_siamese_ext as lse
from conftest import RECIPES, one_line_error
from lightly_siamese_ext.data import load_digits_arrays
from lightly_siamese_ext.evaluation import sample_one_shot_trials

# Seconds on a CPU: timm's tiny test_resnet (0.4 M parameters), 8px digits, 128 training images, a narrow head,
# 20 held-out images per class.
TINY = ["--backbone", "test_resnet", "--input-size", "8",
        "--embedding-dim", "8", "--hidden-dim", "16", "--batch-size", "16", "--subset", "128",
        "--eval-per-class", "20", "--trials", "300", "--threads", "1", "--no-progress", "--lr", "3e-3"]
EPOCHS = 3


@pytest.fixture(scope="module")
def straight_run(siamese_recipe: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("siamese") / "straight"
    assert siamese_recipe.main([*TINY, "--epochs", str(EPOCHS), "--out-dir", str(out)]) == 0
    return out


def _rows(path: Path) -> list:
    with (path / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def _held_out_digits(per_class: int = 20) -> tuple:
    """Independently of the recipe: the first `per_class` 8px digits of each of 7, 8, 9."""
    digits = load_digits_arrays(8)
    keep = torch.cat([(digits.labels == c).nonzero().squeeze(1)[:per_class] for c in (7, 8, 9)]).sort().values
    return digits.images[keep], digits.labels[keep]


def test_tiny_run_writes_its_outputs_and_holds_out_the_test_classes(straight_run: Path, capsys) -> None:
    rows = _rows(straight_run)
    assert [row["epoch"] for row in rows] == [str(e) for e in range(1, EPOCHS + 1)]
    assert (straight_run / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert torch.load(straight_run / "last.pt", weights_only=True)["epoch"] == EPOCHS
    summary = json.loads((straight_run / "summary.json").read_text())
    assert summary["embedded_smoke_run"] is True
    assert summary["train_classes"] == [str(d) for d in range(7)] and summary["test_classes"] == ["7", "8", "9"]
    assert summary["train_images"] == 128 and summary["eval_images"] == 60
    for key in ("trained", "trained_backbone", "random_init", "random_init_backbone", "raw_pixels"):
        assert 0.0 <= summary[key]["auc"] <= 1.0 and 0.0 <= summary[key]["one_shot"] <= 1.0
    assert float(rows[-1]["auc"]) == pytest.approx(summary["trained"]["auc"], abs=1e-5)


def test_loss_falls_and_same_class_pairs_end_closer(straight_run: Path) -> None:
    rows = _rows(straight_run)
    assert float(rows[-1]["loss"]) < 0.8 * float(rows[0]["loss"])
    assert float(rows[-1]["same_distance"]) < float(rows[-1]["different_distance"])


def test_held_out_metrics_match_a_recomputation_from_the_checkpoint(straight_run: Path) -> None:
    payload = torch.load(straight_run / "last.pt", weights_only=True)
    args = payload["extra"]["args"]
    model = lse.SiameseNetwork(args["backbone"], embedding_dim=args["embedding_dim"], hidden_dim=args["hidden_dim"],
                               normalize=args["normalize"], distance=args["distance"])
    model.load_state_dict(payload["model"])
    images, labels = _held_out_digits()
    preprocess = lse.BatchedEvalTransform(8, lse.CIFAR10_NORMALIZE)
    embeddings = lse.extract_features(model.embed, images, preprocess=preprocess)[0]
    summary = json.loads((straight_run / "summary.json").read_text())

    rows, cols = torch.triu_indices(60, 60, 1)
    distances = torch.cdist(embeddings.double(), embeddings.double())[rows, cols]
    same = (labels[rows] == labels[cols]).numpy()
    assert roc_auc_score(same, -distances.numpy()) == pytest.approx(summary["trained"]["auc"], abs=1e-4)

    # One-shot: the recipe's trials (seeded), scored by a loop here.
    queries, supports = sample_one_shot_trials(labels, 3, 300, torch.Generator().manual_seed(args["seed"]))
    correct = 0
    for query, support in zip(queries.tolist(), supports.tolist()):
        distance = [float((embeddings[query] - embeddings[s]).norm()) for s in support]
        correct += distance.index(min(distance)) == 0
    assert correct / 300 == pytest.approx(summary["trained"]["one_shot"], abs=1e-9)


def test_kill_and_resume_gives_the_same_weights(siamese_recipe: ModuleType, straight_run: Path, tmp_path) -> None:
    resumed = tmp_path / "resumed"
    common = [*TINY, "--epochs", str(EPOCHS), "--out-dir", str(resumed), "--no-baselines"]
    assert siamese_recipe.main([*common, "--stop-after-epoch", "1"]) == 0
    assert torch.load(resumed / "last.pt", weights_only=True)["epoch"] == 1
    torch.manual_seed(1234)  # a fresh process starts from other global random states
    assert siamese_recipe.main([*common, "--resume"]) == 0
    expected = torch.load(straight_run / "last.pt", weights_only=True)["model"]
    for key, value in torch.load(resumed / "last.pt", weights_only=True)["model"].items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    assert [row["loss"] for row in _rows(resumed)] == [row["loss"] for row in _rows(straight_run)]


def test_pair_batches_mix_same_and_different_pairs(siamese_recipe: ModuleType) -> None:
    labels = torch.arange(96) % 4
    generator = torch.Generator().manual_seed(5)
    batches = list(siamese_recipe.pair_batches(labels, 16, 0.25, seed=0, epoch=3, generator=generator))
    first = torch.cat([b[0] for b in batches])
    assert len(batches) == 6 and sorted(first.tolist()) == list(range(96))  # every image once as the first
    for a, b, same in batches:
        assert torch.equal(labels[a] == labels[b], same) and not torch.equal(a, b)
    assert int(torch.cat([b[2] for b in batches]).sum()) == 24  # exactly a quarter same-class pairs
    # Each batch mixes both kinds (a batch of one kind teaches nothing about telling them apart).
    assert all(0 < int(same.sum()) < 16 for _, _, same in batches)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-way", "4"], "--n-way must be in [2, 3]"),
        (["--batch-size", "4096"], "more than the training set"),
        (["--test-classes", "1,2,3,4,5,6,7,8,9"], "training side"),
        (["--positive-fraction", "1.5"], "--positive-fraction"),
        (["--threads", "-1"], "--threads must be >= 1, got -1"),
        (["--epochs", "2", "--stop-after-epoch", "0"], "--stop-after-epoch must be >= 1, got 0"),
        (["--eval-per-class", "1"], "--eval-per-class must be >= 2"),  # no same-class pair to verify
        (["--backbone-kwargs", "nonsense=1"], "--backbone-kwargs nonsense=1 do not fit --backbone test_resnet"),
    ],
)
def test_bad_arguments_are_refused_before_training(siamese_recipe, args, message, tmp_path, capsys) -> None:
    assert siamese_recipe.main([*TINY, *args, "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "last.pt").exists()


def test_unknown_test_class_ends_with_one_line_error(tmp_path) -> None:
    result = subprocess.run([sys.executable, str(RECIPES / "siamese_pairs.py"), *TINY, "--test-classes", "7,8,11",
                             "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert "class index 11 is out of range" in one_line_error(result)


def test_an_out_dir_that_is_a_file_is_refused(siamese_recipe, tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("")
    assert siamese_recipe.main([*TINY, "--epochs", "1", "--out-dir", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_resume_refuses_other_training_arguments(siamese_recipe, straight_run: Path, tmp_path, capsys) -> None:
    shutil.copy(straight_run / "last.pt", tmp_path / "last.pt")
    common = [*TINY, "--epochs", str(EPOCHS), "--resume", "--out-dir", str(tmp_path), "--no-baselines"]
    assert siamese_recipe.main([*common, "--margin", "0.5"]) == 2  # the loss would change mid-run
    assert "trained with --margin 1.0 (now 0.5)" in capsys.readouterr().err
    assert siamese_recipe.main([*common, "--trials", "100"]) == 0  # evaluation arguments may change


def test_backbone_kwargs_reach_timm_and_the_checkpoint(siamese_recipe, tmp_path) -> None:
    # test_resnet's last stage is 96 wide; the embedding head's first layer reads the backbone's width.
    assert siamese_recipe.main([*TINY, "--epochs", "1", "--no-baselines", "--backbone-kwargs", "channels=(8,8,8,24)",
                                 "--out-dir", str(tmp_path)]) == 0
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    assert payload["model"]["embedding_head.layers.0.weight"].shape == (16, 24)
    assert payload["extra"]["args"]["backbone_kwargs"] == {"channels": (8, 8, 8, 24)}
