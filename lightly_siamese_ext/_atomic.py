"""Files written whole or not at all: a temporary file in the same folder, flushed to the disk, then renamed over
the target. A run killed at any point leaves the previous file or the new one, never a torn one; a write that fails
(a full disk, a read-only folder) leaves the previous file and no temporary file, and raises an ``OSError`` that
names the file."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

__all__ = ["TEMPORARY_SUFFIX", "write_atomically", "write_text_atomically"]

PathLike = Union[str, "os.PathLike[str]"]
#: What the temporary files end with (``.<name>.<random>.tmp``): a folder can be cleaned of the ones a killed run
#: left behind.
TEMPORARY_SUFFIX = ".tmp"


def write_atomically(path: PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Calls ``write(handle)`` on a temporary file next to ``path`` and renames it to ``path`` once it is on the
    disk. Any failure removes the temporary file; an ``OSError`` (also one that torch's serialiser reports as a
    ``RuntimeError``, e.g. "unexpected pos" on a full disk) becomes an ``OSError`` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
        # 0o666 less the umask, as open(path, "w") would give the file itself.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _naming(path, error) from error
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        cause = _os_error_in(error)
        if cause is not None:
            raise _naming(path, cause) from error
        raise
    return path


def write_text_atomically(path: PathLike, text: str) -> Path:
    """:func:`write_atomically` of ``text`` as UTF-8."""
    return write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def _os_error_in(error: BaseException) -> Optional[OSError]:
    """``error`` if it is an ``OSError``, else the first one it was raised from or during (torch's serialiser
    raises a ``RuntimeError`` while handling the ``OSError`` of the file object it writes to)."""
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _naming(path: Path, error: OSError) -> OSError:
    """An ``OSError`` of the same errno whose message names ``path`` (and says what a full disk means)."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (the previous file, if any, is intact)"
    return OSError(error.errno, f"could not write {path}: {reason}")

