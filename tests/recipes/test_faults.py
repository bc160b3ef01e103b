"""Fault injection on the recipes (issue #16): what a user or their machine can do to a run never loses it,
overwrites it or gives a silently wrong result, and ends with one line.

Tiny configurations throughout (8 px digits, timm's test_resnet, --threads 1); tests that start processes are
marked slow."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch

import lightly_siamese_ext as lse
from _run_dir import claim_run_dir
from _run_lock import LOCK_NAME
from lightly_siamese_ext._atomic import TEMPORARY_SUFFIX
from conftest import RECIPES, SIMSIAM_TINY, read_only, small_disk

# 128 training images in 8 batches of 16 pairs, no baselines: about a second an epoch.
SIAMESE = ["--backbone", "test_resnet", "--input-size", "8", "--embedding-dim", "8", "--hidden-dim", "16",
           "--batch-size", "16", "--subset", "128", "--eval-per-class", "20", "--trials", "100", "--threads", "1",
           "--no-progress", "--lr", "3e-3", "--no-baselines"]
TRIPLET = ["--backbone", "test_resnet", "--input-size", "8", "--embedding-dim", "8", "--hidden-dim", "16", "--p",
           "4", "--k", "8", "--subset", "160", "--eval-per-class", "20", "--threads", "1", "--no-progress",
           "--lr", "3e-3", "--no-baselines"]
SIMSIAM = [*SIMSIAM_TINY, "--linear-epochs", "0"]
EPOCHS = 4


def _recipe(name: str, siamese_recipe, triplet_recipe, simsiam_recipe) -> tuple:
    return {"siamese": (siamese_recipe, SIAMESE), "triplet": (triplet_recipe, TRIPLET),
            "simsiam": (simsiam_recipe, SIMSIAM)}[name]


def _error(capsys) -> str:
    """The one line a failed in-process run wrote to stderr."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _weights(path: Path) -> dict:
    return torch.load(path / "last.pt", weights_only=True)["model"]


