"""A recipe's output folder: who may use it (one run at a time, a fresh run never over an earlier one), where its
checkpoint lives, the epoch a ``--resume`` continues from, and what a checkpoint or metrics file must hold to be
continued."""

from __future__ import annotations

import contextlib
import json
import math
import numbers
from pathlib import Path
from typing import Any, Callable, Collection, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch

from _run_lock import LOCK_NAME, locked_run_dir
from lightly_siamese_ext.training import restore_checkpoint
from lightly_siamese_ext._atomic import TEMPORARY_SUFFIX, write_text_atomically
from lightly_siamese_ext.training.metrics_log import read_metrics_rows

CHECKPOINT_NAME = "last.pt"
METRICS_NAME = "metrics.csv"
SUMMARY_NAME = "summary.json"
# What marks a folder as holding a run, and what --overwrite removes: a run's own outputs, nothing else (the
# checkpoint last, so that a folder cleared halfway still holds a run).
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME, SUMMARY_NAME)
OUTPUT_FILES = (SUMMARY_NAME, "metrics.png", "per_class.png", METRICS_NAME, CHECKPOINT_NAME)
# What every training recipe restores on --resume besides the weights.
TRAINING_STATE = ("optimizer", "scheduler")

# The arguments of _cli.add_data_arguments and add_run_arguments that a --resume may change: where the data and the
# run are, and how the run executes; the seed and every training argument must match the checkpoint's.
MAY_CHANGE_ON_RESUME = ("data_dir", "download", "cache_dir", "out_dir", "resume", "overwrite", "stop_after_epoch",
                        "device", "precision", "threads")


# --------------------------------------------------------------------------------------- the folder of a run
@contextlib.contextmanager
def claim_run_dir(
    out_dir: Union[str, Path],
    resume: bool,
    overwrite: bool,
    run_args: Optional[Mapping[str, Any]] = None,
    may_change: Collection[str] = (),
    needs: Collection[str] = TRAINING_STATE,
    resumable: bool = True,
    run_files: Collection[str] = RUN_FILES,
    output_files: Collection[str] = OUTPUT_FILES,
    check_resume: Optional[Callable[[Path], Tuple[Path, int]]] = None,
) -> Iterator[Path]:
    """The main process's hold on ``out_dir`` while the block runs the whole run (its ranks included): creates and
    locks the folder (:mod:`_run_lock`), removes the temporary files a killed run left, and then

    - ``resume``: checks the checkpoint (:func:`check_run_dir`, with ``needs``) and that ``metrics.csv`` covers its
      epochs (:func:`check_metrics_for_resume`);
    - else, when the folder holds a run (:data:`RUN_FILES`): ``ValueError`` naming ``--resume`` (with
      ``resumable``), ``--overwrite`` and a new ``--out-dir``; with ``overwrite`` its outputs are removed first.

    A recipe whose run keeps other files (simsiam_lightning.py's Lightning checkpoints) names them in ``run_files``
    and ``output_files`` (glob patterns) and checks its own checkpoint with ``check_resume(out_dir)``, which returns
    ``(checkpoint, epochs it finished)``: ``metrics.csv`` is then checked against those epochs alike. Every refusal
    comes before any work, as a one-line error; the lock is released however the block ends."""
    out_dir = create_run_dir(out_dir)
    with locked_run_dir(out_dir):
        remove_temporary_files(out_dir)
        if resume and check_resume is not None:
            checkpoint, epochs = check_resume(out_dir)
            check_metrics_for_resume(out_dir, epochs, checkpoint)
        elif resume:
            checkpoint, payload = check_run_dir(out_dir, True, run_args, may_change, needs=needs)
            check_metrics_for_resume(out_dir, int(payload["epoch"]), checkpoint)  # type: ignore[index]
        elif overwrite:
            remove_run_outputs(out_dir, output_files)
        else:
            refuse_an_existing_run(out_dir, resumable, run_files)
        yield out_dir


