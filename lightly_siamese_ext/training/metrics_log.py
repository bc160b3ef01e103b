"""Per-epoch metrics as a CSV file (resumable, written atomically) and a PNG plot of selected columns."""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from lightly_siamese_ext._atomic import write_atomically, write_text_atomically

__all__ = ["MetricsLog", "pyplot_or_none"]

Value = Union[int, float, str, None]


def pyplot_or_none() -> Optional[Any]:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or None (with a warning) when matplotlib is not
    installed: plots are a convenience, and a long run on a bare machine must not die at its first plot."""
    try:
        import matplotlib
    except ImportError:
        warnings.warn("matplotlib is not installed (pip install 'lightly-siamese-ext[recipes]'): no plots are "
                      "written; the CSV files have the same numbers", RuntimeWarning, stacklevel=2)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class MetricsLog:
    """Appends one row per epoch to ``path`` (CSV). Columns are fixed by the first row written.

    On resume, :meth:`truncate` drops rows of epochs that a checkpoint does not cover, so a killed and resumed run
    ends with the same file as an uninterrupted one. Every write replaces the whole file atomically (a killed run
    leaves the previous rows or the new ones), and an existing file is read strictly: one that is torn (no line end
    after its last row), has a row with more or fewer fields than its header, or epochs that are not increasing
    integers is a ``ValueError`` naming the file and the line, never rows read with wrong values.
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self.rows: List[Dict[str, str]] = read_metrics_rows(self.path) if self.path.exists() else []

    @property
    def columns(self) -> List[str]:
        return list(self.rows[0]) if self.rows else []

    def truncate(self, epochs_done: int) -> None:
        """Keeps the rows with ``epoch <= epochs_done`` and rewrites the file."""
        self.rows = [row for row in self.rows if int(row["epoch"]) <= epochs_done]
        self._rewrite()

    def append(self, row: Mapping[str, Value]) -> None:
        """Writes one row; it must have an ``epoch`` column and, after the first row, the same columns."""
        if "epoch" not in row:
            raise ValueError(f"row must have an 'epoch' column, got columns {sorted(row)}")
        as_text = {key: "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
                   for key, value in row.items()}
        if self.rows and list(as_text) != self.columns:
            raise ValueError(f"row columns {list(as_text)} differ from the file's columns {self.columns}")
        self.rows.append(as_text)
        self._rewrite()

    def column(self, name: str) -> List[float]:
        return [float(row[name]) if row.get(name) not in (None, "") else math.nan for row in self.rows]

    def plot(self, path: Union[str, Path], columns: Sequence[str], title: Optional[str] = None) -> Optional[Path]:
        """One panel per column against the epoch; returns the PNG's path, or None without matplotlib (from the
        ``recipes`` extra)."""
        plt = pyplot_or_none()
        if plt is None:
            return None
        columns = [c for c in columns if c in self.columns]
        fig, axes = plt.subplots(1, max(len(columns), 1), figsize=(4 * max(len(columns), 1), 3.2), squeeze=False)
        epochs = self.column("epoch")
        for ax, name in zip(axes[0], columns):
            values = self.column(name)
            points = [(e, v) for e, v in zip(epochs, values) if not math.isnan(v)]
            if points:
                ax.plot(*zip(*points), marker="o" if len(points) < 30 else None)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        try:
            return write_atomically(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
        finally:
            plt.close(fig)

    def _rewrite(self) -> None:
        if not self.rows:
            self.path.unlink(missing_ok=True)
            return
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomically(self.path, text.getvalue())


def read_metrics_rows(path: Union[str, Path]) -> List[Dict[str, str]]:
    """The rows of a metrics CSV written by :class:`MetricsLog`; ``ValueError`` naming ``path`` and the line when it
    is torn or corrupt (see :class:`MetricsLog`)."""
    path = Path(path)

    def corrupt(detail: str) -> ValueError:
        return ValueError(f"{path} is torn or corrupt: {detail}")

    try:
        with path.open(newline="", encoding="utf-8") as handle:
            text = handle.read()
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error) as error:
        raise corrupt(f"not a CSV file ({error})") from error
    if "\0" in text:  # what a crash leaves in blocks that were allocated but never written
        raise corrupt(f"line {text.count(chr(10), 0, text.index(chr(0))) + 1} holds NUL bytes")
    if not text.endswith("\n"):
        raise corrupt(f"its last line ({len(lines)}) ends without a line end: it was cut while being written"
                      if text else "it is empty")
    header, rows = lines[0], lines[1:]
    if "epoch" not in header or len(set(header)) != len(header) or "" in header:
        raise corrupt(f"line 1 is not a header with unique names and an 'epoch' column: {header}")
    previous = -1
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise corrupt(f"line {number} has {len(row)} fields, the header {len(header)}")
        epoch = row[header.index("epoch")]
        if not epoch.isdigit() or int(epoch) <= previous:
            raise corrupt(f"line {number} has epoch {epoch!r} after epoch {previous} (epochs are increasing integers)")
        previous = int(epoch)
    return [dict(zip(header, row)) for row in rows]
