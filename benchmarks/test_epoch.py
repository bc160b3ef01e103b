"""End-to-end SimSiam epoch on CIFAR-size images: loading + augmentation + training step, as a user runs it.

Ours: the whole dataset as uint8 on the training device (``GPUResidentLoader``), ``BatchedSimSiamTransform`` on the
device, ``SimSiam("resnet18_cifar", proj_layers=3)`` step (the reference's projector depth; bf16 autocast +
channels_last on CUDA, optionally ``torch.compile``).
Reference: Lightly's path: ``SimSiamTransform`` on PIL images in a ``DataLoader`` with one worker per core, and the
SimSiam model assembled from Lightly's modules, float32 (``_lightly_reference.py``).
Both loaders drop the last partial batch: images/s and the epoch time count the images trained on.
Rows carry images/s and the epoch time; on CUDA also the projected time of 800 epochs.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
import pytest
import torch
from _bench import run_benchmark
from _data import cifar_images, tiled
from _lightly_reference import LightlySimSiam, lightly_train_step, matching_simsiam
from lightly.loss import NegativeCosineSimilarity
from lightly.transforms import SimSiamTransform
from torch.utils.data import DataLoader

from lightly_siamese_ext import CIFAR10_NORMALIZE
from lightly_siamese_ext.data import ArrayImageDataset, GPUResidentLoader
from lightly_siamese_ext.training import simsiam_train_step
from lightly_siamese_ext.transforms import BatchedSimSiamTransform

AREA = "epoch"
REFERENCE = "lightly SimSiamTransform + DataLoader + lightly modules, fp32"
NORMALIZE = CIFAR10_NORMALIZE
CORES = os.cpu_count() or 1


def _sgd(params: object) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.06, momentum=0.9, weight_decay=5e-4)  # type: ignore[arg-type]


def ours_epoch(images: np.ndarray, batch: int, device: torch.device, amp_dtype: Optional[torch.dtype] = None,
               channels_last: bool = False, compile_model: bool = False) -> Callable[[], int]:
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = matching_simsiam().to(device, memory_format=memory_format)
    optimizer = _sgd(model.parameter_groups())
    step_model = torch.compile(model) if compile_model else model
    loader = GPUResidentLoader.from_numpy(images, np.zeros(len(images), dtype=np.int64), batch, device=device,
                                          drop_last=True, num_replicas=1, rank=0)
    augment = BatchedSimSiamTransform(input_size=32, gaussian_blur=0.0, normalize=NORMALIZE)
    epochs = iter(range(1_000_000))

    def epoch() -> int:
        loader.set_epoch(next(epochs))
        seen = 0
        for batch_images, _ in loader:
            x0, x1 = (v.contiguous(memory_format=memory_format) for v in augment(batch_images))
            simsiam_train_step(step_model, x0, x1, optimizer, amp_dtype=amp_dtype)  # type: ignore[arg-type]
            seen += len(batch_images)
        return seen

    return epoch


def reference_epoch(images: np.ndarray, batch: int, device: torch.device) -> Callable[[], int]:
    torch.manual_seed(0)
    model = LightlySimSiam().to(device)
    optimizer = _sgd(model.parameters())
    criterion = NegativeCosineSimilarity()
    transform = SimSiamTransform(input_size=32, gaussian_blur=0.0, normalize=NORMALIZE)
    dataset = ArrayImageDataset(torch.from_numpy(images).permute(0, 3, 1, 2), torch.zeros(len(images), dtype=torch.long),
                                transform=transform)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=CORES,
                        persistent_workers=True, pin_memory=device.type == "cuda")

    def epoch() -> int:
        seen = 0
        for (x0, x1), _ in loader:
            x0 = x0.to(device, non_blocking=True)
            x1 = x1.to(device, non_blocking=True)
            lightly_train_step(model, x0, x1, optimizer, criterion)
            seen += len(x0)
        return seen

    return epoch


def trained_images(images: int, batch: int) -> int:
    """Images one epoch trains on: both loaders drop the last partial batch (49,664 of 50,000 at B = 512)."""
    return images // batch * batch


def _record(benchmark, epoch, *, case, impl, images, device, compare_to=None, rounds=2, warmup_rounds=1):
    row = run_benchmark(benchmark, epoch, area=AREA, case=case, impl=impl, items=images, unit="img/s",
                        device=device, reference=REFERENCE, rounds=rounds, warmup_rounds=warmup_rounds,
                        compare_to=compare_to)
    if row.median_s == row.median_s:  # timed (not NaN)
        row.extra["epoch_s"] = row.median_s
        benchmark.extra_info["epoch_s"] = row.median_s
        if torch.device(device).type == "cuda":
            row.extra["800_epochs_min"] = row.median_s * 800 / 60
            benchmark.extra_info["800_epochs_min"] = row.extra["800_epochs_min"]
    return row


# --------------------------------------------------------------------------------------------------- CPU
CPU_IMAGES, CPU_BATCH = 512, 128


@pytest.mark.parametrize("impl", ["ours", "reference"])
def test_epoch_cpu(benchmark, impl: str) -> None:
    n, batch = (64, 32) if benchmark.disabled else (CPU_IMAGES, CPU_BATCH)
    images = cifar_images(CPU_IMAGES)[:n]
    device = torch.device("cpu")
    epoch = ours_epoch(images, batch, device) if impl == "ours" else reference_epoch(images, batch, device)
    _record(benchmark, epoch, case=f"cpu, {CPU_IMAGES} images, B={CPU_BATCH}, fp32", impl=impl,
            images=trained_images(n, batch), device=device, rounds=1)


# --------------------------------------------------------------------------------------------------- GPU
GPU_IMAGES, GPU_BATCH = 50_000, 512
GPU_CASE = f"cuda, {GPU_IMAGES} images, B={GPU_BATCH}"


@pytest.mark.gpu
def test_epoch_gpu_reference(benchmark, cuda_device) -> None:
    torch.backends.cudnn.benchmark = True
    images = tiled(cifar_images(5000), GPU_IMAGES)
    _record(benchmark, reference_epoch(images, GPU_BATCH, cuda_device), case=GPU_CASE, impl="reference",
            images=trained_images(GPU_IMAGES, GPU_BATCH), device=cuda_device, rounds=1)


@pytest.mark.gpu
@pytest.mark.parametrize("compile_model", [False, True], ids=["eager", "compile"])
def test_epoch_gpu_ours(benchmark, cuda_device, compile_model: bool) -> None:
    torch.backends.cudnn.benchmark = True
    images = tiled(cifar_images(5000), GPU_IMAGES)
    epoch = ours_epoch(images, GPU_BATCH, cuda_device, amp_dtype=torch.bfloat16, channels_last=True,
                       compile_model=compile_model)
    suffix = ", compile" if compile_model else ""
    _record(benchmark, epoch, case=f"{GPU_CASE}, bf16 channels_last{suffix}", impl="ours",
            images=trained_images(GPU_IMAGES, GPU_BATCH), device=cuda_device, compare_to=GPU_CASE, rounds=3)