def create_run_dir(out_dir: Union[str, Path]) -> Path:
    """``out_dir``, created; ``NotADirectoryError`` when it is a file, an ``OSError`` naming it when it cannot be
    created."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out-dir {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"--out-dir {out_dir} cannot be created: {error.strerror or error}") from error
    return out_dir


def refuse_an_existing_run(out_dir: Path, resumable: bool = True, run_files: Collection[str] = RUN_FILES) -> None:
    """``ValueError`` when ``out_dir`` holds a run's files: a fresh run would replace them without a word."""
    found = sorted({path.name for pattern in run_files for path in out_dir.glob(pattern)})
    if found:
        ways = "continue it with --resume, replace it" if resumable else "replace it"
        raise ValueError(f"--out-dir {out_dir} holds a run ({', '.join(found)}): {ways} with --overwrite, or choose "
                         "a new --out-dir")


def refuse_the_folder_of(out_dir: Path, checkpoint: Path) -> None:
    """``ValueError`` when ``out_dir`` is the folder ``checkpoint`` lies in: an evaluation never writes over the run
    it reads, ``--overwrite`` or not."""
    if out_dir.resolve() == checkpoint.resolve().parent:
        raise ValueError(f"--out-dir {out_dir} is the folder of --checkpoint {checkpoint}: the evaluation would "
                         f"replace that run's files; choose another --out-dir (e.g. {out_dir / 'linear_eval'})")


def remove_run_outputs(out_dir: Path, output_files: Collection[str] = OUTPUT_FILES) -> None:
    for pattern in output_files:
        for path in out_dir.glob(pattern):
            path.unlink(missing_ok=True)


def remove_temporary_files(out_dir: Path) -> None:
    """The temporary files of atomic writes (and the lock's) that a killed run left in ``out_dir``."""
    for name in (*OUTPUT_FILES, LOCK_NAME):
        for leftover in (*out_dir.glob(f".{name}.*{TEMPORARY_SUFFIX}"), out_dir / f"{name}{TEMPORARY_SUFFIX}"):
            leftover.unlink(missing_ok=True)


def write_summary(out_dir: Path, summary: Mapping[str, Any]) -> Path:
    """``summary.json``, written atomically."""
    return write_text_atomically(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2))


# --------------------------------------------------------------------------------------------- its checkpoint
def check_run_dir(
    out_dir: Union[str, Path],
    resume: bool,
    run_args: Optional[Mapping[str, Any]] = None,
    may_change: Collection[str] = (),
    map_location: Union[str, torch.device, None] = "cpu",
    needs: Collection[str] = (),
) -> Tuple[Path, Optional[Dict[str, Any]]]:
    """Creates ``out_dir`` and returns ``(checkpoint path, payload)``: the payload (read with ``weights_only=True``)
    is None for a fresh run. With ``resume``, a checkpoint that is missing (``FileNotFoundError``), unreadable, not
    valid (:func:`check_checkpoint`, with ``needs``), or trained with other ``run_args`` (``checkpointable_args`` of
    this run; those in ``may_change`` may differ) is a ``ValueError`` naming it: a resumed run only continues to the
    same result with the same arguments."""
    checkpoint_path = create_run_dir(out_dir) / CHECKPOINT_NAME
    if not resume:
        return checkpoint_path, None
    payload = read_checkpoint_to_resume(checkpoint_path, map_location)
    check_checkpoint(payload, checkpoint_path, run_args, may_change, needs)
    saved = payload["extra"].get("args", {}) if isinstance(payload.get("extra"), Mapping) else {}
    refuse_changed_training_args(checkpoint_path, saved, run_args or {}, may_change)
    return checkpoint_path, payload


def read_checkpoint_to_resume(path: Path, map_location: Union[str, torch.device, None] = "cpu") -> Any:
    """The payload of the checkpoint ``path`` (``weights_only=True``); ``FileNotFoundError`` when there is none, a
    ``ValueError`` naming it when it cannot be read as one."""
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for files that are not checkpoints
        raise ValueError(f"--resume: {path} is not a readable checkpoint ({type(error).__name__})") from error


