"""Multi-process training without a framework: spawn N workers (or join a ``torchrun`` launch) with
``torch.distributed`` initialised: gloo on CPU, NCCL on CUDA (one GPU per rank)."""

from __future__ import annotations

import ctypes
import multiprocessing.connection
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightly_siamese_ext._validation import check_positive_int

__all__ = [
    "RankFailedError",
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
    """The process-group backend for ranks on ``device_type``: NCCL for ``"cuda"``, gloo otherwise."""
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
    - Otherwise: spawns ``world_size`` processes on this machine (``fn`` and ``args`` must be picklable). They die
      with this process (killed, interrupted or failed), and the first rank that fails stops the others and is
      raised here as a :class:`RankFailedError` naming it.
    ``backend`` defaults to NCCL when CUDA is available, else gloo. CPU ranks divide the cores: each sets
    ``torch.set_num_threads`` to :func:`cpu_threads_per_rank` (``threads_per_rank`` if given, else
    ``max(1, cores // world_size)`` unless ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set).
    """
    check_positive_int(world_size, "world_size")
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
    _spawn_bound_to_launcher(world_size, backend, fn, args, init_method, threads)


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


class RankFailedError(RuntimeError):
    """A spawned rank failed and the other ranks were stopped. ``rank`` and ``pid`` name it; ``error`` is the
    exception it raised (None when a signal killed it or it exited on its own). The message's first line says what
    happened; for an exception, the rank's traceback follows."""

    def __init__(self, message: str, rank: int, pid: Optional[int], error: Optional[BaseException]) -> None:
        super().__init__(message)
        self.rank, self.pid, self.error = rank, pid, error


# ------------------------------------------------------------------------------------- ranks bound to the launcher
# How often a rank checks that its launcher is still its parent, and how long stopped ranks get to exit on SIGTERM.
_WATCHDOG_INTERVAL_S = 0.5
_STOP_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _spawn_bound_to_launcher(world_size: int, backend: str, fn: Worker, args: Tuple[Any, ...],
                             init_method: str, threads: Optional[int]) -> None:
    """:func:`_run_rank` of ``fn`` in ``world_size`` spawned processes, joined. Any exception here (an interrupt or
    SIGTERM turned into one) stops them; a rank that fails stops the others and becomes a
    :class:`RankFailedError`."""
    error_dir = Path(tempfile.mkdtemp(prefix="lse-rank-errors-"))
    context = mp.get_context("spawn")
    processes: List[Any] = []
    run_rank_args = (world_size, backend, _RecordingErrors(fn, str(error_dir)), args, init_method, threads)
    try:
        for rank in range(world_size):
            process = context.Process(target=_bound_rank, args=(rank, os.getpid(), str(error_dir), run_rank_args),
                                      name=f"rank{rank}", daemon=False)  # not daemonic: ranks may start workers
            process.start()
            processes.append(process)
        _join_ranks(processes, error_dir)
    finally:
        _stop_ranks(processes)
        shutil.rmtree(error_dir, ignore_errors=True)


class _RecordingErrors:
    """``fn`` leaving its exception for the launcher the moment it is raised: before ``_run_rank`` tears the process
    group down, which makes the other ranks' collectives fail too, later (their errors are not the cause)."""

    def __init__(self, fn: Worker, error_dir: str) -> None:
        self.fn, self.error_dir = fn, error_dir

    def __call__(self, rank: int, *args: Any) -> Any:
        try:
            return self.fn(rank, *args)
        except Exception as error:
            _record_rank_error(Path(self.error_dir), rank, error)
            raise


def _bound_rank(rank: int, launcher_pid: int, error_dir: str, run_rank_args: Tuple[Any, ...]) -> None:
    """A spawned rank: bound to its launcher, its exception recorded for the launcher instead of printed."""
    _die_with_launcher(launcher_pid)
    try:
        _run_rank(rank, *run_rank_args)
    except KeyboardInterrupt:  # Ctrl-C reaches every rank of the terminal's process group; the launcher reports it
        sys.exit(130)
    except Exception as error:
        if not _record_path(Path(error_dir), rank).exists():  # failed outside fn, e.g. joining the process group
            _record_rank_error(Path(error_dir), rank, error)
        sys.exit(1)


def _die_with_launcher(launcher_pid: int) -> None:
    """Ends this process when ``launcher_pid`` (its parent) ends, however it ends: on Linux the kernel sends it
    SIGKILL (``prctl(PR_SET_PDEATHSIG)``; torch's own SIGINT is ignored by ranks of a launcher started in the
    background, which then trained on), and a watchdog thread exits once the parent is no longer the launcher."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl in this libc: the watchdog remains
    if os.getppid() != launcher_pid:  # the launcher died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch_launcher, args=(launcher_pid,), name="launcher-watchdog", daemon=True).start()


def _watch_launcher(launcher_pid: int) -> None:
    while os.getppid() == launcher_pid:
        time.sleep(_WATCHDOG_INTERVAL_S)
    os._exit(1)


def _record_rank_error(error_dir: Path, rank: int, error: BaseException) -> None:
    """Leaves ``error`` (pickled when it can be, else its type and text) and its traceback for the launcher."""
    record = {"type": type(error).__name__, "message": str(error), "traceback": traceback.format_exc()}
    try:
        record["error"] = pickle.dumps(error)
    except Exception:  # an exception that does not pickle is reported by type and text
        pass
    try:
        _record_path(error_dir, rank).write_bytes(pickle.dumps(record))
    except OSError:  # e.g. a full /tmp: the launcher then reports the exit code, and the traceback is here
        sys.stderr.write(record["traceback"])


def _record_path(error_dir: Path, rank: int) -> Path:
    return error_dir / f"rank{rank}.pickle"


def _join_ranks(processes: List[Any], error_dir: Path) -> None:
    """Waits until every rank has exited 0; once one has not, stops the others and raises the
    :class:`RankFailedError` of the rank that failed first (:func:`_first_failure`)."""
    pending = {process.sentinel: rank for rank, process in enumerate(processes)}
    while pending:
        for sentinel in multiprocessing.connection.wait(list(pending)):
            rank = pending.pop(sentinel)  # type: ignore[call-overload]
            processes[rank].join()
            if processes[rank].exitcode != 0:
                ended = [r for r, process in enumerate(processes) if process.exitcode not in (0, None)]
                _stop_ranks(processes)  # the ranks it ends did not fail on their own
                first = _first_failure(ended, len(processes), error_dir)
                raise _rank_failure(first, processes[first].pid, processes[first].exitcode, error_dir)


def _first_failure(ended: List[int], world_size: int, error_dir: Path) -> int:
    """The rank whose failure made the others fail (their collectives fail once a peer is gone): one of the
    ``ended`` ranks that left no error record (killed by a signal, e.g. the OOM killer, or exited), else the rank
    with the earliest record."""
    silent = [rank for rank in ended if not _record_path(error_dir, rank).exists()]
    recorded = [rank for rank in range(world_size) if _record_path(error_dir, rank).exists()]
    if silent or not recorded:
        return (silent or ended)[0]
    return min(recorded, key=lambda rank: _record_path(error_dir, rank).stat().st_mtime_ns)


def _rank_failure(rank: int, pid: Optional[int], exitcode: int, error_dir: Path) -> RankFailedError:
    record_path = _record_path(error_dir, rank)
    stopped = "; the other ranks were stopped"
    if not record_path.exists():
        how = (f"was killed by {_signal_name(-exitcode)}" if exitcode < 0 else f"exited with code {exitcode}")
        return RankFailedError(f"rank {rank} (pid {pid}) {how}{stopped}", rank, pid, None)
    record = pickle.loads(record_path.read_bytes())
    error: Optional[BaseException] = None
    try:
        error = pickle.loads(record["error"]) if "error" in record else None
    except Exception:  # e.g. a class the launcher cannot import
        error = None
    first_line = (record["message"].strip().splitlines() or [""])[0]
    return RankFailedError(f"rank {rank} (pid {pid}) failed: {record['type']}: {first_line}{stopped}\n\n"
                           f"{record['traceback']}", rank, pid, error)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stop_ranks(processes: List[Any]) -> None:
    """SIGTERM to the ranks still running, SIGKILL to those still there after a grace period; all joined."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + _STOP_GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


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
