import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from _run_dir import check_metrics_for_resume, claim_run_dir, prepare_run_dir
from _run_lock import LOCK_NAME, locked_run_dir
from lightly_siamese_ext.training import save_checkpoint


def test_fresh_run_creates_the_folder_and_starts_at_epoch_0(tmp_path) -> None:
    path, epoch = prepare_run_dir(tmp_path / "a" / "b", resume=False)
    assert (tmp_path / "a" / "b").is_dir() and path == tmp_path / "a" / "b" / "last.pt" and epoch == 0


def test_resume_restores_the_model_and_returns_its_epoch(tmp_path) -> None:
    saved = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "last.pt", model=saved, epoch=7)
    model = nn.Linear(3, 2)
    path, epoch = prepare_run_dir(tmp_path, resume=True, model=model, restore_rng=False)
    assert epoch == 7 and path == tmp_path / "last.pt"
    torch.testing.assert_close(model.weight, saved.weight, rtol=0, atol=0)


def test_resume_without_a_checkpoint_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint at .*last.pt"):
        prepare_run_dir(tmp_path, resume=True, model=nn.Linear(1, 1))


def test_an_out_dir_that_is_a_file_is_named(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="--out-dir .*file is a file, not a folder"):
        prepare_run_dir(tmp_path / "file", resume=False)


@pytest.mark.parametrize("content, message", [(b"garbage", "is not a readable checkpoint"),
                                              ({"weights": 1}, "is not a training checkpoint")])
def test_resume_from_a_file_that_is_not_a_checkpoint_is_a_value_error(tmp_path, content, message: str) -> None:
    if isinstance(content, bytes):
        (tmp_path / "last.pt").write_bytes(content)
    else:
        torch.save(content, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=f"--resume: .*last.pt {message}"):
        prepare_run_dir(tmp_path, resume=True, model=nn.Linear(1, 1))


def test_resume_into_a_model_that_does_not_fit_is_a_value_error(tmp_path) -> None:
    save_checkpoint(tmp_path / "last.pt", model=nn.Linear(3, 2), epoch=1)
    with pytest.raises(ValueError, match="does not fit this run's model or optimizer: .*size mismatch for weight"):
        prepare_run_dir(tmp_path, resume=True, model=nn.Linear(4, 2), restore_rng=False)


def test_resume_refuses_other_training_arguments_and_allows_the_listed_ones(tmp_path) -> None:
    saved = {"epochs": 3, "lr": 0.1, "device": "cpu", "out_dir": "/elsewhere"}
    save_checkpoint(tmp_path / "last.pt", model=nn.Linear(3, 2), epoch=1, extra={"args": saved})
    may_change = ("device", "out_dir")
    with pytest.raises(ValueError, match=r"trained with --epochs 3 \(now 5\), --lr 0.1 \(now 0.2\); a resumed run"):
        prepare_run_dir(tmp_path, resume=True, run_args={**saved, "epochs": 5, "lr": 0.2}, may_change=may_change,
                        model=nn.Linear(3, 2), restore_rng=False)
    changed = {**saved, "device": "cuda", "out_dir": str(tmp_path), "new_argument": 1}  # an older checkpoint lacks it
    _, epoch = prepare_run_dir(tmp_path, resume=True, run_args=changed, may_change=may_change,
                               model=nn.Linear(3, 2), restore_rng=False)
    assert epoch == 1


# ------------------------------------------------------------------------------------- claim_run_dir and the lock

def _lock(folder, **fields) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": None, "started": "earlier",
              "command": "x", **fields}
    (folder / LOCK_NAME).write_text(json.dumps(record))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_fresh_run_into_a_folder_that_holds_a_run_is_refused_and_leaves_it_as_it_was(tmp_path) -> None:
    (tmp_path / "last.pt").write_bytes(b"the earlier run")
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds a run \(last.pt, summary.json\): continue it with --resume, "
                                         r"replace it with --overwrite, or choose a new --out-dir"):
        with claim_run_dir(tmp_path, resume=False, overwrite=False):
            pass
    assert (tmp_path / "last.pt").read_bytes() == b"the earlier run" and not (tmp_path / LOCK_NAME).exists()


def test_overwrite_removes_the_earlier_run_and_only_its_files(tmp_path) -> None:
    for name in ("last.pt", "metrics.csv", "summary.json", "metrics.png", "notes.txt", ".last.pt.123.ab.tmp"):
        (tmp_path / name).write_text("old")
    with claim_run_dir(tmp_path, resume=False, overwrite=True) as out_dir:
        assert sorted(os.listdir(out_dir)) == ["notes.txt", LOCK_NAME]
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]  # the lock is released


