"""Where SimSiam's views come from: streamed from a folder of JPEGs vs resident vs Lightly's DataLoader (images/s,
two 32x32 views per image, one epoch).

Stream (ours, ``--pipeline stream``): ``StreamingImageDataset(ImageFolder)`` in ``streaming_loader`` with one worker
per core decodes uint8 batches of 256; ``BatchedSimSiamTransform`` augments each batch where it trains (this
process's CPU threads, or CUDA after a pinned ``non_blocking`` copy in the ``gpu`` rows).
Resident (ours, ``--pipeline batched``): the folder decoded once (``load_image_folder``, not timed) into a
``GPUResidentLoader`` on the training device, augmented batch by batch.
Reference: ``LightlyDataset(folder, transform=SimSiamTransform(input_size=32, gaussian_blur=0.0))`` in a
``DataLoader`` with one worker per core: decoding and per-image PIL augmentation in the workers.
All three read the same files: the first JPEGs of the shared CIFAR-10 archive when ``../shared`` is present, random
pixels saved as JPEGs otherwise. Worker start-up is paid in the warm-up round (persistent workers), not timed.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable

import numpy as np
import pytest
import torch
from _bench import run_benchmark, torch_threads
from _data import CIFAR10_ARCHIVES
from lightly.data import LightlyDataset
from lightly.transforms import SimSiamTransform
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from lightly_siamese_ext.data import GPUResidentLoader, StreamingImageDataset, load_image_folder, streaming_loader
from lightly_siamese_ext.transforms import BatchedSimSiamTransform

AREA = "views from a JPEG folder"
REFERENCE = "lightly LightlyDataset + SimSiamTransform, DataLoader"
CPU_IMAGES, SMOKE_IMAGES = 2560, 256
BATCH = 256
CORES = os.cpu_count() or 1


def write_jpeg_folder(root: Path, count: int) -> Path:
    """An ImageFolder of ``count`` JPEG files: the archive's own files (not re-encoded) when it is there."""
    archive = next((path for path in CIFAR10_ARCHIVES if path.exists()), None)
    if archive is None:
        rng = np.random.default_rng(0)
        for i in range(count):
            (root / f"class{i % 10}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"class{i % 10}" / f"{i}.jpg")
        return root
    written = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                target = root / Path(member.name).parent.name / Path(member.name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
                written += 1
                if written == count:
                    break
    return root


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """``folder(count)``: an ImageFolder of ``count`` JPEGs, written when first asked for."""
    folders: Dict[int, Path] = {}

    def folder(count: int) -> Path:
        if count not in folders:
            folders[count] = write_jpeg_folder(tmp_path_factory.mktemp(f"jpegs{count}"), count)
        return folders[count]

    return folder


def _images(benchmark: Any) -> int:
    return SMOKE_IMAGES if benchmark.disabled else CPU_IMAGES


def _workers(benchmark: Any) -> int:
    return min(CORES, 2) if benchmark.disabled else CORES


def _epoch(batches: Callable[[], Iterable], augment: Callable[[torch.Tensor], Any], device: torch.device
           ) -> Callable[[], int]:
    def epoch() -> int:
        seen = 0
        for images in batches():
            views = augment(images.to(device, non_blocking=True))
            seen += len(views[0])
        return seen

    return epoch


def stream_epoch(folder: Path, device: torch.device, workers: int) -> Callable[[], int]:
    loader = streaming_loader(StreamingImageDataset(ImageFolder(str(folder))), BATCH, shuffle=True, num_replicas=1,
                              rank=0, num_workers=workers, pin_memory=device.type == "cuda")
    epochs = iter(range(1_000_000))

    def batches() -> Iterable:
        loader.sampler.set_epoch(next(epochs))
        return (images for images, _, _ in loader)

    return _epoch(batches, BatchedSimSiamTransform(input_size=32, gaussian_blur=0.0), device)


def resident_epoch(folder: Path, device: torch.device) -> Callable[[], int]:
    arrays = load_image_folder(folder)
    loader = GPUResidentLoader(arrays.images, arrays.labels, BATCH, device=device, num_replicas=1, rank=0)
    epochs = iter(range(1_000_000))

    def batches() -> Iterable:
        loader.set_epoch(next(epochs))
        return (images for images, _ in loader)

    return _epoch(batches, BatchedSimSiamTransform(input_size=32, gaussian_blur=0.0), device)


def reference_epoch(folder: Path, device: torch.device, workers: int) -> Callable[[], int]:
    dataset = LightlyDataset(str(folder), transform=SimSiamTransform(input_size=32, gaussian_blur=0.0))
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=True,
                        pin_memory=device.type == "cuda")

    def epoch() -> int:
        seen = 0
        for (x0, x1), _, _ in loader:
            x0, x1 = x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
            seen += len(x0)
        return seen

    return epoch


# --------------------------------------------------------------------------------------------------- CPU
CASE_CPU = f"cpu, {CORES} cores, {CPU_IMAGES} JPEGs, B={BATCH}, 32x32"


@pytest.mark.parametrize("impl", ["stream", "reference"])
def test_views_from_folder_cpu(benchmark, jpeg_folder: Callable[[int], Path], impl: str) -> None:
    images, workers, cpu = _images(benchmark), _workers(benchmark), torch.device("cpu")
    folder = jpeg_folder(images)
    if impl == "reference":
        run_benchmark(benchmark, reference_epoch(folder, cpu, workers), area=AREA, case=CASE_CPU, impl="reference",
                      items=images, unit="img/s", device=cpu, reference=REFERENCE, rounds=3, workers=workers)
        return
    with torch_threads(CORES):
        run_benchmark(benchmark, stream_epoch(folder, cpu, workers), area=AREA, case=CASE_CPU, impl="ours",
                      items=images, unit="img/s", device=cpu, reference=REFERENCE, rounds=3, pipeline="stream",
                      workers=workers, torch_threads=CORES)


def test_views_resident_cpu(benchmark, jpeg_folder: Callable[[int], Path]) -> None:
    images, cpu = _images(benchmark), torch.device("cpu")
    folder = jpeg_folder(images)
    with torch_threads(CORES):
        run_benchmark(benchmark, resident_epoch(folder, cpu), area=AREA,
                      case=f"cpu resident, {CORES} threads, B={BATCH}, 32x32", impl="ours", items=images,
                      unit="img/s", device=cpu, reference=REFERENCE, rounds=3, compare_to=CASE_CPU,
                      pipeline="batched", torch_threads=CORES)


# --------------------------------------------------------------------------------------------------- GPU
GPU_IMAGES = 50_000  # the archive's 50,000 JPEGs (all of CIFAR-10's training split): a CIFAR-10-size epoch
CASE_HOST = f"GPU machine's cpu, {CORES} cores, JPEGs, B={BATCH}, 32x32"


@pytest.fixture(scope="module")
def gpu_folder(jpeg_folder: Callable[[int], Path]) -> Path:
    return jpeg_folder(GPU_IMAGES)


@pytest.mark.gpu
def test_views_from_folder_gpu_host_reference(benchmark, cuda_device, gpu_folder: Path) -> None:
    run_benchmark(benchmark, reference_epoch(gpu_folder, cuda_device, CORES), area=AREA, case=CASE_HOST,
                  impl="reference", items=len(ImageFolder(str(gpu_folder))), unit="img/s", device=cuda_device,
                  reference=REFERENCE, rounds=2, workers=CORES)


@pytest.mark.gpu
@pytest.mark.parametrize("pipeline", ["stream", "batched"])
def test_views_gpu(benchmark, cuda_device, gpu_folder: Path, pipeline: str) -> None:
    epoch = (stream_epoch(gpu_folder, cuda_device, CORES) if pipeline == "stream"
             else resident_epoch(gpu_folder, cuda_device))
    case = f"cuda {pipeline}, " + (f"{CORES} workers, " if pipeline == "stream" else "") + f"B={BATCH}, 32x32"
    run_benchmark(benchmark, epoch, area=AREA, case=case, impl="ours", items=len(ImageFolder(str(gpu_folder))),
                  unit="img/s", device=cuda_device, reference=REFERENCE, rounds=3, compare_to=CASE_HOST,
                  pipeline=pipeline)
