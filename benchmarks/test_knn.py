"""kNN evaluation (k=200, temperature 0.1): our ``knn_predict`` vs lightly's ``knn_predict`` on identical,
L2-normalised features, both with lightly's arguments and its (D, N) bank.

Two references: lightly's function in one call over all queries, and in chunks of 512 queries, which is how lightly's
``BenchmarkModule``/``KNNClassifier`` call it (once per validation batch). Lightly receives the bank as the (D, N)
contiguous tensor it documents, and so does ours (the same call, a drop-in).

Full size (the issue's): bank 50,000 x 512, 10,000 queries, 10 classes; and 1,000 classes (2,000 queries) against
the chunked reference, whose (512 * 200, C) one-hot grows with C. With ``--benchmark-disable`` (CI's smoke run) the
CPU cases shrink to a 5,000 x 512 bank and 1,000 queries. GPU cases (marked ``gpu``) use the full size.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import pytest
import torch
import torch.nn.functional as F
from _bench import run_benchmark
from lightly.utils.benchmarking import knn_predict

from lightly_siamese_ext.evaluation import knn_predict as our_knn_predict

AREA = "knn eval"
DIM, K, TEMPERATURE, LIGHTLY_CHUNK = 512, 200, 0.1, 512
FULL = (50_000, 10_000)  # bank rows, queries
SMOKE = (5_000, 1_000)

_CACHE: Dict[Tuple[int, int, int, str], Tuple[torch.Tensor, ...]] = {}


def _inputs(num_bank: int, num_query: int, num_classes: int, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """Normalised query (Q, D), bank (N, D) and its (D, N) contiguous copy for lightly, bank labels (N,)."""
    key = (num_bank, num_query, num_classes, str(device))
    if key not in _CACHE:
        _CACHE.clear()  # one size at a time: the full-size tensors are 300 MB
        generator = torch.Generator().manual_seed(0)
        bank = F.normalize(torch.randn(num_bank, DIM, generator=generator), dim=1).to(device)
        query = F.normalize(torch.randn(num_query, DIM, generator=generator), dim=1).to(device)
        labels = torch.randint(0, num_classes, (num_bank,), generator=generator).to(device)
        _CACHE[key] = (query, bank, bank.t().contiguous(), labels)
    return _CACHE[key]


def _build(impl: str, reference: str, num_bank: int, num_query: int, num_classes: int, device: torch.device
           ) -> Callable[[], torch.Tensor]:
    query, bank, bank_dn, labels = _inputs(num_bank, num_query, num_classes, device)
    if impl == "ours":
        return lambda: our_knn_predict(query, bank_dn, labels, num_classes, knn_k=K, knn_t=TEMPERATURE)
    if reference == "one call":
        return lambda: knn_predict(query, bank_dn, labels, num_classes, knn_k=K, knn_t=TEMPERATURE)
    return lambda: torch.cat([
        knn_predict(query[i : i + LIGHTLY_CHUNK], bank_dn, labels, num_classes, knn_k=K, knn_t=TEMPERATURE)
        for i in range(0, num_query, LIGHTLY_CHUNK)
    ])


def _run(benchmark, impl: str, reference: str, num_classes: int, device: torch.device, size: Tuple[int, int],
         rounds: int) -> None:
    num_bank, num_query = size
    fn = _build(impl, reference, num_bank, num_query, num_classes, device)
    run_benchmark(
        benchmark, fn, area=AREA,
        case=f"bank {num_bank:,}x{DIM}, {num_query:,} queries, k={K}, C={num_classes}, vs {reference}",
        impl=impl, items=num_query, unit="queries/s", device=device,
        reference=f"lightly knn_predict, {reference}", measure_memory=True, rounds=rounds, warmup_rounds=0,
        bank=num_bank, queries=num_query, k=K, classes=num_classes,
    )


# ----------------------------------------------------------------------------------------------------- CPU
@pytest.mark.parametrize("impl", ["ours", "reference"])
@pytest.mark.parametrize(
    "reference, num_classes, query_fraction",
    [("one call", 10, 1), (f"chunks of {LIGHTLY_CHUNK}", 10, 1), (f"chunks of {LIGHTLY_CHUNK}", 1000, 5)],
)
def test_knn_cpu(benchmark, impl: str, reference: str, num_classes: int, query_fraction: int) -> None:
    # 1000 classes: a fifth of the queries, since lightly's one-hot makes that reference ~8x slower.
    num_bank, num_query = SMOKE if benchmark.disabled else FULL
    _run(benchmark, impl, reference, num_classes, torch.device("cpu"), (num_bank, num_query // query_fraction), 3)


# ----------------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["ours", "reference"])
@pytest.mark.parametrize("reference", ["one call", f"chunks of {LIGHTLY_CHUNK}"])
def test_knn_gpu(benchmark, cuda_device: torch.device, impl: str, reference: str) -> None:
    _run(benchmark, impl, reference, 10, cuda_device, FULL, rounds=10)
