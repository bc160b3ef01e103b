"""Training utilities shared by the recipes and benchmarks: the SimSiam step, checkpoints, metrics, FLOPs/MFU."""

from lightly_siamese_ext.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from lightly_siamese_ext.training.cli import run_cli
from lightly_siamese_ext.training.distributed import launch
from lightly_siamese_ext.training.flops import count_flops, model_flops_utilization, peak_flops_per_second
from lightly_siamese_ext.training.metrics_log import MetricsLog, pyplot_or_none
from lightly_siamese_ext.training.run_dir import prepare_run_dir
from lightly_siamese_ext.training.step import autocast_context, simsiam_train_step

__all__ = [
    "MetricsLog",
    "autocast_context",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "run_cli",
    "save_checkpoint",
    "count_flops",
    "launch",
    "prepare_run_dir",
    "model_flops_utilization",
    "peak_flops_per_second",
    "pyplot_or_none",
    "simsiam_train_step",
]
