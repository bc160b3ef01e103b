import torch
import torch.distributed as dist
from lightly.utils import dist as lightly_dist

from lightly_siamese_ext.training import launch
from lightly_siamese_ext.training.distributed import ranks_agree


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
    torch.save(value, f"{out_dir}/rank{rank}.pt")


def test_launch_spawns_ranks_with_a_process_group(tmp_path) -> None:
    launch(_all_reduce_rank, world_size=2, args=(str(tmp_path),), backend="gloo")
    for rank in range(2):
        assert torch.load(tmp_path / f"rank{rank}.pt").item() == 3.0


def test_single_process_runs_inline_without_a_group(tmp_path) -> None:
    seen = []
    launch(lambda rank, world, tag: seen.append((rank, world, tag, dist.is_initialized())), 1, args=("x",))
    assert seen == [(0, 1, "x", False)]
