"""Checkpoints that resume a run exactly: model, optimizer, scheduler, epoch and every random state.

Everything is stored as tensors, numbers, strings, lists and dicts, so ``torch.load(path, weights_only=True)``
reads it (no pickled code is executed when a checkpoint is loaded).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from timm.utils import unwrap_model

from lightly_siamese_ext._atomic import write_atomically

__all__ = ["capture_rng_state", "load_checkpoint", "restore_checkpoint", "restore_rng_state", "save_checkpoint"]

PathLike = Union[str, "os.PathLike[str]"]


def capture_rng_state(generators: Optional[Mapping[str, torch.Generator]] = None) -> Dict[str, Any]:
    """The global RNGs (python, numpy, torch CPU and CUDA) and the named ``generators``, in weights_only form."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: Dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: gen.get_state() for name, gen in (generators or {}).items()},
    }
    return state


def restore_rng_state(state: Mapping[str, Any], generators: Optional[Mapping[str, torch.Generator]] = None) -> None:
    """Inverse of :func:`capture_rng_state`. Named generators missing from the state raise ``KeyError``.

    The states may have been loaded onto any device (``load_checkpoint(map_location="cuda")``): every setter takes
    CPU byte tensors, CUDA generators included, so they are moved back first.
    """
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.cpu().numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([device_state.cpu() for device_state in state["cuda"]])
    for name, gen in (generators or {}).items():
        gen.set_state(state["generators"][name].cpu())


def save_checkpoint(
    path: PathLike,
    *,
    model: nn.Module,
    epoch: int,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
    generators: Optional[Mapping[str, torch.Generator]] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Writes a checkpoint atomically (:func:`~lightly_siamese_ext._atomic.write_atomically`: a killed run
    never leaves a torn file; a full disk is an ``OSError`` naming ``path``, with the previous checkpoint intact and
    no temporary file left).

    ``epoch`` is the number of finished epochs; ``extra`` holds plain metadata (arguments, metrics).
    ``model`` may be wrapped in DDP, DataParallel or ``torch.compile`` (any nesting): the state of the module inside
    (timm's ``unwrap_model``) is saved.
    """
    payload = {
        "epoch": int(epoch),
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": capture_rng_state(generators),
        "extra": dict(extra or {}),
    }
    return write_atomically(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(
    path: PathLike,
    *,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
    generators: Optional[Mapping[str, torch.Generator]] = None,
    restore_rng: bool = True,
    map_location: Union[str, torch.device, None] = "cpu",
) -> Dict[str, Any]:
    """Restores what :func:`save_checkpoint` wrote (with ``weights_only=True``) and returns the payload."""
    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    restore_checkpoint(payload, model=model, optimizer=optimizer, scheduler=scheduler, generators=generators,
                       restore_rng=restore_rng)
    return payload


def restore_checkpoint(
    payload: Mapping[str, Any],
    *,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
    generators: Optional[Mapping[str, torch.Generator]] = None,
    restore_rng: bool = True,
) -> None:
    """:func:`load_checkpoint` for a payload already read with ``torch.load``. An ``optimizer`` or ``scheduler``
    given here whose state the payload lacks is a ``ValueError``: restoring the weights alone would continue with
    fresh momentum or a restarted schedule, a different run."""
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is not None and not isinstance(payload.get(name), Mapping):
            raise ValueError(f"the checkpoint holds no {name} state (got {type(payload.get(name)).__name__}), "
                             f"and this run restores one")
    unwrap_model(model).load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        restore_rng_state(payload["rng"], generators)
