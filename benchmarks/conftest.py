"""Benchmark session plumbing: GPU marker skipping, device fixtures, and the
side-by-side summary table (ours vs reference, with ratios) printed at the end.

``pytest benchmarks/`` times everything; ``--benchmark-disable`` runs each
benchmark once as a smoke check (what CI does); ``--bench-summary PATH`` also
writes the summary as a Markdown table.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Optional

import pytest
import torch

from _bench import ROWS, BenchRow


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-summary",
        default=None,
        help="write the ours-vs-reference summary table (Markdown) to this path",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def cuda_device() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device("cuda")


def _fmt_rate(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.1f}"


def _fmt_mem(value: Optional[int]) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def _ratio(a: float, b: float) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _notes(row: BenchRow) -> str:
    parts = []
    for key, value in row.extra.items():
        if value is None:
            continue
        if key == "flops_per_image":
            parts.append(f"{value / 1e9:.2f} GFLOP/img")
        elif key == "mfu":
            parts.append(f"MFU {100 * value:.1f}%")
        elif isinstance(value, float):
            parts.append(f"{key}={value:.3g}")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def summary_lines() -> List[str]:
    pairs: "OrderedDict[tuple, dict]" = OrderedDict()
    for row in ROWS:
        pairs.setdefault((row.area, row.case), {})[row.impl] = row
    lines = [
        "| area | case | unit | ours | reference | speed ratio ours/ref | ours peak mem | ref peak mem "
        "| mem ratio ours/ref | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (area, case), by_impl in pairs.items():
        ours: Optional[BenchRow] = by_impl.get("ours")
        ref: Optional[BenchRow] = by_impl.get("reference")
        if ref is None and ours is not None and ours.compare_to:
            ref = pairs.get((area, ours.compare_to), {}).get("reference")
        any_row = ours or ref
        assert any_row is not None
        ref_name = (ref.reference or "reference") if ref else (ours.reference if ours else "")
        mem_ratio = "-"
        if ours and ref and ours.peak_bytes and ref.peak_bytes:
            mem_ratio = f"{ours.peak_bytes / ref.peak_bytes:.2f}x"
        lines.append(
            f"| {area} | {case} | {any_row.unit} "
            f"| {_fmt_rate(ours.items_per_s) if ours else '-'} "
            f"| {_fmt_rate(ref.items_per_s) + ' (' + ref_name + ')' if ref else '-'} "
            f"| {_ratio(ours.items_per_s, ref.items_per_s) if ours and ref else '-'} "
            f"| {_fmt_mem(ours.peak_bytes) if ours else '-'} "
            f"| {_fmt_mem(ref.peak_bytes) if ref else '-'} | {mem_ratio} | {_notes(ours or ref)} |"
        )
    return lines


def _write_summary(config: pytest.Config, lines: List[str]) -> None:
    path = config.getoption("--bench-summary")
    if path:
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")


def pytest_runtest_teardown(item: pytest.Item) -> None:
    # After every test, not only at the end: a session killed at its time limit keeps the rows it finished.
    if ROWS:
        _write_summary(item.config, summary_lines())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if not ROWS:
        return
    lines = summary_lines()
    terminalreporter.section("ours vs reference")
    for line in lines:
        terminalreporter.write_line(line)
    _write_summary(config, lines)
