import math

import pytest
import torch
from lightly.utils import debug, dist

from lightly_siamese_ext.evaluation import CollapseMonitor


def _gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_random_gaussian_outputs_are_healthy() -> None:
    monitor = CollapseMonitor()
    for seed in range(4):
        monitor.update(_gaussian(512, 128, seed))
    assert monitor.ratio == pytest.approx(1.0, abs=0.03)
    assert monitor.compute() == pytest.approx(1 / math.sqrt(128), rel=0.03)
    assert not monitor.is_collapsed


def test_constant_outputs_are_collapsed() -> None:
    monitor = CollapseMonitor()
    z = torch.randn(1, 64).repeat(256, 1) * 1000.0
    monitor.update(z)
    monitor.update(z[:10] * 3.0)  # the same direction at another scale: the same normalised vector
    assert monitor.compute() == pytest.approx(0.0, abs=1e-6)
    assert monitor.is_collapsed


def test_subspace_outputs_give_sqrt_of_used_fraction() -> None:
    z = torch.zeros(4096, 64)
    z[:, :16] = _gaussian(4096, 16, 0)
    monitor = CollapseMonitor(threshold=0.6)
    monitor.update(z)
    assert monitor.ratio == pytest.approx(math.sqrt(16 / 64), rel=0.05)
    assert monitor.is_collapsed  # below the threshold chosen here


def test_equals_lightly_on_one_batch() -> None:
    z = _gaussian(100, 32, 0) + 2.0
    monitor = CollapseMonitor()
    monitor.update(z)
    assert monitor.compute() == pytest.approx(debug.std_of_l2_normalized(z).item(), rel=1e-5)


def test_accumulation_equals_lightly_on_the_concatenation() -> None:
    # An offset makes the normalised outputs nearly constant: naive sum-of-squares would cancel badly.
    batches = [_gaussian(n, 16, seed) * 0.01 + 5.0 for seed, n in enumerate([7, 64, 1, 33])]
    monitor = CollapseMonitor()
    for z in batches:
        monitor.update(z)
    expected = debug.std_of_l2_normalized(torch.cat(batches)).item()
    assert monitor.num_samples == 105
    assert monitor.compute() == pytest.approx(expected, rel=1e-4)


def test_reset_low_precision_and_no_grad() -> None:
    monitor = CollapseMonitor()
    monitor.update(torch.zeros(8, 4).fill_(1.0))
    monitor.reset()
    z = _gaussian(64, 8, 0).requires_grad_()
    monitor.update(z.bfloat16())
    expected = debug.std_of_l2_normalized(z.detach().bfloat16().float()).item()
    assert monitor.compute() == pytest.approx(expected, rel=1e-5)
    assert monitor.num_samples == 64


def test_gather_distributed_merges_the_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    mine, theirs = _gaussian(40, 8, 0) + 1.0, _gaussian(90, 8, 1)
    other_rank = CollapseMonitor()
    other_rank.update(theirs)
    other_state = torch.cat([torch.tensor([90.0]), other_rank._mean, other_rank._m2])
    monkeypatch.setattr(dist, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "gather", lambda local: (local, other_state))
    monitor = CollapseMonitor(gather_distributed=True)
    monitor.update(mine)
    expected = debug.std_of_l2_normalized(torch.cat([mine, theirs])).item()
    assert monitor.compute() == pytest.approx(expected, rel=1e-5)
    local_only = CollapseMonitor()
    local_only.update(mine)
    assert local_only.compute() == pytest.approx(debug.std_of_l2_normalized(mine).item(), rel=1e-5)


def test_bad_input() -> None:
    monitor = CollapseMonitor()
    with pytest.raises(ValueError, match="call update"):
        monitor.compute()
    with pytest.raises(ValueError, match=r"z must have shape \(B, D\)"):
        monitor.update(torch.randn(8))
    with pytest.raises(TypeError, match="z must be a floating-point"):
        monitor.update(torch.ones(8, 4, dtype=torch.long))
    monitor.update(torch.randn(1, 4))
    with pytest.raises(ValueError, match="at least 2 outputs"):
        monitor.compute()
    with pytest.raises(ValueError, match="z must have 4 columns"):
        monitor.update(torch.randn(8, 5))
    with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
        CollapseMonitor(threshold=0.0)