def refuse_changed_training_args(path: Path, saved: Mapping[str, Any], run_args: Mapping[str, Any],
                                 may_change: Collection[str]) -> None:
    """``ValueError`` naming every argument of ``run_args`` that differs from the checkpoint's ``saved`` ones (except
    those in ``may_change``): a resumed run only continues to the same result with the same arguments."""
    changed = [name for name in run_args if name not in may_change and name in saved and saved[name] != run_args[name]]
    if changed:
        options = ", ".join(f"--{name.replace('_', '-')} {saved[name]} (now {run_args[name]})" for name in changed)
        raise ValueError(f"--resume: {path} was trained with {options}; a resumed run keeps its training arguments "
                         "(start a new run in another --out-dir to change them)")


def check_checkpoint(payload: Any, path: Path, run_args: Optional[Mapping[str, Any]] = None,
                     may_change: Collection[str] = (), needs: Collection[str] = (), option: str = "--resume") -> None:
    """``ValueError`` naming ``option`` and ``path`` unless ``payload`` is a checkpoint this run can continue: a
    dict with an ``epoch`` in ``[0, epochs]`` (``run_args["epochs"]``), ``model`` weights that are tensors and finite,
    the state of everything in ``needs`` (``optimizer``, ``scheduler``, ``rng``) with finite hyperparameters, and,
    when ``run_args`` are given, training arguments of the types this run's have."""
    def invalid(detail: str) -> ValueError:
        return ValueError(f"{option}: {path} {detail}")

    if not isinstance(payload, dict) or not {"epoch", "model"} <= payload.keys():
        raise invalid("is not a training checkpoint (no epoch and model in it)")
    epoch, epochs = payload["epoch"], (run_args or {}).get("epochs")
    if not _is_int(epoch) or epoch < 0 or (_is_int(epochs) and epoch > epochs):
        bound = f"in [0, --epochs {epochs}]" if _is_int(epochs) else ">= 0"
        raise invalid(f"has epoch {epoch!r}: a checkpoint of this run has an integer epoch {bound}")
    _check_weights(payload["model"], invalid)
    for name in needs:
        _check_state(name, payload.get(name), epoch, invalid)
    if run_args is not None:
        _check_saved_arguments(payload.get("extra"), run_args, may_change, invalid)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_weights(weights: Any, invalid: Any) -> None:
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise invalid("has model weights that are not a state dict of tensors")
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise invalid(f"has non-finite weights ({name}): the run it comes from diverged")


def _check_state(name: str, state: Any, epoch: int, invalid: Any) -> None:
    """The optimizer's, scheduler's or random generators' state: present, of the right layout, finite."""
    keys = {"optimizer": {"state", "param_groups"}, "scheduler": {"last_epoch"},
            "rng": {"python", "numpy", "torch", "cuda", "generators"}}[name]
    if not isinstance(state, Mapping) or not keys <= state.keys():
        raise invalid(f"holds no {name} state (got {type(state).__name__}); this run restores it: without it the "
                      "run would continue with a fresh one")
    if name == "optimizer":
        for group in state["param_groups"]:
            for key, value in group.items():
                if not _finite_numbers(value):
                    raise invalid(f"has optimizer {key} {value!r}: hyperparameters must be finite numbers")
    if name == "scheduler":
        if state["last_epoch"] != epoch:  # the recipes step their schedule once per epoch
            raise invalid(f"has a schedule at epoch {state['last_epoch']!r} and weights at epoch {epoch}")
        if not _finite_numbers(state.get("base_lrs", [])):
            raise invalid(f"has base learning rates {state.get('base_lrs')!r}: they must be finite numbers")


def _finite_numbers(value: Any) -> bool:
    """True unless ``value`` is, or holds in a list or tuple, a non-finite number (other types pass)."""
    if isinstance(value, (list, tuple)):
        return all(_finite_numbers(item) for item in value)
    return not isinstance(value, numbers.Real) or math.isfinite(value)


