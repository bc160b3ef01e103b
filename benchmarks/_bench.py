"""Shared benchmark harness: time ours and a reference on identical inputs, record
throughput and peak memory in pytest-benchmark's ``extra_info``, and collect rows
for the side-by-side summary that ``conftest.py`` prints at the end of the session.

Convention for every benchmark file (one file per area)::

    def test_something(benchmark, impl, ...):
        fn = build_callable(impl, ...)          # ours or the reference
        run_benchmark(benchmark, fn, area="losses", case="triplet batch_hard B=1024",
                      impl=impl, items=1024, unit="emb/s", device=device)

``impl`` is ``"ours"`` or ``"reference"`` (the name of the reference goes into
``reference=``); the summary pairs the two rows that share ``area`` and ``case``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, Iterator, List, Optional

import torch

__all__ = ["BenchRow", "ROWS", "peak_memory_bytes", "run_benchmark", "synchronize"]


@dataclasses.dataclass
class BenchRow:
    area: str
    case: str
    impl: str
    reference: str
    unit: str
    items_per_s: float  # NaN when timing was disabled
    median_s: float
    peak_bytes: Optional[int]
    extra: dict
    compare_to: Optional[str] = None  # an ours-only row compares with the reference row of this case


ROWS: List[BenchRow] = []


@contextlib.contextmanager
def torch_threads(count: Optional[int]) -> Iterator[int]:
    """``torch.set_num_threads(count)`` for a block, restored after; yields the count in force (None: torch's
    current setting)."""
    saved = torch.get_num_threads()
    count = count or saved
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(saved)


def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device | str) -> int:
    """Peak extra memory (bytes) that one call of ``fn`` allocates on ``device``.

    CUDA: the caching allocator's peak counter. CPU: the allocation timeline of
    torch's profiler (every tensor allocation and free, in order), so the figure
    is the high-water mark of live tensor memory, independent of the OS allocator.
    """
    device = torch.device(device)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)

    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    allocations = []

    def walk(node: Any) -> None:
        if node.tag == _EventType.Allocation:
            allocations.append((node.start_time_ns, node.extra_fields.alloc_size))
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    allocations.sort(key=lambda item: item[0])
    live = peak = 0
    for _, size in allocations:
        live += size
        peak = max(peak, live)
    return int(peak)


def run_benchmark(
    benchmark: Any,
    fn: Callable[[], Any],
    *,
    area: str,
    case: str,
    impl: str,
    items: int,
    unit: str,
    device: torch.device | str,
    reference: str = "",
    rounds: int = 5,
    warmup_rounds: int = 1,
    measure_memory: bool = False,
    compare_to: Optional[str] = None,
    **extra: Any,
) -> BenchRow:
    """Time ``fn`` (synchronising CUDA after each call) and record a summary row.

    ``items`` is how many images / embeddings / pairs one call processes; the
    throughput is ``items / median time``. ``compare_to`` names another case of
    the same area whose reference row this (ours) row is compared with, so one
    reference run can serve several of our configurations. With ``--benchmark-disable`` the
    function runs once (a smoke check) and the throughput is NaN.
    """
    if impl not in ("ours", "reference"):
        raise ValueError(f"impl must be 'ours' or 'reference', got {impl!r}")
    device = torch.device(device)

    def call() -> Any:
        out = fn()
        synchronize(device)
        return out

    peak = peak_memory_bytes(call, device) if measure_memory else None
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
    stats = getattr(benchmark, "stats", None)
    median = float(stats.stats.median) if stats is not None else math.nan
    row = BenchRow(
        area=area,
        case=case,
        impl=impl,
        reference=reference,
        unit=unit,
        items_per_s=items / median if median and not math.isnan(median) else math.nan,
        median_s=median,
        peak_bytes=peak,
        extra=dict(extra),
        compare_to=compare_to,
    )
    benchmark.group = f"{area}: {case}"
    benchmark.extra_info.update(
        area=area,
        case=case,
        impl=impl,
        reference=reference,
        unit=unit,
        items=items,
        items_per_s=row.items_per_s,
        peak_bytes=peak,
        device=str(device),
        **extra,
    )
    ROWS.append(row)
    return row
