import pytest
import torch
import torch.distributed as dist
from lightly.utils import dist as lightly_dist

from lightly_siamese_ext.training import launch
from lightly_siamese_ext.training.distributed import THREAD_ENV_VARS, available_cores, cpu_threads_per_rank, ranks_agree


def _all_reduce_rank(rank: int, world_size: int, out_dir: str) -> None:
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    assert lightly_dist.world_size() == world_size and lightly_dist.rank() == rank
    torch.manual_seed(0)
    same = torch.nn.Linear(3, 2)
    differs = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(differs.weight, float(rank))
    assert ranks_agree(same) and not ranks_agree(differs)
    bn = torch.nn.BatchNorm1d(2)
    bn.running_mean.fill_(float(rank))
    assert ranks_agree(bn) and not ranks_agree(bn, include_buffers=True)
    torch.save((value, torch.get_num_threads()), f"{out_dir}/rank{rank}.pt")


def test_launch_spawns_ranks_with_a_process_group_that_divide_the_cores(tmp_path, monkeypatch) -> None:
    for name in THREAD_ENV_VARS:  # the children inherit the environment: torch's own default would apply
        monkeypatch.delenv(name, raising=False)
    launch(_all_reduce_rank, world_size=2, args=(str(tmp_path),), backend="gloo")
    threads = cpu_threads_per_rank(2, "gloo")
    assert threads is not None and threads == max(1, available_cores() // 2)
    for rank in range(2):
        value, rank_threads = torch.load(tmp_path / f"rank{rank}.pt")
        assert value.item() == 3.0 and rank_threads == threads


def test_cpu_ranks_divide_the_cores_unless_the_threads_are_set() -> None:
    assert cpu_threads_per_rank(2, "gloo", environ={}, cores=2) == 1
    assert cpu_threads_per_rank(2, "gloo", environ={}, cores=16) == 8
    assert cpu_threads_per_rank(3, "gloo", environ={}, cores=2) == 1  # never 0
    assert cpu_threads_per_rank(2, "gloo", environ={"OMP_NUM_THREADS": "3"}, cores=16) is None  # torch follows it
    assert cpu_threads_per_rank(2, "gloo", environ={"MKL_NUM_THREADS": "2"}, cores=16) is None
    assert cpu_threads_per_rank(2, "gloo", environ={"OMP_NUM_THREADS": ""}, cores=16) == 8  # empty: not set
    assert cpu_threads_per_rank(2, "nccl", environ={}, cores=16) is None  # GPU ranks keep torch's default
    assert cpu_threads_per_rank(2, "gloo", threads=3, environ={"OMP_NUM_THREADS": "1"}, cores=2) == 3  # explicit
    with pytest.raises(ValueError, match="threads_per_rank must be a positive int"):
        cpu_threads_per_rank(2, "gloo", threads=0)


def test_an_explicit_thread_count_applies_to_a_single_process_run_too() -> None:
    before = torch.get_num_threads()
    seen = []
    try:
        launch(lambda rank, world: seen.append(torch.get_num_threads()), 1, threads_per_rank=1)
    finally:
        torch.set_num_threads(before)
    assert seen == [1]


def test_single_process_runs_inline_without_a_group(tmp_path) -> None:
    seen = []
    launch(lambda rank, world, tag: seen.append((rank, world, tag, dist.is_initialized())), 1, args=("x",))
    assert seen == [(0, 1, "x", False)]


@pytest.mark.parametrize("world_size, error", [(0, ValueError), (-2, ValueError), (True, TypeError), (1.5, TypeError)])
def test_a_bad_world_size_is_refused_by_name(world_size, error) -> None:
    with pytest.raises(error, match="world_size"):
        launch(_all_reduce_rank, world_size=world_size)
