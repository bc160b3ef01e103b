"""Recipes are scripts, not package modules: load them by path for in-process tests."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fault_injection import read_only, small_disk  # noqa: F401  (the recipe tests import them from here)

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
# Narrower still, for the multi-run tests of both SimSiam recipes: a narrow backbone, tiny heads, 64 images in 4
# batches (no epochs: each test sets them).
NARROW_TINY = ["--subset", "64", "--batch-size", "16", "--input-size", "8", "--proj-dim", "16", "--pred-hidden-dim",
               "8", "--linear-epochs", "0", "--eval-every", "1", "--knn-k", "10", "--no-progress", "--no-baselines",
               "--threads", "1", "--backbone-kwargs", "channels=(8,16,32,64)"]


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
