"""Contrastive and triplet losses, forward + backward: ours vs pytorch-metric-learning (PML) on identical inputs.

Inputs: B embeddings of dimension 128, L2-normalised, 8 samples per class (labels shuffled). Each call clones
the embeddings with ``requires_grad``, computes the loss and runs ``backward()``; rows record embeddings/s and
peak memory. The PML configurations (all with ``LpDistance(normalize_embeddings=False)``: the inputs are normalised
already, and ours does not normalise them again):

- contrastive: ``ContrastiveLoss(pos_margin=0, neg_margin=1)`` over all pairs (PML's form is linear in d, ours is
  Hadsell's squared form: the same pairs and the same work, not the same formula);
- triplet batch_hard: ``TripletMarginLoss(0.2)`` + ``BatchHardMiner()``;
- triplet semi_hard: ``TripletMarginLoss(0.2)`` + ``TripletMarginMiner(0.2, "semihard")``;
- triplet batch_all: ``TripletMarginLoss(0.2)`` on all triplets.

CPU: B = 256 and 1024 for every case, batch_all also at B = 2048 (both) and B = 4096 (ours only: PML's
all-triplet indices alone are 117 M x 3 int64 there, tens of seconds per call). GPU (marked ``gpu``):
B = 1024, 4096, 16384; PML's triplet-enumerating miners only up to B = 4096.
With ``--benchmark-disable`` every case runs once at B = 64.
"""

from __future__ import annotations

from typing import Callable, Dict

import pytest
import torch
import torch.nn.functional as F
from _bench import run_benchmark

from lightly_siamese_ext.losses import ContrastiveLoss, TripletLoss

AREA = "losses"
DIM = 128
PER_CLASS = 8
SMOKE_BATCH = 64


def _inputs(batch: int, device: torch.device):
    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(batch, DIM, generator=generator), dim=1)
    labels = (torch.arange(batch) // PER_CLASS)[torch.randperm(batch, generator=generator)]
    return embeddings.to(device), labels.to(device)


def _ours(case: str) -> Callable:
    return {
        "contrastive": ContrastiveLoss(margin=1.0),
        "triplet batch_hard": TripletLoss(0.2, "batch_hard"),
        "triplet semi_hard": TripletLoss(0.2, "semi_hard"),
        "triplet batch_all": TripletLoss(0.2, "batch_all"),
    }[case]


def _pml(case: str) -> Callable:
    from pytorch_metric_learning import distances, losses, miners

    # The inputs are L2-normalised already and ours does not normalise: PML's default distance would normalise them
    # again (in the loss and in the miner), work that ours does not do.
    distance = distances.LpDistance(normalize_embeddings=False)
    if case == "contrastive":
        return losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0, distance=distance)
    loss = losses.TripletMarginLoss(margin=0.2, distance=distance)
    miner = {
        "triplet batch_hard": miners.BatchHardMiner(distance=distance),
        "triplet semi_hard": miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=distance),
        "triplet batch_all": None,
    }[case]
    if miner is None:
        return loss
    return lambda x, y: loss(x, y, miner(x, y))


REFERENCE: Dict[str, str] = {
    "contrastive": "PML ContrastiveLoss",
    "triplet batch_hard": "PML TripletMarginLoss + BatchHardMiner",
    "triplet semi_hard": "PML TripletMarginLoss + TripletMarginMiner(semihard)",
    "triplet batch_all": "PML TripletMarginLoss (all triplets)",
}


def _step(loss_fn: Callable, embeddings: torch.Tensor, labels: torch.Tensor) -> Callable[[], torch.Tensor]:
    def step() -> torch.Tensor:
        x = embeddings.clone().requires_grad_()
        loss = loss_fn(x, labels)
        loss.backward()
        return loss.detach()

    return step


def _run(benchmark, impl: str, case: str, batch: int, device: torch.device, rounds: int = 5) -> None:
    measured = SMOKE_BATCH if benchmark.disabled else batch
    embeddings, labels = _inputs(measured, device)
    loss_fn = _ours(case) if impl == "ours" else _pml(case)
    run_benchmark(
        benchmark,
        _step(loss_fn, embeddings, labels),
        area=AREA,
        case=f"{device.type} {case} B={batch}",
        impl=impl,
        items=measured,
        unit="emb/s",
        device=device,
        reference=REFERENCE[case],
        measure_memory=True,
        rounds=rounds,
    )


CASES = list(REFERENCE)
IMPLS = ["ours", "reference"]
CPU = torch.device("cpu")


# --------------------------------------------------------------------------------------------------- CPU
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", [256, 1024])
@pytest.mark.parametrize("case", CASES)
def test_losses_cpu(benchmark, case: str, batch: int, impl: str) -> None:
    # PML's triplet-enumerating miners take seconds per call at B = 1024: fewer rounds.
    slow = impl == "reference" and batch >= 1024 and case in ("triplet semi_hard", "triplet batch_all")
    _run(benchmark, impl, case, batch, CPU, rounds=2 if slow else 5)


@pytest.mark.parametrize("impl", IMPLS)
def test_batch_all_cpu_2048(benchmark, impl: str) -> None:
    _run(benchmark, impl, "triplet batch_all", 2048, CPU, rounds=2 if impl == "reference" else 3)


def test_batch_all_cpu_4096_ours_only(benchmark) -> None:
    _run(benchmark, "ours", "triplet batch_all", 4096, CPU, rounds=3)


# --------------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", [1024, 4096, 16384])
@pytest.mark.parametrize("case", CASES)
def test_losses_gpu(benchmark, cuda_device, case: str, batch: int, impl: str) -> None:
    if impl == "reference" and batch > 4096 and case in ("triplet semi_hard", "triplet batch_all"):
        pytest.skip("PML enumerates every triplet: ~1.9e9 index triples (45 GB of int64) at B = 16384")
    # Past 2^31 triplets (B = 4096) PML loops in Python over the anchors: about a second per call.
    slow = impl == "reference" and batch >= 4096 and case in ("triplet semi_hard", "triplet batch_all")
    _run(benchmark, impl, case, batch, cuda_device, rounds=3 if slow else 10)
