"""Multi-process training without a framework: spawn N workers (or join a ``torchrun`` launch) with
``torch.distributed`` initialised: gloo on CPU, NCCL on CUDA (one GPU per rank)."""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Mapping, Optional, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightly_siamese_ext._validation import check_positive_int

__all__ = [
    "available_cores",
    "cpu_threads_per_rank",
    "default_backend",
    "find_free_port",
    "launch",
    "launched_by_torchrun",
    "ranks_agree",
]

Worker = Callable[..., Any]

# Set by the user, these fix torch's thread count in every process: launch() leaves them alone.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_backend(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset`` or a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_threads_per_rank(
    processes: int,
    backend: str,
    threads: Optional[int] = None,
    environ: Optional[Mapping[str, str]] = None,
    cores: Optional[int] = None,
) -> Optional[int]:
    """The torch thread count for each of ``processes`` ranks on this machine, or None to leave torch's own.

    ``threads`` if given; else nothing for NCCL (GPU) ranks or when ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` is
    set (torch already follows it; ``torchrun`` sets it to 1); else ``max(1, cores // processes)``: each process
    would otherwise take a thread per core, and N of them on the same cores oversubscribe them (on 2 cores, 2
    ranks of 2 threads cut the batched augmentation from 21.8k to 339 images/s).
    """
    if threads is not None:
        return check_positive_int(threads, "threads_per_rank")
    environ = os.environ if environ is None else environ
    if backend == "nccl" or any(environ.get(name) for name in THREAD_ENV_VARS):
        return None
    return max(1, (available_cores() if cores is None else cores) // processes)


def launch(
    fn: Worker,
    world_size: int,
    args: Tuple[Any, ...] = (),
    backend: Optional[str] = None,
    threads_per_rank: Optional[int] = None,
) -> None:
    """Runs ``fn(rank, world_size, *args)`` on ``world_size`` ranks with a process group set up.

    - ``world_size == 1`` and no ``torchrun``: runs in this process, without a process group.
    - Under ``torchrun``: joins its process group (``world_size`` must match ``WORLD_SIZE``).
    - Otherwise: spawns ``world_size`` processes on this machine (``fn`` and ``args`` must be picklable).
    ``backend`` defaults to NCCL when CUDA is available, else gloo. CPU ranks divide the cores: each sets
    ``torch.set_num_threads`` to :func:`cpu_threads_per_rank` (``threads_per_rank`` if given, else
    ``max(1, cores // world_size)`` unless ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    backend = backend or default_backend("cuda" if torch.cuda.is_available() else "cpu")
    if launched_by_torchrun():
        env_world = int(os.environ["WORLD_SIZE"])
        if env_world != world_size:
            raise ValueError(f"world_size={world_size} but torchrun started WORLD_SIZE={env_world} processes")
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        threads = cpu_threads_per_rank(local_processes, backend, threads_per_rank)
        _run_rank(int(os.environ["RANK"]), world_size, backend, fn, args, "env://", threads)
        return
    if world_size == 1:
        if threads_per_rank is not None:
            torch.set_num_threads(cpu_threads_per_rank(1, backend, threads_per_rank))  # type: ignore[arg-type]
        fn(0, 1, *args)
        return
    init_method = f"tcp://127.0.0.1:{find_free_port()}"
    threads = cpu_threads_per_rank(world_size, backend, threads_per_rank)
    mp.spawn(_run_rank, args=(world_size, backend, fn, args, init_method, threads), nprocs=world_size, join=True)


def _run_rank(
    rank: int,
    world_size: int,
    backend: str,
    fn: Worker,
    args: Tuple[Any, ...],
    init_method: str,
    threads: Optional[int] = None,
) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


@torch.no_grad()
def ranks_agree(module: torch.nn.Module, atol: float = 0.0, include_buffers: bool = False) -> bool:
    """True when every rank holds the same parameters as rank 0 (a DDP sanity check).

    Buffers are compared only with ``include_buffers``: DDP keeps batch-norm running statistics per rank (it
    broadcasts rank 0's at each forward), so they legitimately differ after the last step unless SyncBN is used.

    Broadcasts rank 0's flattened state (one tensor) and compares it on every rank; the verdict is all-reduced, so
    all ranks return the same answer. Without a process group it is trivially True.
    """
    if not dist.is_initialized():
        return True
    named = module.state_dict() if include_buffers else dict(module.named_parameters())
    tensors = [t.detach().float().flatten() for t in named.values() if t.is_floating_point()]
    local = torch.cat(tensors)
    reference = local.clone()
    dist.broadcast(reference, src=0)
    mismatch = torch.tensor([float(not torch.allclose(local, reference, rtol=0.0, atol=atol))], device=local.device)
    dist.all_reduce(mismatch)
    return bool(mismatch.item() == 0)
