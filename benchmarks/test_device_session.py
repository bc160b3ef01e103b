"""The GPU session plumbing, run on the CPU: what comes back in $OUT when a session is cut short.

``device_session.sh`` and the benchmark conftest run in a throwaway copy of the checkout whose benchmarks are fakes
(a stub ``.device/setup.sh``, stub tests and recipe), so these tests take seconds and need no GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

BENCHMARKS = Path(__file__).resolve().parent
PYPROJECT = '[tool.pytest.ini_options]\naddopts = "--strict-markers"\nmarkers = ["gpu: needs CUDA"]\n'

# Gpu-marked, so the session script selects them; CUDA is faked so that the conftest does not skip them.
FAKE_GPU_TESTS = """
import os, signal, time
import pytest, torch
from _bench import run_benchmark

torch.cuda.is_available = lambda: True


@pytest.mark.gpu
def test_finishes(benchmark):
    run_benchmark(benchmark, lambda: None, area="fake", case="finished", impl="ours", items=1, unit="x",
                  device="cpu", rounds=1)


@pytest.mark.gpu
def test_runs_past_the_limit():
    if os.environ.get("FAKE_KILL"):
        os.kill(os.getpid(), signal.SIGKILL)  # as the device machine ends a command at its timeout
    time.sleep(600)
"""


def _checkout(root: Path) -> Path:
    (root / "benchmarks").mkdir(parents=True)
    for name in ("device_session.sh", "conftest.py", "_bench.py"):
        shutil.copy(BENCHMARKS / name, root / "benchmarks" / name)
    (root / "benchmarks" / "test_fake.py").write_text(FAKE_GPU_TESTS)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / ".device").mkdir()
    (root / ".device" / "setup.sh").write_text("echo setup: stub\n")
    (root / "out").mkdir()
    return root


def _env(root: Path, **extra: str) -> Dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # python3 = this interpreter
    env = {key: value for key, value in os.environ.items() if key != "RUN_DIR"}
    # The fake tests must run in file order (pytest-randomly, where installed, would shuffle them).
    return {**env, "PATH": path, "OUT": str(root / "out"), "PYTEST_ADDOPTS": "-p no:randomly", **extra}


def test_bench_cut_at_its_limit_still_returns_the_finished_rows_and_json(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    result = subprocess.run(["bash", "benchmarks/device_session.sh", "bench"], cwd=root, env=_env(root, LIMIT="12"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 124, result.stdout + result.stderr
    assert "| fake | finished |" in (root / "out" / "gpu.md").read_text()
    assert (root / "out" / "gpu.json").is_file(), result.stdout


def test_benchmark_summary_is_written_after_every_test(tmp_path: Path) -> None:
    # Killed outright (no chance to clean up): the summary already holds the rows of the tests that finished.
    root = _checkout(tmp_path)
    summary = root / "out" / "gpu.md"
    subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-m", "gpu", "-p", "no:cacheprovider", "-q",
                    "--bench-summary", str(summary)], cwd=root, env=_env(root, FAKE_KILL="1"), capture_output=True,
                   timeout=120)
    assert "| fake | finished |" in summary.read_text()


def _simsiam_run(root: Path, *args: str) -> subprocess.CompletedProcess:
    (root / "recipes").mkdir()
    (root / "recipes" / "simsiam_cifar.py").write_text("import sys\nsys.exit('stub recipe: failed early')\n")
    run = root / "run"
    run.mkdir()
    for name in ("summary.json", "metrics.png", "metrics.csv", "last.pt"):
        (run / name).write_text("from an earlier run on the same machine")
    return subprocess.run(["bash", "benchmarks/device_session.sh", "simsiam", "1", *args], cwd=root,
                          env=_env(root, RUN_DIR=str(run)), capture_output=True, text=True, timeout=120)


def test_simsiam_run_that_fails_early_returns_no_figures_of_an_earlier_run(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    result = _simsiam_run(root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(p.name for p in (root / "run").iterdir()) == ["last.pt"]
    assert list((root / "out" / "simsiam").iterdir()) == []


def test_simsiam_resume_keeps_the_metrics_of_the_epochs_it_continues(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    _simsiam_run(root, "--resume")
    assert sorted(p.name for p in (root / "run").iterdir()) == ["last.pt", "metrics.csv"]
    assert (root / "out" / "simsiam" / "metrics.csv").read_text().startswith("from an earlier")
