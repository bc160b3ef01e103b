"""Letting PyTorch Lightning re-create a batch sampler around the DistributedSampler it injects."""

from __future__ import annotations

from typing import Any, Dict

from torch.utils.data import BatchSampler

__all__ = ["record_init_arguments"]


def record_init_arguments(batch_sampler: BatchSampler, arguments: Dict[str, Any]) -> None:
    """Stores ``arguments`` (keyword arguments of ``type(batch_sampler)``, among them ``sampler``) where Lightning
    looks for them when it re-creates the batch sampler of a DataLoader under DDP.

    Lightning (``lightning_fabric.utilities.data._wrap_init_method``, 2.x) records a ``BatchSampler`` subclass's
    constructor arguments only while it calls a ``*_dataloader`` hook. For a loader built anywhere else (at module
    level, then ``trainer.fit(model, loader)``) it would call ``type(batch_sampler)(sampler, batch_size=...,
    drop_last=...)``, which loses every other argument. These are the attributes its wrapper would have set; a
    recording Lightning made itself is kept.
    """
    if hasattr(batch_sampler, "__pl_saved_args"):
        return
    for name, value in (
        ("__pl_saved_args", ()),
        ("__pl_saved_kwargs", dict(arguments)),
        ("__pl_saved_arg_names", ()),
        ("__pl_saved_default_kwargs", {}),
    ):
        object.__setattr__(batch_sampler, name, value)
