"""Spawned ranks die with their launcher, and a rank that fails stops the others with an error naming it."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from lightly_siamese_ext.training import distributed, launch
from lightly_siamese_ext.training.distributed import RankFailedError

REPOSITORY = Path(__file__).resolve().parents[2]
# A launcher whose two ranks would run forever: each writes its pid, then all-reduces in a loop.
LAUNCHER = textwrap.dedent("""
    import os, sys, time
    import torch
    import torch.distributed as dist
    from lightly_siamese_ext.training import launch

    def work(rank, world_size, out_dir):
        with open(os.path.join(out_dir, f"rank{rank}.pid"), "w") as handle:
            handle.write(str(os.getpid()))
        value = torch.zeros(1)
        while True:
            dist.all_reduce(value)
            time.sleep(0.05)

    if __name__ == "__main__":
        launch(work, 2, args=(sys.argv[1],), backend="gloo")
""")


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie that nobody reaped has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state != "Z"


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _rank_pids(folder: Path, timeout: float = 240.0) -> list:
    paths = [folder / f"rank{rank}.pid" for rank in range(2)]
    assert wait_until(lambda: all(p.exists() and p.read_text() for p in paths), timeout), "the ranks did not start"
    return [int(p.read_text()) for p in paths]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does for `python recipe.py &`


@pytest.mark.slow
def test_the_ranks_die_with_a_killed_launcher(tmp_path) -> None:
    # Started in the background, the ranks ignore SIGINT: torch's own parent-death signal left them training.
    # SIGKILL (and a plain launcher's SIGTERM) ends the launcher at once: the kernel and the watchdog end the ranks.
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    launcher = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_ignore_sigint)
    try:
        ranks = _rank_pids(tmp_path)
        launcher.kill()
        assert wait_until(lambda: not any(running(pid) for pid in ranks), timeout=10.0), \
            "ranks still running 10 s after their launcher was killed"
    finally:
        launcher.kill()
        launcher.wait()
        _kill_leftovers(tmp_path)


def _loop_forever(rank: int, world_size: int, out_dir: str) -> None:
    with open(os.path.join(out_dir, f"rank{rank}.pid"), "w") as handle:
        handle.write(str(os.getpid()))
    value = torch.zeros(1)
    while True:
        dist.all_reduce(value)
        time.sleep(0.05)


@pytest.mark.slow
def test_an_interrupted_launcher_stops_its_ranks(tmp_path) -> None:
    # Ctrl-C (or SIGTERM, which the recipes turn into an exception) in the launcher: it stops its ranks and exits.
    # Before, the interpreter's exit waited for the ranks, which trained on.
    def interrupt_once_the_ranks_run() -> None:
        try:
            _rank_pids(tmp_path)
        finally:  # also when they never start: the launcher must not wait forever
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_the_ranks_run, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            launch(_loop_forever, world_size=2, args=(str(tmp_path),), backend="gloo")
        assert not any(running(pid) for pid in _pids_in(tmp_path))  # stopped and joined before it returned
    finally:
        _kill_leftovers(tmp_path)


def _kill_leftovers(folder: Path) -> None:
    for pid in _pids_in(folder):
        if running(pid):
            os.kill(pid, signal.SIGKILL)


def _pids_in(folder: Path) -> list:
    return [int(p.read_text()) for p in folder.glob("rank*.pid") if p.read_text()]


def _fail_on_rank_1(rank: int, world_size: int, out_dir: str) -> None:
    with open(os.path.join(out_dir, f"rank{rank}.pid"), "w") as handle:
        handle.write(str(os.getpid()))
    if rank == 1:
        raise ValueError("the loss became nan at epoch 2, step 3 of 4\nsecond line")
    value = torch.zeros(1)
    while True:  # rank 0 would wait for rank 1 forever
        dist.all_reduce(value)
        time.sleep(0.05)


@pytest.mark.slow
def test_a_failed_rank_stops_the_others_and_is_named(tmp_path) -> None:
    # Rank 0's all-reduce fails too once rank 1 is gone: rank 1 is the one named.
    with pytest.raises(RankFailedError, match=r"rank 1 \(pid \d+\) failed: ValueError: the loss became nan at "
                                              r"epoch 2, step 3 of 4; the other ranks were stopped") as caught:
        launch(_fail_on_rank_1, world_size=2, args=(str(tmp_path),), backend="gloo")
    assert caught.value.rank == 1 and isinstance(caught.value.error, ValueError)
    assert "second line" in str(caught.value.error) and "Traceback" in str(caught.value)  # the rank's own
    assert not any(running(pid) for pid in _pids_in(tmp_path))


def test_a_rank_killed_by_a_signal_is_named_and_comes_before_the_errors_it_caused(tmp_path) -> None:
    # Rank 2 was killed (the OOM killer, say), rank 0's collective failed after it: rank 2 is the cause.
    (tmp_path / "rank0.pickle").write_bytes(pickle.dumps({"type": "RuntimeError", "message": "Connection reset",
                                                          "traceback": ""}))
    assert distributed._first_failure([0, 2], 3, tmp_path) == 2
    failure = distributed._rank_failure(2, 1234, -signal.SIGKILL, tmp_path)
    assert str(failure) == "rank 2 (pid 1234) was killed by SIGKILL; the other ranks were stopped"
    assert failure.error is None and failure.rank == 2


def test_of_ranks_that_raised_the_earliest_is_the_cause(tmp_path) -> None:
    for rank, message in ((1, "the loss became nan"), (0, "Connection reset by peer")):
        (tmp_path / f"rank{rank}.pickle").write_bytes(pickle.dumps({"type": "ValueError", "message": message,
                                                                    "traceback": "", "error": pickle.dumps(
                                                                        ValueError(message))}))
        time.sleep(0.01)
    assert distributed._first_failure([0, 1], 2, tmp_path) == 1
    failure = distributed._rank_failure(1, 99, 1, tmp_path)
    assert isinstance(failure.error, ValueError) and str(failure).startswith(
        "rank 1 (pid 99) failed: ValueError: the loss became nan; the other ranks were stopped")
