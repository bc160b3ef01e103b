"""Fast checks (no timing) that each benchmark row gives ours and the reference the same work, and that the
figures derived from a timing (MFU, epoch time) are computed as documented. Run in CI's smoke mode too."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator

import pytest
import torch
import torch.nn.functional as F
import _bench
import test_epoch
import test_losses
import test_train_step
from _data import cifar_images

from lightly_siamese_ext.losses import TripletLoss
from lightly_siamese_ext.training import count_flops

BENCHMARKS = Path(__file__).resolve().parent
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _no_summary_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """These checks time nothing: their rows must not reach the session's summary table."""
    monkeypatch.setattr(_bench, "ROWS", [])


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny steps: one thread is as fast, and far faster than two on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeBenchmark:
    """Just enough of pytest-benchmark's fixture for ``run_benchmark``: a fixed median, the function not run."""

    disabled = False

    def __init__(self, median_s: float) -> None:
        self.stats = SimpleNamespace(stats=SimpleNamespace(median=median_s))
        self.extra_info: Dict[str, Any] = {}
        self.group = ""

    def pedantic(self, fn: Any, **kwargs: Any) -> None:
        pass


def test_train_step_rows_do_the_same_work(one_thread: None) -> None:
    ours = count_flops(test_train_step._build_step("ours", 2, CPU))
    reference = count_flops(test_train_step._build_step("reference", 2, CPU))
    assert ours == reference


def test_epoch_rows_do_the_same_work_and_count_the_images_trained_on(one_thread: None) -> None:
    images = cifar_images(10)
    counts, flops = {}, {}
    for impl, build in (("ours", test_epoch.ours_epoch), ("reference", test_epoch.reference_epoch)):
        epoch = build(images, 4, CPU)
        counter = torch.utils.flop_counter.FlopCounterMode(display=False)
        with counter:
            counts[impl] = epoch()
        flops[impl] = counter.get_total_flops()
    # Our augmentation resamples with matrix products (counted); Lightly's runs in PIL (not counted).
    augment = test_epoch.BatchedSimSiamTransform(input_size=32, gaussian_blur=0.0)
    augment_flops = count_flops(lambda: augment(torch.from_numpy(images[:4]).permute(0, 3, 1, 2)))
    assert flops["ours"] - 2 * augment_flops == flops["reference"]
    assert counts == {"ours": 8, "reference": 8} and test_epoch.trained_images(10, 4) == 8
    assert test_epoch.trained_images(50_000, 512) == 49_664


@pytest.mark.parametrize("case", ["triplet batch_hard", "triplet semi_hard", "triplet batch_all"])
def test_pml_reference_computes_our_loss_without_normalising_again(case: str) -> None:
    # Inputs off the unit sphere: a reference that normalises them computes something else (and does more work).
    embeddings, labels = test_losses._inputs(64, CPU)
    embeddings = embeddings * torch.linspace(0.5, 2.0, 64)[:, None]
    mining = case.split()[1]
    ours = TripletLoss(0.2, mining, mean_over="active")(embeddings, labels)  # PML averages over the non-zero terms
    assert test_losses._pml(case)(embeddings, labels).item() == pytest.approx(ours.item(), rel=1e-5)


def test_pml_contrastive_reference_does_not_normalise_again() -> None:
    embeddings, labels = test_losses._inputs(32, CPU)
    loss = test_losses._pml("contrastive")
    assert loss(2 * embeddings, labels).item() != pytest.approx(loss(embeddings, labels).item())
    assert F.normalize(embeddings, dim=1).allclose(embeddings)


def test_every_gpu_area_measures_its_reference_in_the_gpu_session() -> None:
    # device_session.sh runs ``-m gpu`` only: a GPU row whose reference is a CPU-suite test would have no ratio.
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", str(BENCHMARKS), "-m", "gpu", "--collect-only", "-q", "-p", "no:randomly",
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=BENCHMARKS.parent, check=True,
    ).stdout
    by_file = defaultdict(list)
    for line in collected.splitlines():
        if "::" in line:
            by_file[line.split("::")[0]].append(line)
    assert len(by_file) >= 5, collected
    for path, ids in by_file.items():
        assert any("reference" in test_id for test_id in ids), f"{path}: no reference in the gpu session: {ids}"


def test_mfu_is_the_whole_batch_flops_over_the_step_time_and_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSE_PEAK_FLOPS", "1e12")
    row = test_train_step._record(FakeBenchmark(0.5), lambda: None, case="gpu bf16 channels_last B=8", impl="ours",
                                  batch=8, device=CPU, flops_per_image=10**9)
    assert row.items_per_s == 16.0
    assert row.extra["mfu"] == pytest.approx(8e9 / 0.5 / 1e12)


def test_epoch_time_and_800_epoch_projection() -> None:
    row = test_epoch._record(FakeBenchmark(2.0), lambda: None, case="cuda", impl="ours", images=49_664,
                             device=torch.device("cuda"))
    assert row.items_per_s == pytest.approx(24_832)
    assert row.extra["epoch_s"] == 2.0 and row.extra["800_epochs_min"] == pytest.approx(2.0 * 800 / 60)