def _rows(path: Path) -> list:
    with (path / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _assert_same_run(a: Path, b: Path) -> None:
    expected = _weights(a)
    for key, value in _weights(b).items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    columns = ("epoch", "loss", "same_distance", "different_distance", "auc", "lr")
    assert [[row[c] for c in columns] for row in _rows(a)] == [[row[c] for c in columns] for row in _rows(b)]


def _leftovers(folder: Path) -> list:
    return sorted(name for name in os.listdir(folder) if name.endswith(TEMPORARY_SUFFIX) or name == LOCK_NAME)


@pytest.fixture(scope="module")
def straight(siamese_recipe: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted siamese run of EPOCHS epochs: what every interrupted and resumed one must end as."""
    out = tmp_path_factory.mktemp("faults") / "straight"
    assert siamese_recipe.main([*SIAMESE, "--epochs", str(EPOCHS), "--out-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def half_run(siamese_recipe: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run stopped after epoch 2 (as if killed): a folder to --resume."""
    out = tmp_path_factory.mktemp("faults") / "half"
    assert siamese_recipe.main([*SIAMESE, "--epochs", str(EPOCHS), "--stop-after-epoch", "2",
                                "--out-dir", str(out)]) == 0
    return out


def _copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("last.pt", "metrics.csv"):
        (copy / name).write_bytes((run / name).read_bytes())
    return copy


# ------------------------------------------------------------------------------ 1. a run folder is never destroyed
@pytest.mark.parametrize("name", ["siamese", "triplet", "simsiam"])
def test_a_fresh_run_into_a_folder_that_holds_a_run_is_refused(name: str, siamese_recipe, triplet_recipe,
                                                               simsiam_recipe, tmp_path, capsys) -> None:
    recipe, tiny = _recipe(name, siamese_recipe, triplet_recipe, simsiam_recipe)
    earlier = {"last.pt": b"weights of an earlier run", "metrics.csv": b"epoch,loss\r\n1,0.5\r\n"}
    for file, content in earlier.items():
        (tmp_path / file).write_bytes(content)
    assert recipe.main([*tiny, "--epochs", "1", "--out-dir", str(tmp_path)]) == 2
    line = _error(capsys)
    assert "holds a run (last.pt, metrics.csv)" in line and all(word in line for word in ("--resume", "--overwrite",
                                                                                          "a new --out-dir"))
    assert {file: (tmp_path / file).read_bytes() for file in earlier} == earlier
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "metrics.csv"]


def test_overwrite_replaces_the_earlier_run_whole(siamese_recipe, tmp_path, capsys) -> None:
    (tmp_path / "last.pt").write_bytes(b"weights of an earlier run")
    (tmp_path / "summary.json").write_text('{"trained": "by the earlier run"}')
    assert siamese_recipe.main([*SIAMESE, "--epochs", "1", "--out-dir", str(tmp_path), "--overwrite"]) == 0
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    assert "earlier" not in (tmp_path / "summary.json").read_text()
    assert _leftovers(tmp_path) == []


def test_resume_and_overwrite_exclude_each_other(siamese_recipe, tmp_path, capsys) -> None:
    assert siamese_recipe.main([*SIAMESE, "--out-dir", str(tmp_path), "--resume", "--overwrite"]) == 2
    assert "--resume continues the run in --out-dir and --overwrite replaces it" in _error(capsys)


def test_a_folder_in_use_by_a_live_run_is_refused(siamese_recipe, tmp_path, capsys) -> None:
    with claim_run_dir(tmp_path, resume=False, overwrite=False):  # a run of this process holds it
        assert siamese_recipe.main([*SIAMESE, "--epochs", "1", "--out-dir", str(tmp_path), "--overwrite"]) == 2
        assert f"is in use by pid {os.getpid()}" in _error(capsys)
        assert sorted(os.listdir(tmp_path)) == [LOCK_NAME]


@pytest.mark.parametrize("out_dir", ["{run}", "{run}/../{name}"])
def test_linear_eval_never_writes_into_the_run_it_reads(linear_eval_recipe, simsiam_run, capsys, out_dir) -> None:
    before = {name: (simsiam_run / name).read_bytes() for name in os.listdir(simsiam_run)}
    target = out_dir.format(run=simsiam_run, name=simsiam_run.name)
    assert linear_eval_recipe.main(["--checkpoint", str(simsiam_run / "last.pt"), "--out-dir", target, "--epochs",
                                    "1", "--threads", "1", "--overwrite"]) == 2
    assert "is the folder of --checkpoint" in _error(capsys)
    assert {name: (simsiam_run / name).read_bytes() for name in os.listdir(simsiam_run)} == before


def test_linear_eval_replaces_an_earlier_result_only_with_overwrite(linear_eval_recipe, simsiam_run, tmp_path,
                                                                    capsys) -> None:
    (tmp_path / "summary.json").write_text('{"linear": "an earlier evaluation"}')
    common = ["--checkpoint", str(simsiam_run / "last.pt"), "--out-dir", str(tmp_path), "--epochs", "1",
              "--threads", "1", "--no-progress"]
    assert linear_eval_recipe.main(common) == 2
    line = _error(capsys)
    assert "holds a run (summary.json): replace it with --overwrite, or choose a new --out-dir" in line
    assert linear_eval_recipe.main([*common, "--overwrite"]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["protocol"] == "features"


def test_resume_refuses_a_torn_metrics_file_and_keeps_the_checkpoint(siamese_recipe, half_run, tmp_path,
                                                                     capsys) -> None:
    run = _copy_of(half_run, tmp_path)
    text = (run / "metrics.csv").read_bytes()
    (run / "metrics.csv").write_bytes(text[:-12])  # the last row cut while being written (its lr, its speed)
    checkpoint = (run / "last.pt").read_bytes()
    assert siamese_recipe.main([*SIAMESE, "--epochs", str(EPOCHS), "--out-dir", str(run), "--resume"]) == 2
    assert "metrics.csv is torn or corrupt: its last line (3) ends without a line end" in _error(capsys)
    assert (run / "last.pt").read_bytes() == checkpoint and _leftovers(run) == []


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(siamese_recipe, straight, tmp_path, capsys) -> None:
    size = (straight / "last.pt").stat().st_size
    # Room for one checkpoint and the small files, not for the next one beside it (the atomic replace needs both).
    with small_disk(tmp_path / "disk", int(1.5 * size) + 200_000) as disk:
        out = disk / "run"
        assert siamese_recipe.main([*SIAMESE, "--epochs", str(EPOCHS), "--out-dir", str(out)]) == 2
        line = _error(capsys)
        assert f"could not write {out / 'last.pt'}: No space left on device" in line, line
        assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1  # intact, and it loads
        assert _leftovers(out) == []


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_a_read_only_out_dir_is_one_line(siamese_recipe, half_run, tmp_path, capsys, resume: bool) -> None:
    run = _copy_of(half_run, tmp_path) if resume else tmp_path / "empty"
    run.mkdir(exist_ok=True)
    with read_only(run):
        assert siamese_recipe.main([*SIAMESE, "--epochs", str(EPOCHS), "--out-dir", str(run),
                                    *(["--resume"] if resume else [])]) == 2
        line = _error(capsys)
    assert f"--out-dir {run} is not writable: " in line and ("Read-only" in line or "Permission denied" in line)


@pytest.mark.parametrize("tamper, message", [
    (lambda p: p.update(epoch=-3), "has epoch -3"),
    (lambda p: p.update(optimizer=None), "holds no optimizer state"),
    (lambda p: p["extra"]["args"].update(epochs=float(EPOCHS)), "holds --epochs as float 4.0"),
])
def test_resume_refuses_a_tampered_checkpoint(siamese_recipe, half_run, tmp_path, capsys, tamper, message) -> None:
    run = _copy_of(half_run, tmp_path)
    payload = torch.load(run / "last.pt", weights_only=True)
    tamper(payload)
    torch.save(payload, run / "last.pt")
    assert siamese_recipe.main([*SIAMESE, "--epochs", str(EPOCHS), "--out-dir", str(run), "--resume"]) == 2
    assert f"--resume: {run / 'last.pt'} {message}" in _error(capsys)


def test_sigterm_stops_the_run_releases_the_folder_and_resume_ends_as_the_straight_run(
        siamese_recipe, straight, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    common = [*SIAMESE, "--epochs", str(EPOCHS), "--out-dir", str(out)]

    def terminate_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # run_cli turns it into an orderly stop

    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # should it come after the run: harmless
    try:
        killer = threading.Thread(target=terminate_after_the_first_checkpoint, daemon=True)
        killer.start()
        assert siamese_recipe.main(common) == 143
        killer.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert _error(capsys) == "error: stopped by SIGTERM"
    assert _leftovers(out) == [] and 1 <= torch.load(out / "last.pt", weights_only=True)["epoch"] < EPOCHS
    assert siamese_recipe.main([*common, "--resume"]) == 0
    _assert_same_run(straight, out)


@pytest.mark.slow
def test_a_second_run_is_kept_out_and_kill_9_then_resume_ends_as_the_straight_run(siamese_recipe, straight,
                                                                                   tmp_path, capsys) -> None:
    out = tmp_path / "run"
    common = [*SIAMESE, "--epochs", str(EPOCHS), "--out-dir", str(out)]
    run = subprocess.Popen([sys.executable, str(RECIPES / "siamese_pairs.py"), *common], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out / LOCK_NAME).exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        # A second run in the same folder, while the first works there: refused, the first one untouched.
        assert siamese_recipe.main([*common, "--overwrite"]) == 2
        line = _error(capsys)
        assert f"is in use by pid {run.pid}" in line, line  # the lock is created whole: never a half-written one
        while not (out / "last.pt").exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        run.kill()
    finally:
        run.wait()
    assert run.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert (out / LOCK_NAME).exists() and torch.load(out / "last.pt", weights_only=True)["epoch"] < EPOCHS
    torch.manual_seed(1234)  # a fresh process would start from other global random states
    assert siamese_recipe.main([*common, "--resume"]) == 0  # the dead run's lock is recognised as stale
    _assert_same_run(straight, out)
    assert _leftovers(out) == []


# ------------------------------------------------------------------------------------------- 3. NaN and inf
class _NanFrom:
    """A ContrastiveLoss whose loss is NaN from one step on (counted over the whole run)."""

    def __init__(self, step: int) -> None:
        self.step, self.calls = step, 0

    def wrap(self, loss_class):
        watch = self

        class Diverging(loss_class):
            def forward(self, *args, **kwargs):
                watch.calls += 1
                loss = super().forward(*args, **kwargs)
                return loss * float("nan") if watch.calls >= watch.step else loss

        return Diverging


def test_a_loss_that_becomes_nan_stops_the_run_naming_epoch_and_step(siamese_recipe, tmp_path, capsys,
                                                                     monkeypatch) -> None:
    steps_per_epoch = 128 // 16
    nan = _NanFrom(step=steps_per_epoch + 3)  # step 3 of epoch 2
    monkeypatch.setattr(lse, "ContrastiveLoss", nan.wrap(lse.ContrastiveLoss))
    assert siamese_recipe.main([*SIAMESE, "--epochs", str(EPOCHS), "--out-dir", str(tmp_path)]) == 2
    line = _error(capsys)
    assert f"the loss became nan at epoch 2, step 3 of {steps_per_epoch}: training stopped; " \
           f"{tmp_path / 'last.pt'} keeps epoch 1, the last finite one" in line
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    assert payload["epoch"] == 1 and all(bool(torch.isfinite(t).all()) for t in payload["model"].values()
                                         if t.is_floating_point())
    assert [row["epoch"] for row in _rows(tmp_path)] == ["1"] and not (tmp_path / "summary.json").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name, lr", [("siamese", "--lr"), ("triplet", "--lr"), ("simsiam", "--base-lr")])
def test_a_diverging_learning_rate_ends_with_an_error_not_a_nan_model(name: str, lr: str, siamese_recipe,
                                                                      triplet_recipe, simsiam_recipe, tmp_path,
                                                                      capsys) -> None:
    recipe, tiny = _recipe(name, siamese_recipe, triplet_recipe, simsiam_recipe)
    assert recipe.main([*tiny, "--epochs", "2", lr, "1e30", "--out-dir", str(tmp_path)]) == 2
    line = _error(capsys)
    assert "at epoch 1" in line and "training stopped" in line and f"a lower {lr}" in line, line
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "last.pt").exists()


# ------------------------------------------------------------------------------- 4. arguments, before any work
@pytest.mark.parametrize("name, args, message", [
    ("simsiam", ["--base-lr", "inf"], "--base-lr must be a finite number > 0, got inf"),
    ("simsiam", ["--momentum", "nan"], "--momentum must be a finite number in [0, 1), got nan"),
    ("simsiam", ["--momentum", "1"], "--momentum must be a finite number in [0, 1), got 1.0"),
    ("simsiam", ["--weight-decay", "inf"], "--weight-decay must be a finite number >= 0, got inf"),
    ("simsiam", ["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0, got nan"),
    ("simsiam", ["--cj-strength", "nan"], "--cj-strength must be a finite number >= 0"),
    ("simsiam", ["--knn-t", "inf"], "--knn-t must be a finite number > 0"),
    ("simsiam", ["--input-size", "1000000000000"], "--input-size must be <= 4,096"),
    ("simsiam", ["--threads", "100000"], "--threads must be <= 1,024"),
    ("simsiam", ["--pipeline", "stream", "--stream-size", "100000"], "--stream-size must be <= 4,096"),
    ("simsiam", ["--sync-bn"], "--sync-bn synchronises batch norm across GPUs"),
    ("siamese", ["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    ("siamese", ["--margin", "nan"], "--margin must be a finite number >= 0, got nan"),
    ("siamese", ["--weight-decay", "inf"], "--weight-decay must be a finite number >= 0"),
    ("siamese", ["--input-size", "1000000000000"], "--input-size must be <= 4,096"),
    ("siamese", ["--trials", "100000000000"], "--trials must be <= 10,000,000"),
    ("siamese", ["--embedding-dim", "1000000000"], "--embedding-dim must be <= 65,536"),
    ("triplet", ["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    ("triplet", ["--margin", "inf"], "--margin must be a finite number >= 0, got inf"),
])
def test_bad_arguments_are_refused_before_any_work(name: str, args: list, message: str, siamese_recipe,
                                                   triplet_recipe, simsiam_recipe, tmp_path, capsys) -> None:
    recipe, tiny = _recipe(name, siamese_recipe, triplet_recipe, simsiam_recipe)
    assert recipe.main([*tiny, "--epochs", "1", *args, "--out-dir", str(tmp_path / "run")]) == 2
    assert message in _error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, args", [("simsiam", ["--proj-dim", "30000"]),
                                        ("siamese", ["--hidden-dim", "30000", "--embedding-dim", "30000"]),
                                        ("triplet", ["--backbone-kwargs", "channels=(8,8,8,30000)"])])
def test_a_model_that_cannot_fit_is_refused_before_it_is_built(name: str, args: list, siamese_recipe,
                                                               triplet_recipe, simsiam_recipe, tmp_path, capsys,
                                                               monkeypatch) -> None:
    import _cli

    monkeypatch.setattr(_cli, "_device_memory", lambda device: 2 * 2**30)  # a machine with 2 GiB to spare
    recipe, tiny = _recipe(name, siamese_recipe, triplet_recipe, simsiam_recipe)
    assert recipe.main([*tiny, "--epochs", "1", *args, "--out-dir", str(tmp_path / "run")]) == 2
    line = _error(capsys)
    assert "M parameters with their training state and one batch of inputs need at least" in line, line
    assert "this machine has 2.0 GiB" in line and "--backbone" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [(["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
                                           (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
                                           (["--input-size", "99999"], "--input-size must be <= 4,096")])
def test_linear_eval_refuses_bad_numbers(linear_eval_recipe, simsiam_run, tmp_path, capsys, args: list,
                                         message: str) -> None:
    assert linear_eval_recipe.main(["--checkpoint", str(simsiam_run / "last.pt"), *args, "--out-dir",
                                    str(tmp_path / "x")]) == 2
    assert message in _error(capsys)
