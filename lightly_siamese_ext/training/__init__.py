"""What a training loop calls besides the model and the loss: exact-resume checkpoints, per-epoch metrics (CSV and
plot), the SimSiam step, FLOP counting and MFU, and process launch for multi-process runs."""

from lightly_siamese_ext.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from lightly_siamese_ext.training.distributed import default_backend, launch, ranks_agree
from lightly_siamese_ext.training.flops import count_flops, model_flops_utilization, peak_flops_per_second
from lightly_siamese_ext.training.metrics_log import MetricsLog, pyplot_or_none
from lightly_siamese_ext.training.step import autocast_context, simsiam_train_step

__all__ = [
    "MetricsLog",
    "autocast_context",
    "capture_rng_state",
    "count_flops",
    "default_backend",
    "launch",
    "load_checkpoint",
    "model_flops_utilization",
    "peak_flops_per_second",
    "pyplot_or_none",
    "ranks_agree",
    "restore_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "simsiam_train_step",
]
