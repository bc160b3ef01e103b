"""Recipes are scripts, not package modules: load them by path for in-process tests."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# What `python recipes/<name>.py` puts first on sys.path: the recipes import their shared modules (_cli, ...) from there.
sys.path.insert(0, str(RECIPES))


def load_recipe(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def simsiam_recipe() -> ModuleType:
    return load_recipe("simsiam_cifar")


@pytest.fixture(scope="session")
def lightning_recipe() -> ModuleType:
    return load_recipe("simsiam_lightning")


@pytest.fixture(scope="session")
def linear_eval_recipe() -> ModuleType:
    return load_recipe("linear_eval")


@pytest.fixture(scope="session")
def siamese_recipe() -> ModuleType:
    return load_recipe("siamese_pairs")


@pytest.fixture(scope="session")
def triplet_recipe() -> ModuleType:
    return load_recipe("triplet_retrieval")


# simsiam_cifar.py's tiny configuration (see test_simsiam_recipe.py), one epoch: a checkpoint to evaluate.
SIMSIAM_TINY = ["--subset", "128", "--batch-size", "32", "--input-size", "8", "--proj-dim", "32",
                "--pred-hidden-dim", "8", "--linear-epochs", "3", "--eval-every", "1", "--knn-k", "20", "--no-progress",
                "--no-baselines", "--threads", "1", "--epochs", "1"]


@pytest.fixture(scope="session")
def simsiam_run(simsiam_recipe: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The --out-dir of a tiny simsiam_cifar.py run (last.pt, summary.json with its linear probe)."""
    out = tmp_path_factory.mktemp("simsiam_run")
    assert simsiam_recipe.main([*SIMSIAM_TINY, "--out-dir", str(out)]) == 0
    return out


def one_line_error(result: "subprocess.CompletedProcess[str]") -> str:
    """The single stderr line of a failed recipe run (torch's gpuGetDeviceCount noise left out)."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "gpuGetDeviceCount" not in line]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


@contextlib.contextmanager
def small_disk(where: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` at ``where``: a disk that fills up. Needs root; the test is skipped where it cannot
    be mounted."""
    where.mkdir(parents=True, exist_ok=True)
    _mount(["-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)])
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` read-only while the block runs: a read-only bind mount as root (chmod does not stop root), else
    its write bits cleared."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(mode)
        return
    _mount(["--bind", str(folder), str(folder)])
    try:
        _mount(["-o", "remount,ro,bind", str(folder)])
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def _mount(arguments: list) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a file system needs root and mount(8)")
    result = subprocess.run(["mount", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")
