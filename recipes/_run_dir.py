"""A recipe's output folder: where its checkpoint lives, and the epoch a ``--resume`` continues from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Dict, Mapping, Optional, Tuple, Union

import torch

from lightly_siamese_ext.training import restore_checkpoint

CHECKPOINT_NAME = "last.pt"

# The arguments of _cli.add_data_arguments and add_run_arguments that a --resume may change: where the data and the
# run are, and how the run executes; the seed and every training argument must match the checkpoint's.
MAY_CHANGE_ON_RESUME = ("data_dir", "download", "cache_dir", "out_dir", "resume", "stop_after_epoch", "device",
                        "precision", "threads")

def check_run_dir(
    out_dir: Union[str, Path],
    resume: bool,
    run_args: Optional[Mapping[str, Any]] = None,
    may_change: Collection[str] = (),
    map_location: Union[str, torch.device, None] = "cpu",
) -> Tuple[Path, Optional[Dict[str, Any]]]:
    """Creates ``out_dir`` and returns ``(checkpoint path, payload)``: the payload (read with ``weights_only=True``)
    is None for a fresh run. With ``resume``, a checkpoint that is missing (``FileNotFoundError``), unreadable, or
    was trained with other ``run_args`` (``checkpointable_args`` of this run; those in ``may_change`` may differ) is
    a ``ValueError`` naming it: a resumed run only continues to the same result with the same arguments."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out-dir {out_dir} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if not resume:
        return checkpoint_path, None
    if not checkpoint_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
    try:
        payload = torch.load(checkpoint_path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for files that are not checkpoints
        raise ValueError(f"--resume: {checkpoint_path} is not a readable checkpoint ({type(error).__name__})") \
            from error
    if not isinstance(payload, dict) or not {"epoch", "model"} <= payload.keys():
        raise ValueError(f"--resume: {checkpoint_path} is not a training checkpoint (no epoch and model in it)")
    saved = payload.get("extra", {}).get("args", {}) if isinstance(payload.get("extra"), dict) else {}
    changed = [name for name in (run_args or {}) if name not in may_change and name in saved
               and saved[name] != run_args[name]]  # type: ignore[index]
    if changed:
        options = ", ".join(f"--{name.replace('_', '-')} {saved[name]} (now {run_args[name]})"  # type: ignore[index]
                            for name in changed)
        raise ValueError(f"--resume: {checkpoint_path} was trained with {options}; a resumed run keeps its training "
                         "arguments (start a new run in another --out-dir to change them)")
    return checkpoint_path, payload


def prepare_run_dir(
    out_dir: Union[str, Path],
    resume: bool,
    run_args: Optional[Mapping[str, Any]] = None,
    may_change: Collection[str] = (),
    map_location: Union[str, torch.device, None] = "cpu",
    **restore_kwargs: Any,
) -> Tuple[Path, int]:
    """:func:`check_run_dir`, then returns ``(checkpoint path, finished epochs)``: 0 for a fresh run; with
    ``resume``, the epoch of the checkpoint there, restored into what ``restore_kwargs`` names (``model``,
    ``optimizer``, ...: :func:`~lightly_siamese_ext.training.load_checkpoint`'s arguments). A checkpoint that does not
    fit them is a ``ValueError`` naming it."""
    checkpoint_path, payload = check_run_dir(out_dir, resume, run_args, may_change, map_location)
    if payload is None:
        return checkpoint_path, 0
    try:
        restore_checkpoint(payload, **restore_kwargs)
    except (KeyError, RuntimeError, ValueError) as error:
        detail = " ".join(line.strip() for line in str(error).splitlines() if line.strip())[:300]
        raise ValueError(f"--resume: {checkpoint_path} does not fit this run's model or optimizer: "
                         f"{detail or type(error).__name__}") from error
    return checkpoint_path, int(payload["epoch"])
