"""What the recipes' command-line entry points share: user errors as one line, and the loud embedded-data notice."""

from __future__ import annotations

import sys
from typing import Callable, Optional, TextIO

__all__ = ["USER_ERRORS", "embedded_data_notice", "run_cli"]

# What a user's arguments or data can cause: reported as one line, without a traceback. Anything else is a bug and
# keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)


def run_cli(fn: Callable[[], None], stderr: Optional[TextIO] = None) -> int:
    """Runs ``fn``; returns 0, or 2 after writing ``error: <first line of the message>`` to ``stderr`` (default
    ``sys.stderr``) when it raises one of :data:`USER_ERRORS`."""
    try:
        fn()
    except USER_ERRORS as error:
        text = str(error).strip() or type(error).__name__
        (stderr or sys.stderr).write(f"error: {text.splitlines()[0]}\n")
        return 2
    return 0


def embedded_data_notice(what: str) -> str:
    """A banner saying that the run fell back to the embedded digits, ``what`` naming the run (e.g. "a SMOKE RUN of
    the pipeline (6 epochs, 8px)")."""
    bar = "!" * 78
    return (f"{bar}\n!! No data found (use --data-dir, or --download when online): falling back to the\n"
            f"!! EMBEDDED scikit-learn digits. This is {what},\n!! not a CIFAR-10 result.\n{bar}")
