"""One run per output folder: a lock file that names the process holding the folder.

``<out-dir>/run.lock`` holds one JSON line, ``{"pid", "host", "process_start", "started", "command"}``. It is
created atomically (written to a temporary file, then hard-linked to its name, which fails when it exists) and
removed when the run ends, however it ends short of SIGKILL. A lock left behind is stale when it names this host and
a process that is gone: the pid is not running, is a zombie, or now belongs to a process started at another time
(``process_start``, from ``/proc``: pids are reused). A lock of another host is never judged; the error says how to
remove it. Checking and replacing a stale lock happen under ``flock`` on the folder, so two runs starting at once
on this host cannot both take it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

try:
    import fcntl
except ImportError:  # not POSIX: no folder mutex, the atomic create still keeps two runs apart
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "run.lock"


@contextlib.contextmanager
def locked_run_dir(out_dir: Path) -> Iterator[Path]:
    """Holds ``out_dir``'s lock while the block runs; ``ValueError`` naming the holder when another live run has it,
    and an ``OSError`` naming ``--out-dir`` when the folder cannot be written (read-only, full, not ours)."""
    lock = out_dir / LOCK_NAME
    mine = _holder_record()
    with _folder_mutex(out_dir):
        held = read_holder(lock)
        if held is not None and not is_stale(held):
            raise ValueError(_in_use_message(out_dir, lock, held))
        if held is not None:
            lock.unlink(missing_ok=True)  # stale: its run is gone
        _create(lock, mine)
    try:
        yield lock
    finally:
        with _folder_mutex(out_dir):
            if read_holder(lock) == mine:
                lock.unlink(missing_ok=True)


def read_holder(lock: Path) -> Optional[Dict[str, Any]]:
    """The lock's record, None when there is no lock, ``{}`` when it cannot be read as one."""
    try:
        record = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def is_stale(held: Dict[str, Any]) -> bool:
    """Whether ``held`` names a process of this host that is gone (see the module's docstring)."""
    pid = held.get("pid")
    if held.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool):
        return False
    if not _pid_running(pid):
        return True
    started = held.get("process_start")
    return started is not None and started != _process_start(pid)


def _holder_record() -> Dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": " ".join(sys.argv)[:300]}


def _in_use_message(out_dir: Path, lock: Path, held: Dict[str, Any]) -> str:
    if not held:
        return (f"--out-dir {out_dir} is locked by {lock}, which cannot be read: if no run uses the folder, delete "
                "the lock file; else choose another --out-dir")
    who = f"pid {held.get('pid')} on {held.get('host')}, started {held.get('started')}"
    if held.get("host") != socket.gethostname():
        return (f"--out-dir {out_dir} is in use by {who} (lock file {lock}): wait for that run to end, or choose "
                "another --out-dir; if it is gone, delete the lock file")
    return (f"--out-dir {out_dir} is in use by {who} (lock file {lock}): wait for that run to end, or choose "
            "another --out-dir")


def _create(lock: Path, record: Dict[str, Any]) -> None:
    """Creates ``lock`` with ``record``, whole or not at all; ``ValueError`` when it appeared meanwhile (another
    host), an ``OSError`` naming the folder when it cannot be written."""
    temporary = lock.with_name(f".{lock.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        temporary.write_text(json.dumps(record) + "\n")
        try:
            os.link(temporary, lock)
        except FileExistsError:
            raise ValueError(_in_use_message(lock.parent, lock, read_holder(lock) or {})) from None
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            _create_exclusive(lock, record)  # a file system without hard links
    except OSError as error:
        raise OSError(error.errno, f"--out-dir {lock.parent} is not writable: "
                                   f"{error.strerror or error}") from error
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def _create_exclusive(lock: Path, record: Dict[str, Any]) -> None:
    try:
        descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ValueError(_in_use_message(lock.parent, lock, read_holder(lock) or {})) from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(record) + "\n")


@contextlib.contextmanager
def _folder_mutex(folder: Path) -> Iterator[None]:
    """``flock`` on ``folder`` while the block runs: the lock's check-and-replace is one step on this host."""
    if fcntl is None:
        yield
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        yield  # the folder cannot be opened for reading: the atomic create still decides
        return
    try:
        with contextlib.suppress(OSError):  # e.g. ENOLCK on a network file system
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _pid_running(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process; a process of another user counts as running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] != "Z"


def _process_start(pid: int) -> Optional[int]:
    """When ``pid`` started (clock ticks after boot, from /proc), None where /proc is not available."""
    stat = _proc_stat(pid)
    return int(stat[19]) if stat else None


def _proc_stat(pid: int) -> Optional[list]:
    """The fields of /proc/<pid>/stat after the command (field 3, the state, first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()
