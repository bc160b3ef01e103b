"""Per-epoch metrics as a CSV file (resumable) and a PNG plot of selected columns."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

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
    ends with the same file as an uninterrupted one.
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self.rows: List[Dict[str, str]] = []
        if self.path.exists():
            with self.path.open(newline="") as handle:
                self.rows = list(csv.DictReader(handle))

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists() or len(self.rows) == 1
        with self.path.open("w" if new_file else "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(as_text))
            if new_file:
                writer.writeheader()
            writer.writerow(as_text)

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
        path = Path(path)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def _rewrite(self) -> None:
        if not self.rows:
            self.path.unlink(missing_ok=True)
            return
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
