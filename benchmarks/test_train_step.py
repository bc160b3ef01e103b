"""SimSiam training step (forward + backward + SGD step, two 32x32 views): ours vs Lightly's assembled model.

Ours is ``SimSiam("resnet18_cifar", proj_layers=3)``: the same layers as the reference (``matching_simsiam``).

CPU: float32, ours also with channels_last. GPU (marked ``gpu``): float32, and ours with bf16 autocast +
channels_last, with and without ``torch.compile``. Each row records images/s (training images, two views each),
the FLOPs per image of the step, and on GPU the MFU against the device's dense bf16 peak.
"""

from __future__ import annotations

from typing import Callable, Optional

import pytest
import torch
from _bench import run_benchmark
from _lightly_reference import LightlySimSiam, lightly_train_step, matching_simsiam
from lightly.loss import NegativeCosineSimilarity

from lightly_siamese_ext.training import count_flops, model_flops_utilization, simsiam_train_step

AREA = "train step"


def _sgd(model: torch.nn.Module, params: object = None) -> torch.optim.Optimizer:
    return torch.optim.SGD(params if params is not None else model.parameters(), lr=0.03, momentum=0.9,
                           weight_decay=5e-4)


def _views(batch: int, device: torch.device, channels_last: bool) -> tuple:
    generator = torch.Generator().manual_seed(0)
    views = [torch.randn(batch, 3, 32, 32, generator=generator).to(device) for _ in range(2)]
    if channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    return tuple(views)


def _build_step(
    impl: str, batch: int, device: torch.device, channels_last: bool = False,
    amp_dtype: Optional[torch.dtype] = None, compile_model: bool = False,
) -> Callable[[], torch.Tensor]:
    torch.manual_seed(0)
    x0, x1 = _views(batch, device, channels_last)
    if impl == "reference":
        ref = LightlySimSiam().to(device)
        optimizer = _sgd(ref)
        criterion = NegativeCosineSimilarity()
        return lambda: lightly_train_step(ref, x0, x1, optimizer, criterion)
    model = matching_simsiam().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _sgd(model, model.parameter_groups())
    if compile_model:
        model = torch.compile(model)  # type: ignore[assignment]
    return lambda: simsiam_train_step(model, x0, x1, optimizer, amp_dtype=amp_dtype)  # type: ignore[arg-type]


def _flops_per_image(device: torch.device) -> int:
    """FLOPs of one training step per training image (two views, forward + backward), at batch 4."""
    step = _build_step("ours", 4, device)
    return count_flops(step) // 4


def _record(benchmark, step, *, case, impl, batch, device, compare_to=None, flops_per_image=None, rounds=5):
    # Two warm-up steps: the first steps of a fresh model pay for allocator growth and page faults.
    row = run_benchmark(
        benchmark, step, area=AREA, case=case, impl=impl, items=batch, unit="img/s", device=device,
        reference="lightly ResNetGenerator + SimSiam heads", rounds=rounds, warmup_rounds=2, compare_to=compare_to,
        flops_per_image=flops_per_image,
    )
    # MFU is against the dense bf16 peak: only the bf16 rows (and CPU, where the peak is an estimate) carry it.
    bf16_or_cpu = "bf16" in case or torch.device(device).type == "cpu"
    if flops_per_image and bf16_or_cpu and row.median_s == row.median_s:  # not NaN
        mfu = model_flops_utilization(flops_per_image * batch, row.median_s, torch.device(device))
        benchmark.extra_info["mfu"] = mfu
        row.extra["mfu"] = mfu
    return row


# --------------------------------------------------------------------------------------------------- CPU
CPU_BATCH = 32


@pytest.mark.parametrize("impl", ["ours", "reference"])
def test_train_step_cpu_fp32(benchmark, impl: str) -> None:
    batch = 4 if benchmark.disabled else CPU_BATCH
    device = torch.device("cpu")
    flops = _flops_per_image(device) if impl == "ours" else None  # also in smoke mode: the GPU rows need it
    _record(benchmark, _build_step(impl, batch, device), case=f"cpu fp32 B={CPU_BATCH}", impl=impl,
            batch=batch, device=device, flops_per_image=flops)


def test_train_step_cpu_channels_last(benchmark) -> None:
    batch = 4 if benchmark.disabled else CPU_BATCH
    device = torch.device("cpu")
    _record(benchmark, _build_step("ours", batch, device, channels_last=True),
            case=f"cpu channels_last B={CPU_BATCH}", impl="ours", batch=batch, device=device,
            compare_to=f"cpu fp32 B={CPU_BATCH}")


# --------------------------------------------------------------------------------------------------- GPU
GPU_BATCH = 512


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["ours", "reference"])
def test_train_step_gpu_fp32(benchmark, cuda_device, impl: str) -> None:
    torch.backends.cudnn.benchmark = True
    flops = _flops_per_image(cuda_device) if impl == "ours" else None
    _record(benchmark, _build_step(impl, GPU_BATCH, cuda_device), case=f"gpu fp32 B={GPU_BATCH}", impl=impl,
            batch=GPU_BATCH, device=cuda_device, flops_per_image=flops, rounds=10)


@pytest.mark.gpu
@pytest.mark.parametrize("compile_model", [False, True], ids=["eager", "compile"])
def test_train_step_gpu_bf16_channels_last(benchmark, cuda_device, compile_model: bool) -> None:
    torch.backends.cudnn.benchmark = True
    step = _build_step("ours", GPU_BATCH, cuda_device, channels_last=True, amp_dtype=torch.bfloat16,
                       compile_model=compile_model)
    if compile_model:
        for _ in range(3):  # compile and autotune outside the timed rounds
            step()
    suffix = " + compile" if compile_model else ""
    _record(benchmark, step, case=f"gpu bf16 channels_last{suffix} B={GPU_BATCH}", impl="ours", batch=GPU_BATCH,
            device=cuda_device, compare_to=f"gpu fp32 B={GPU_BATCH}", flops_per_image=_flops_per_image(cuda_device),
            rounds=10)
