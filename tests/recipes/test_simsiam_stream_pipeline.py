"""simsiam_cifar.py --pipeline stream: DataLoader workers decode, the training device augments, and the run trains on
exactly the batches of the resident pipeline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import NARROW_TINY as TINY



def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def _losses(path: Path) -> list:
    with (path / "metrics.csv").open() as handle:
        return [row["loss"] for row in csv.DictReader(handle)]


def test_stream_trains_on_the_resident_pipelines_batches(simsiam_recipe, tmp_path, capsys) -> None:
    resident, streamed = tmp_path / "resident", tmp_path / "streamed"
    assert simsiam_recipe.main([*TINY, "--epochs", "2", "--out-dir", str(resident)]) == 0
    assert simsiam_recipe.main([*TINY, "--epochs", "2", "--pipeline", "stream", "--num-workers", "0",
                                "--out-dir", str(streamed)]) == 0
    printed = capsys.readouterr().out
    assert "EMBEDDED scikit-learn digits" in printed and "stream pipeline" in printed
    # The same images in the same order (DistributedSampler, seed 0) and the same augmentation stream: the same run.
    assert _losses(resident) == _losses(streamed)
    for key, value in _weights(resident / "last.pt").items():
        torch.testing.assert_close(_weights(streamed / "last.pt")[key], value, rtol=0, atol=0, msg=key)
    summary = json.loads((streamed / "summary.json").read_text())
    assert summary["pipeline"] == "stream" and summary["knn"] == json.loads(
        (resident / "summary.json").read_text())["knn"]


def test_stream_reads_an_image_folder_from_its_files(simsiam_recipe, tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    for i in range(48):  # 2 classes x 24 images, 4 of each held out; one image of another size
        folder = tmp_path / "data" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        size = (14, 12, 3) if i == 47 else (10, 12, 3)
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    args = [*TINY, "--subset", "32", "--epochs", "1", "--pipeline", "stream", "--num-workers", "0",
            "--holdout-per-class", "4", "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")]
    assert simsiam_recipe.main([*args, "--out-dir", str(out)]) == 2
    assert "images differ in size" in capsys.readouterr().err
    assert simsiam_recipe.main([*args, "--stream-size", "10", "--out-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "read from its files" in summary["data"] and not summary["embedded_smoke_run"]
    assert not (tmp_path / "cache").exists()  # nothing was decoded whole


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stream-size", "8"], "--stream-size is for --pipeline stream, not --pipeline batched"),
        (["--pipeline", "stream", "--stream-size", "0"], "--stream-size must be >= 1, got 0"),
        (["--pipeline", "stream", "--num-workers", "-1"], "--num-workers must be >= 0, got -1"),
    ],
)
def test_bad_stream_arguments_are_refused_before_training(simsiam_recipe, args, message, tmp_path, capsys) -> None:
    assert simsiam_recipe.main([*TINY, "--epochs", "1", *args, "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "last.pt").exists()
