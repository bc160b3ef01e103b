"""SimSiam augmentation throughput (images/s, two views per image) on 32x32 CIFAR-size images.

Reference: ``lightly.transforms.SimSiamTransform(input_size=32, gaussian_blur=0.0)`` on PIL images in a
``DataLoader`` with one worker per core, batch 256: Lightly's pipeline. Ours: ``BatchedSimSiamTransform``
with the same arguments on uint8 batches of 256, on the CPU with as many torch threads as cores (and with 1),
and on CUDA (marked ``gpu``) over a device-resident 50,000-image epoch, compared with the same reference run on
the GPU machine's cores in the same (``-m gpu``) session, over at least four batches per worker.
Images: the first few thousand of the shared CIFAR-10 JPEG copy when ``../shared`` is present, random otherwise.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, List

import numpy as np
import pytest
import torch
from _bench import run_benchmark, torch_threads
from _data import cifar_images, tiled
from lightly.transforms import SimSiamTransform
from torch.utils.data import DataLoader

from lightly_siamese_ext.data import ArrayImageDataset, GPUResidentLoader
from lightly_siamese_ext.transforms import BatchedSimSiamTransform

AREA = "augmentation"
REFERENCE = "lightly SimSiamTransform, DataLoader"
CPU_IMAGES, SMOKE_IMAGES, GPU_IMAGES = 2560, 256, 50_000
BATCH = 256
CORES = os.cpu_count() or 1
CASE_CPU = f"cpu, {CORES} cores, B={BATCH}, 32x32"
CASE_HOST = f"GPU machine's cpu, {CORES} cores, B={BATCH}, 32x32"


@pytest.fixture(scope="module")
def cifar_sample() -> np.ndarray:
    return cifar_images(CPU_IMAGES)


def _pil_dataset(images: np.ndarray, transform: Callable) -> ArrayImageDataset:
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    return ArrayImageDataset(tensor, torch.zeros(len(images), dtype=torch.long), transform=transform)


def _drain(batches: Iterator) -> int:
    count = 0
    for views, _ in batches:
        count += len(views[0])
    return count


def _batched(images: torch.Tensor, transform: BatchedSimSiamTransform) -> Callable[[], List[torch.Tensor]]:
    def epoch() -> List[torch.Tensor]:
        views: List[torch.Tensor] = []
        for batch in images.split(BATCH):
            views = transform(batch)
        return views

    return epoch


def _run_reference(benchmark, images: np.ndarray, case: str) -> None:
    loader = DataLoader(
        _pil_dataset(images, SimSiamTransform(input_size=32, gaussian_blur=0.0)),
        batch_size=BATCH,
        num_workers=CORES,
        persistent_workers=True,  # worker start-up is paid in the warm-up round, not timed
    )
    run_benchmark(benchmark, lambda: _drain(iter(loader)), area=AREA, case=case, impl="reference",
                  items=len(images), unit="img/s", device="cpu", reference=REFERENCE, rounds=3)


@pytest.mark.parametrize("impl", ["ours", "reference"])
def test_augmentation_cpu(benchmark, cifar_sample: np.ndarray, impl: str) -> None:
    images = cifar_sample[:SMOKE_IMAGES] if benchmark.disabled else cifar_sample
    if impl == "reference":
        _run_reference(benchmark, images, CASE_CPU)
        return
    with torch_threads(CORES):
        transform = BatchedSimSiamTransform(input_size=32, gaussian_blur=0.0)
        tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        run_benchmark(benchmark, _batched(tensor, transform), area=AREA, case=CASE_CPU, impl=impl,
                      items=len(images), unit="img/s", device="cpu", reference=REFERENCE, rounds=5,
                      torch_threads=CORES)


def test_augmentation_cpu_one_thread(benchmark, cifar_sample: np.ndarray) -> None:
    images = cifar_sample[:SMOKE_IMAGES] if benchmark.disabled else cifar_sample
    with torch_threads(1):
        transform = BatchedSimSiamTransform(input_size=32, gaussian_blur=0.0)
        tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        run_benchmark(benchmark, _batched(tensor, transform), area=AREA, case=f"cpu, 1 thread, B={BATCH}, 32x32",
                      impl="ours", items=len(images), unit="img/s", device="cpu", reference=REFERENCE, rounds=5,
                      compare_to=CASE_CPU, torch_threads=1)


def host_reference_images(cores: int) -> int:
    """Images of the reference epoch on the GPU machine: four batches per worker, so that every core works and
    the end of the epoch (the last batches, on a few workers) is a small part of it."""
    return max(CPU_IMAGES, 4 * cores * BATCH)


@pytest.mark.gpu
def test_augmentation_gpu_host_reference(benchmark, cuda_device, cifar_sample: np.ndarray) -> None:
    # The GPU session runs only ``-m gpu``: Lightly's pipeline on this machine's cores is what the GPU rows compare
    # with, measured in the same session.
    _run_reference(benchmark, tiled(cifar_sample, host_reference_images(CORES)), CASE_HOST)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [512, 4096])
def test_augmentation_gpu_epoch(benchmark, cuda_device, cifar_sample: np.ndarray, batch: int) -> None:
    # A 50,000-image epoch, device-resident (the CPU sample tiled), augmented batch by batch on the GPU.
    images = tiled(cifar_sample, GPU_IMAGES)
    transform = BatchedSimSiamTransform(input_size=32, gaussian_blur=0.0)
    loader = GPUResidentLoader.from_numpy(images, np.zeros(len(images), dtype=np.int64), batch, device=cuda_device,
                                          transform=transform, num_replicas=1, rank=0)
    run_benchmark(benchmark, lambda: _drain(iter(loader)), area=AREA,
                  case=f"cuda, {GPU_IMAGES} images/epoch, B={batch}, 32x32", impl="ours", items=GPU_IMAGES,
                  unit="img/s", device=cuda_device, reference=REFERENCE, rounds=5, compare_to=CASE_HOST)