def test_a_live_run_holds_the_folder_and_a_second_claim_names_it(tmp_path) -> None:
    with claim_run_dir(tmp_path, resume=False, overwrite=False):
        held = json.loads((tmp_path / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(ValueError, match=f"is in use by pid {os.getpid()} on {socket.gethostname()}"):
            with claim_run_dir(tmp_path, resume=False, overwrite=True):
                pass
        assert (tmp_path / LOCK_NAME).exists()  # the refused claim did not take the holder's lock away
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("reused", [False, True], ids=["dead pid", "reused pid"])
def test_a_stale_lock_of_this_host_is_replaced(tmp_path, reused: bool) -> None:
    if reused and not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc: a reused pid cannot be told apart")
    # A reused pid: running, but started at another time than the process that took the lock.
    _lock(tmp_path, **({"pid": os.getpid(), "process_start": -1} if reused else {"pid": _dead_pid()}))
    with locked_run_dir(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("fields, message", [({"host": "elsewhere", "pid": 1}, "if it is gone, delete the lock file"),
                                             ({"pid": "x"}, "is in use by pid x")])
def test_a_lock_that_cannot_be_judged_is_kept(tmp_path, fields: dict, message: str) -> None:
    _lock(tmp_path, **fields)
    with pytest.raises(ValueError, match=message):
        with locked_run_dir(tmp_path):
            pass
    (tmp_path / LOCK_NAME).write_text("not json")
    with pytest.raises(ValueError, match="which cannot be read: if no run uses the folder, delete the lock file"):
        with locked_run_dir(tmp_path):
            pass


def test_the_lock_is_released_when_the_run_fails(tmp_path) -> None:
    with pytest.raises(RuntimeError):
        with claim_run_dir(tmp_path, resume=False, overwrite=False):
            raise RuntimeError("a bug in the run")
    assert not (tmp_path / LOCK_NAME).exists()


# ----------------------------------------------------------------------------------------- checkpoint validation
def _checkpoint(tmp_path, epoch: int = 2, epochs: int = 4) -> dict:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    for _ in range(epoch):
        scheduler.step()
    save_checkpoint(tmp_path / "last.pt", model=model, epoch=epoch, optimizer=optimizer, scheduler=scheduler,
                    extra={"args": {"epochs": epochs, "lr": 0.1, "normalize": True}})
    return torch.load(tmp_path / "last.pt", weights_only=True)


def _resume(tmp_path, run_args=None):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    return prepare_run_dir(tmp_path, resume=True, run_args=run_args or {"epochs": 4, "lr": 0.1, "normalize": True},
                           model=model, optimizer=optimizer, scheduler=scheduler, restore_rng=False)


def _tamper_momentum(payload: dict, value) -> None:
    payload["optimizer"]["state"][0]["momentum_buffer"] = value


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda p: p.update(epoch=-3), "has epoch -3: a checkpoint of this run has an integer epoch in"),
        (lambda p: p.update(epoch=5), r"has epoch 5: .* in \[0, --epochs 4\]"),
        (lambda p: p.update(epoch="2"), "has epoch '2'"),
        (lambda p: p.update(epoch=True), "has epoch True"),
        (lambda p: p.update(optimizer=None), "holds no optimizer state"),
        (lambda p: p.pop("scheduler"), "holds no scheduler state"),
        (lambda p: p["optimizer"]["param_groups"][0].update(lr=float("nan")), "has optimizer lr nan"),
        (lambda p: p["scheduler"].update(last_epoch=0), "a schedule at epoch 0 and weights at epoch 2"),
        (lambda p: p["model"]["weight"].fill_(float("inf")), r"has non-finite weights \(weight\)"),
        (lambda p: p.update(model={"weight": [1.0]}), "not a state dict of tensors"),
        (lambda p: p["extra"]["args"].update(epochs="4"), "holds --epochs as str '4' where this run has int 4"),
        (lambda p: p["extra"]["args"].update(normalize=1), "holds --normalize as int 1 where this run has bool"),
        (lambda p: p.update(extra={}), "holds no training arguments"),
        (lambda p: _tamper_momentum(p, torch.zeros(5)), "optimizer state momentum_buffer has shape"),
        (lambda p: _tamper_momentum(p, torch.full((2, 3), float("nan"))), "momentum_buffer is not finite"),
    ],
)
def test_a_tampered_checkpoint_is_refused_naming_it(tmp_path, tamper, message: str) -> None:
    payload = _checkpoint(tmp_path)
    tamper(payload)
    torch.save(payload, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=f"--resume: .*last.pt .*{message}"):
        _resume(tmp_path)


def test_an_untampered_checkpoint_resumes(tmp_path) -> None:
    _checkpoint(tmp_path)
    assert _resume(tmp_path)[1] == 2


def test_an_argument_set_where_it_was_unset_is_named_as_changed_not_as_a_type(tmp_path) -> None:
    _checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"trained with --normalize True \(now None\)"):
        _resume(tmp_path, {"epochs": 4, "lr": 0.1, "normalize": None})


# ------------------------------------------------------------------------------------- metrics.csv on --resume
def _metrics(tmp_path, text: str) -> None:
    (tmp_path / "metrics.csv").write_text(text, newline="")


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch,loss,lr\r\n1,-0.1,0.03\r\n2,-0.2,0.0", "ends without a line end"),  # lr would read 0.0
        ("epoch,loss,lr\r\n1,-0.1,0.03\r\n", r"rows for epochs 1 where .*last.pt has finished epochs 1-2"),
        ("epoch,loss,lr\r\n1,-0.1,0.03\r\n3,-0.2,0.02\r\n", "rows for epochs 1 where"),
    ],
)
def test_resume_refuses_a_metrics_file_that_is_torn_or_misses_rows(tmp_path, text: str, message: str) -> None:
    _metrics(tmp_path, text)
    with pytest.raises(ValueError, match=f"--resume: .*{message}.*restore the file, or move it away"):
        check_metrics_for_resume(tmp_path, epoch=2)


def test_resume_keeps_rows_a_checkpoint_covers_and_continues_without_a_moved_file(tmp_path, capsys) -> None:
    _metrics(tmp_path, "epoch,loss\r\n1,-0.1\r\n2,-0.2\r\n3,-0.3\r\n")  # killed after the row, before last.pt
    check_metrics_for_resume(tmp_path, epoch=2)
    (tmp_path / "metrics.csv").unlink()
    check_metrics_for_resume(tmp_path, epoch=2)
    assert "metrics.csv is missing: the rows of epochs 1-2 are lost" in capsys.readouterr().out
