"""FLOP counting and model FLOP utilisation (MFU) for training steps."""

from __future__ import annotations

import os
from typing import Callable, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "peak_flops_per_second", "model_flops_utilization"]

# Dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s, no sparsity), matched against
# torch.cuda.get_device_name in this order: the PCIe / NVL parts share the SXM part's name prefix but not its clocks.
_PEAK_BF16 = (
    ("H200 NVL", 835e12),
    ("H200", 989.4e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989.4e12),
    ("A100", 312e12),
    ("A6000", 154.8e12),
    ("L40S", 362e12),
    ("4090", 165.2e12),
)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs that one call of ``fn`` performs in matrix multiplies and convolutions (forward and backward if
    ``fn`` runs both), counted by ``torch.utils.flop_counter`` (a multiply-add counts as 2 FLOPs)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def peak_flops_per_second(device: torch.device) -> Optional[float]:
    """The device's dense bf16 peak in FLOP/s, or None if unknown. ``LSE_PEAK_FLOPS`` overrides it."""
    override = os.environ.get("LSE_PEAK_FLOPS")
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in _PEAK_BF16:
        if key in name:
            return peak
    return None


def model_flops_utilization(flops_per_step: float, seconds_per_step: float, device: torch.device) -> Optional[float]:
    """Achieved FLOP/s over the device's peak (0..1), or None when the peak is unknown."""
    peak = peak_flops_per_second(device)
    if peak is None or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / peak
