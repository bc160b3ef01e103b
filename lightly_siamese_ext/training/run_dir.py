"""A recipe's output folder: where its checkpoint lives, and the epoch a ``--resume`` continues from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Tuple, Union

from lightly_siamese_ext.training.checkpoint import load_checkpoint

__all__ = ["CHECKPOINT_NAME", "prepare_run_dir"]

CHECKPOINT_NAME = "last.pt"


def prepare_run_dir(out_dir: Union[str, Path], resume: bool, **load_kwargs: Any) -> Tuple[Path, int]:
    """Creates ``out_dir`` and returns ``(checkpoint path, finished epochs)``: 0 for a fresh run; with ``resume``,
    the epoch of the checkpoint there, restored into what ``load_kwargs`` names (``model``, ``optimizer``, ...:
    :func:`~lightly_siamese_ext.training.load_checkpoint`'s arguments). A missing checkpoint to resume from is a
    ``FileNotFoundError`` naming it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if not resume:
        return checkpoint_path, 0
    if not checkpoint_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
    return checkpoint_path, int(load_checkpoint(checkpoint_path, **load_kwargs)["epoch"])