def _check_saved_arguments(extra: Any, run_args: Mapping[str, Any], may_change: Collection[str],
                           invalid: Any) -> None:
    saved = extra.get("args") if isinstance(extra, Mapping) else None
    if not isinstance(saved, Mapping):
        raise invalid("holds no training arguments (extra.args): it was not written by this recipe")
    for name, value in run_args.items():
        if name not in saved or name in may_change or saved[name] is None or value is None:
            continue  # a value set or left unset is a changed argument (check_run_dir names it), not a type
        if type(saved[name]) is not type(value):
            raise invalid(f"holds --{name.replace('_', '-')} as {type(saved[name]).__name__} {saved[name]!r} where "
                          f"this run has {type(value).__name__} {value!r}: it was not written by this recipe")


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
    ``optimizer``, ...: :func:`~lightly_siamese_ext.training.load_checkpoint`'s arguments), each of which the
    checkpoint must hold. A checkpoint that does not fit them is a ``ValueError`` naming it."""
    needs = [name for name in TRAINING_STATE if restore_kwargs.get(name) is not None]
    if restore_kwargs.get("restore_rng", True):
        needs.append("rng")
    checkpoint_path, payload = check_run_dir(out_dir, resume, run_args, may_change, map_location, needs)
    if payload is None:
        return checkpoint_path, 0
    try:
        restore_checkpoint(payload, **restore_kwargs)
        _check_optimizer_state_fits(restore_kwargs.get("optimizer"))
    except (KeyError, RuntimeError, ValueError) as error:
        detail = " ".join(line.strip() for line in str(error).splitlines() if line.strip())[:300]
        raise ValueError(f"--resume: {checkpoint_path} does not fit this run's model or optimizer: "
                         f"{detail or type(error).__name__}") from error
    return checkpoint_path, int(payload["epoch"])


def _check_optimizer_state_fits(optimizer: Optional[torch.optim.Optimizer]) -> None:
    """``ValueError`` for a restored per-parameter state (momentum, Adam's moments) that is not finite or not of
    its parameter's shape: torch loads it as it is, and the first step would fail or train on it."""
    if optimizer is None:
        return
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for key, value in optimizer.state.get(parameter, {}).items():
                if not isinstance(value, torch.Tensor) or value.dim() == 0:
                    continue  # a step count
                if value.shape != parameter.shape:
                    raise ValueError(f"optimizer state {key} has shape {tuple(value.shape)} for a parameter of "
                                     f"shape {tuple(parameter.shape)}")
                if not bool(torch.isfinite(value).all()):
                    raise ValueError(f"optimizer state {key} is not finite")


# ------------------------------------------------------------------------------------------- its metrics file
def check_metrics_for_resume(out_dir: Path, epoch: int, checkpoint: Optional[Path] = None) -> None:
    """``ValueError`` naming ``metrics.csv`` when it is torn or corrupt, or its rows do not cover epochs 1 to
    ``epoch`` (those of ``checkpoint``, default ``out_dir/last.pt``) one by one: a resumed run would otherwise keep
    wrong or missing rows. A missing file is only announced: moving a damaged one away is how a run continues
    without its rows."""
    path = out_dir / METRICS_NAME
    checkpoint = out_dir / CHECKPOINT_NAME if checkpoint is None else checkpoint
    if not path.exists():
        if epoch > 0:
            print(f"warning: {path} is missing: the rows of epochs 1-{epoch} are lost; the run continues from "
                  f"{checkpoint} (epoch {epoch})", flush=True)
        return
    try:
        rows = read_metrics_rows(path)
    except ValueError as error:
        raise ValueError(f"--resume: {error}; {checkpoint} is intact: restore the file, or move it "
                         "away to continue without its rows") from error
    covered: List[int] = [int(row["epoch"]) for row in rows if int(row["epoch"]) <= epoch]
    if covered != list(range(1, epoch + 1)):
        raise ValueError(f"--resume: {path} has rows for epochs {_epoch_ranges(covered)} where "
                         f"{checkpoint} has finished epochs 1-{epoch}: restore the file, or move it "
                         "away to continue without its rows")


def _epoch_ranges(epochs: List[int]) -> str:
    return ", ".join(str(e) for e in epochs[:10]) + (", ..." if len(epochs) > 10 else "") if epochs else "none"
