"""recipes/simsiam_lightning.py: simsiam_cifar.py's recipe through Lightning's Trainer."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from conftest import NARROW_TINY, RECIPES, one_line_error

TINY = NARROW_TINY
ON_CPU = ["--accelerator", "cpu", "--devices", "1"]


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def _rows(path: Path) -> list:
    with (path / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def _assert_same_weights(a: Path, b: Path) -> None:
    ours = _weights(a)
    for key, value in _weights(b).items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=0, msg=key)


def test_one_device_trains_exactly_as_simsiam_cifar(lightning_recipe, simsiam_recipe, tmp_path, capsys) -> None:
    plain, lightning = tmp_path / "plain", tmp_path / "lightning"
    assert simsiam_recipe.main([*TINY, "--epochs", "2", "--out-dir", str(plain)]) == 0
    capsys.readouterr()
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "2", "--out-dir", str(lightning)]) == 0
    printed = capsys.readouterr().out
    assert "EMBEDDED scikit-learn digits" in printed and "SMOKE RUN" in printed
    assert "global batch 16 = 1 device(s) x 16 images per step" in printed
    # Same initial weights, batches, views, loss, SGD and per-epoch cosine: the same run, bit for bit.
    _assert_same_weights(lightning / "model.pt", plain / "last.pt")
    ours, theirs = _rows(lightning), _rows(plain)
    for column in ("epoch", "loss", "collapse_std", "knn_top1", "lr"):
        assert [row[column] for row in ours] == [row[column] for row in theirs], column
    assert [row["shard_overlap"] for row in ours] == ["0", "0"]
    assert (lightning / "last.ckpt").is_file() and (lightning / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((lightning / "summary.json").read_text())
    assert summary["knn"] == json.loads((plain / "summary.json").read_text())["knn"]
    assert summary["devices"] == 1 and summary["per_device_batch"] == 16 and summary["ranks_agree"] is True
    assert summary["shards"]["ranks"][0]["images"] == 64 and summary["precision"] == "32-true"


def test_kill_and_resume_gives_the_same_weights_as_a_straight_run(lightning_recipe, tmp_path, capsys) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = [*TINY, *ON_CPU, "--epochs", "3"]
    assert lightning_recipe.main([*common, "--out-dir", str(straight)]) == 0
    assert lightning_recipe.main([*common, "--stop-after-epoch", "1", "--out-dir", str(resumed)]) == 0
    assert "stopping after epoch 1 (--stop-after-epoch); continue with --resume" in capsys.readouterr().out
    assert [row["epoch"] for row in _rows(resumed)] == ["1"] and not (resumed / "summary.json").exists()
    (resumed / "metrics.csv").write_text((resumed / "metrics.csv").read_text() + "2,9,9,9,,9,9,9,0\n")  # killed late
    torch.manual_seed(1234)  # a fresh process would start from other global random states
    assert lightning_recipe.main([*common, "--resume", "--out-dir", str(resumed)]) == 0
    _assert_same_weights(resumed / "model.pt", straight / "model.pt")
    columns = ("epoch", "loss", "collapse_std", "knn_top1", "lr")
    assert [[row[c] for c in columns] for row in _rows(resumed)] == [[row[c] for c in columns]
                                                                     for row in _rows(straight)]
    # A finished run resumes to its report; a fresh run into its folder is refused.
    assert lightning_recipe.main([*common, "--resume", "--out-dir", str(resumed)]) == 0
    assert len(_rows(resumed)) == 3
    assert lightning_recipe.main([*common, "--out-dir", str(resumed)]) == 2
    error = capsys.readouterr().err
    assert "holds a run" in error and "--resume" in error and "--overwrite" in error
    # --overwrite replaces it: other Lightning checkpoints in the folder go too (no last-v1.ckpt beside), and each
    # epoch is written once, as last.ckpt.
    (resumed / "epoch=2-step=12.ckpt").write_bytes((resumed / "last.ckpt").read_bytes())
    assert lightning_recipe.main([*common, "--epochs", "1", "--overwrite", "--out-dir", str(resumed)]) == 0
    assert sorted(p.name for p in resumed.glob("*.ckpt")) == ["last.ckpt"]
    assert len(_rows(resumed)) == 1


def test_stream_pipeline_trains_on_the_batched_pipelines_batches(lightning_recipe, tmp_path) -> None:
    batched, streamed = tmp_path / "batched", tmp_path / "streamed"
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "1", "--out-dir", str(batched)]) == 0
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "1", "--pipeline", "stream", "--num-workers", "1",
                                  "--out-dir", str(streamed)]) == 0
    _assert_same_weights(streamed / "model.pt", batched / "model.pt")
    assert json.loads((streamed / "summary.json").read_text())["pipeline"] == "stream"


def test_model_pt_is_read_by_linear_eval(lightning_recipe, linear_eval_recipe, tmp_path) -> None:
    out = tmp_path / "run"
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "1", "--out-dir", str(out)]) == 0
    assert linear_eval_recipe.main(["--checkpoint", str(out / "model.pt"), "--epochs", "1", "--threads", "1",
                                    "--no-progress", "--out-dir", str(tmp_path / "linear")]) == 0
    summary = json.loads((tmp_path / "linear" / "summary.json").read_text())
    assert summary["checkpoint"] == str(out / "model.pt") and summary["pretrain_epochs"] == 1
    assert 0.0 <= summary["linear"]["top1"] <= 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--devices", "3", "--accelerator", "cpu"], "--batch-size 16 must be divisible by the world size 3"),
        (["--batch-size", "16", "--devices", "2", "--num-nodes", "8", "--accelerator", "cpu"],
         "must give >= 2 images per device"),
        (["--accelerator", "tpu"], "Lightning's Trainer refuses --accelerator tpu"),
        (["--strategy", "no_such_strategy", "--accelerator", "cpu"], "Lightning's Trainer refuses"),
        (["--num-nodes", "0", "--accelerator", "cpu"], "Lightning's Trainer refuses"),
        (["--strategy", "ddp_spawn", "--devices", "2", "--accelerator", "cpu"], "use --strategy ddp"),
        (["--base-lr", "0", *ON_CPU], "--base-lr must be a finite number > 0"),
        (["--stream-size", "8", *ON_CPU], "--stream-size is for --pipeline stream"),
        (["--pipeline", "stream", "--num-workers", "-1", *ON_CPU], "--num-workers must be >= 0, got -1"),
        (["--resume", *ON_CPU], "--resume: no checkpoint at"),
    ],
)
def test_bad_arguments_are_refused_before_training(lightning_recipe, args, message, tmp_path, capsys) -> None:
    assert lightning_recipe.main([*TINY, "--epochs", "1", *args, "--out-dir", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_resume_refuses_other_training_arguments_and_foreign_files(lightning_recipe, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "2", "--stop-after-epoch", "1",
                                  "--out-dir", str(out)]) == 0
    capsys.readouterr()
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "3", "--resume", "--out-dir", str(out)]) == 2
    assert "was trained with --epochs 2 (now 3)" in capsys.readouterr().err
    torch.save({"epoch": 1, "model": {}}, out / "last.ckpt")  # simsiam_cifar.py's format, not Lightning's
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "2", "--resume", "--out-dir", str(out)]) == 2
    assert "is not a checkpoint of simsiam_lightning.py" in capsys.readouterr().err
    (out / "last.ckpt").write_bytes(b"not a checkpoint")
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "2", "--resume", "--out-dir", str(out)]) == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPES / "simsiam_lightning.py"), *args], capture_output=True,
                          text=True, timeout=600)


def test_bad_arguments_are_one_line_errors_from_the_script(tmp_path) -> None:
    result = _script(*TINY, "--epochs", "1", "--accelerator", "gpu", "--out-dir", str(tmp_path))
    assert "Lightning's Trainer refuses --accelerator gpu" in one_line_error(result)


def _expected_shard(n: int, world_size: int, rank: int, epoch: int) -> set:
    """The indices DistributedSampler(seed 0, drop_last) gives ``rank`` in ``epoch`` (0-based)."""
    sampler = DistributedSampler(range(n), world_size, rank, shuffle=True, seed=0, drop_last=True)  # type: ignore
    sampler.set_epoch(epoch)
    return set(sampler)


def _digest(ids: set) -> str:
    return hashlib.sha256(torch.tensor(sorted(ids)).numpy().tobytes()).hexdigest()


@pytest.mark.slow
def test_two_gloo_processes_train_on_disjoint_shares_also_when_resumed(tmp_path) -> None:
    out = tmp_path / "ddp"
    ddp = [*TINY, "--epochs", "2", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--channels-last", "on",
           "--out-dir", str(out)]
    stopped = _script(*ddp, "--stop-after-epoch", "1")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    # Every rank continues from the checkpoint (Lightning does not pass ckpt_path from rank 0 to the others: a
    # rank 1 that started again at epoch 0 trained on rank 0's images and ran an epoch more).
    result = _script(*ddp, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    # The logged epoch loss is reduced over the ranks (Lightning warns of an epoch-level value that is not), and the
    # model is channels_last before DDP builds its gradient buckets (torch warns of every parameter it was not).
    assert "sync_dist" not in stopped.stderr + result.stderr
    assert "Grad strides do not match bucket view strides" not in stopped.stderr + result.stderr
    assert "global batch 16 = 2 device(s) x 8 images per step" in result.stdout
    assert result.stdout.count("!! EMBEDDED scikit-learn digits") == 1  # said by rank 0 only
    assert "data shards (epoch 2): rank 0 32 images, rank 1 32 images, disjoint" in result.stdout
    assert [row["epoch"] for row in _rows(out)] == ["1", "2"] and (out / "last.ckpt").is_file()
    assert all(row["shard_overlap"] == "0" for row in _rows(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"] == 2 and summary["per_device_batch"] == 8 and summary["ranks_agree"] is True
    shards = summary["shards"]
    assert shards["epoch"] == 2 and shards["overlap"] == 0
    # Each rank trained on exactly its DistributedSampler share of epoch 2 (0-based 1): disjoint shares that cover
    # the 64 images, reshuffled since epoch 1; and each rank drew its own augmentation stream.
    expected = [_expected_shard(64, 2, rank, epoch=1) for rank in range(2)]
    assert not expected[0] & expected[1] and len(expected[0] | expected[1]) == 64
    assert expected[0] != _expected_shard(64, 2, 0, epoch=0)
    assert [entry["images"] for entry in shards["ranks"]] == [32, 32]
    assert [entry["sha256"] for entry in shards["ranks"]] == [_digest(ids) for ids in expected]
    assert len({entry["augmentation_seed"] for entry in shards["ranks"]}) == 2
    payload = torch.load(out / "last.ckpt", weights_only=True)
    assert payload["hyper_parameters"]["batch_size"] == 16 and payload["callbacks"]["EpochMonitor"] == {
        "epochs_done": 2}


def test_shared_options_mean_what_they_mean_in_simsiam_cifar(lightning_recipe, simsiam_recipe) -> None:
    def options(recipe):
        return {action.dest: action for action in recipe.build_parser()._actions if action.option_strings}

    ours, theirs = options(lightning_recipe), options(simsiam_recipe)
    engine = {"devices", "precision", "pipeline", "num_workers", "out_dir", "help", "seed", "threads"}
    shared = set(ours) & set(theirs) - engine
    assert {"backbone", "backbone_kwargs", "epochs", "batch_size", "input_size", "proj_dim", "pred_hidden_dim",
            "base_lr", "fix_predictor_lr", "no_progress", "eval_every", "no_baselines"} <= shared
    for dest in sorted(shared):
        a, b = ours[dest], theirs[dest]
        assert (a.option_strings, a.default, a.type, a.choices, a.nargs, type(a)) == (
            b.option_strings, b.default, b.type, b.choices, b.nargs, type(b)), dest
    assert set(ours["pipeline"].choices) < set(theirs["pipeline"].choices)
    assert ours["precision"].choices == theirs["precision"].choices and ours["seed"].default == theirs["seed"].default
    missing = set(theirs) - set(ours) - {"device", "compile"}  # Lightning's --accelerator; not offered here
    assert not missing, missing


def test_a_diverging_learning_rate_stops_the_run_before_anything_of_the_epoch_is_saved(lightning_recipe, tmp_path,
                                                                                      capsys) -> None:
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "2", "--base-lr", "1e30",
                                  "--out-dir", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: the loss became") and "at epoch 1" in line and "no checkpoint was written" in line
    assert "a lower --base-lr may help" in line
    assert not list(tmp_path.glob("*.ckpt")) and not (tmp_path / "summary.json").exists()
    assert not (tmp_path / "run.lock").exists()  # released: a fixed run may start at once
    assert not (tmp_path / "metrics.csv").exists()


def test_a_folder_in_use_is_refused(lightning_recipe, tmp_path, capsys) -> None:
    import json as json_module
    import os
    import socket

    (tmp_path / "run.lock").write_text(json_module.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "1", "--out-dir", str(tmp_path)]) == 2
    assert f"is in use by pid {os.getpid()}" in capsys.readouterr().err


def test_multi_node_runs_check_this_nodes_processes_against_its_gpus(lightning_recipe, simsiam_recipe,
                                                                     monkeypatch) -> None:
    # 2 nodes x 8 GPUs: 16 processes share the global batch, 8 of them on each machine.
    seen = {}
    monkeypatch.setattr(lightning_recipe.simsiam_cifar, "check_args",  # the module the Lightning recipe imports
                        lambda plain, n_train, local_processes=None: seen.update(devices=plain.devices,
                                                                                 local=local_processes))
    args = lightning_recipe.parse_args([*TINY, "--epochs", "1", "--batch-size", "64", "--num-nodes", "2", "--devices", "8"])
    lightning_recipe.check_args(args, 16, 8, torch.device("cpu"), 640)
    assert seen == {"devices": 16, "local": 8}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    plain = simsiam_recipe.parse_args(["--device", "cuda", "--devices", "16"])
    simsiam_recipe.check_devices(plain, 8)  # 8 processes on this machine: one GPU each
    with pytest.raises(ValueError, match=r"9 processes on this machine ask for one GPU each, but CUDA has 8"):
        simsiam_recipe.check_devices(plain, 9)


def test_overwrite_replaces_a_run_whose_metrics_are_torn(lightning_recipe, tmp_path) -> None:
    # The old run's metrics.csv is read by no one before rank 0 holds the folder: --overwrite removes it unread.
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "1", "--out-dir", str(tmp_path)]) == 0
    (tmp_path / "metrics.csv").write_text((tmp_path / "metrics.csv").read_text() + "2,0.5")  # torn: no line end
    assert lightning_recipe.main([*TINY, *ON_CPU, "--epochs", "1", "--overwrite", "--out-dir", str(tmp_path)]) == 0
    assert [row["epoch"] for row in _rows(tmp_path)] == ["1"]


def test_resume_refuses_metrics_that_miss_an_epoch_of_the_checkpoint(lightning_recipe, tmp_path, capsys) -> None:
    # As simsiam_cifar.py: a resumed run would keep a metrics.csv without epoch 1's row, silently.
    common = [*TINY, *ON_CPU, "--epochs", "3", "--out-dir", str(tmp_path)]
    assert lightning_recipe.main([*common, "--stop-after-epoch", "2"]) == 0
    lines = (tmp_path / "metrics.csv").read_text().splitlines(keepends=True)
    (tmp_path / "metrics.csv").write_text(lines[0] + "".join(lines[2:]))  # header, epoch 2
    assert lightning_recipe.main([*common, "--resume"]) == 2
    line = capsys.readouterr().err.strip()
    assert "metrics.csv has rows for epochs 2 where" in line and "last.ckpt has finished epochs 1-2" in line, line
    assert [row["epoch"] for row in _rows(tmp_path)] == ["2"]  # left as it was


def test_resume_drops_the_rows_of_epochs_its_checkpoint_does_not_cover(lightning_recipe, tmp_path) -> None:
    # A run killed after writing epoch 3's row but before its checkpoint: the resumed run trains epoch 3 again.
    common = [*TINY, *ON_CPU, "--epochs", "3", "--out-dir", str(tmp_path)]
    assert lightning_recipe.main([*common, "--stop-after-epoch", "2"]) == 0
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(metrics.read_text() + metrics.read_text().splitlines(keepends=True)[-1].replace("2,", "3,", 1))
    assert [row["epoch"] for row in _rows(tmp_path)] == ["1", "2", "3"]
    assert lightning_recipe.main([*common, "--resume"]) == 0
    assert [row["epoch"] for row in _rows(tmp_path)] == ["1", "2", "3"]
    rows = _rows(tmp_path)
    assert rows[2]["loss"] != rows[1]["loss"]  # epoch 3's own row, not the copy of epoch 2's
