"""The recipes' command lines: shared argument groups, their checks, and user errors reported as one line."""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, TextIO, TypeVar

import torch
from timm.utils import ParseKwargs

from lightly_siamese_ext._validation import check_float
from lightly_siamese_ext.training.distributed import RankFailedError

Model = TypeVar("Model")

# What a user's arguments or data can cause: reported as one line, without a traceback. Anything else is a bug and
# keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)
# What the machine can cause: a full disk, a read-only or foreign folder. Reported as one line too.
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


class Stopped(BaseException):
    """SIGTERM, raised in the main thread so that the run folder's lock is released and the ranks are stopped (a
    BaseException: no ``except Exception`` on the way swallows it)."""


def run_cli(fn: Callable[[], None], stderr: Optional[TextIO] = None) -> int:
    """Runs ``fn``; returns 0, or writes ``error: <one line>`` to ``stderr`` (default ``sys.stderr``) and returns 2
    when it raises one of :data:`USER_ERRORS`, an ``OSError`` of :data:`MACHINE_ERRNOS`, an out-of-memory error, or
    a :class:`RankFailedError` of one of them or of a killed rank; 143 after SIGTERM. Ctrl-C keeps Python's
    traceback of where the run was (benchmarks/device_session.sh stops runs with SIGINT to get it)."""
    stderr = stderr or sys.stderr
    try:
        with _sigterm_raises_stopped():
            fn()
    except Stopped:
        stderr.write("error: stopped by SIGTERM\n")
        return 143
    except Exception as error:
        text = one_line_message(error)
        if text is None:
            raise
        stderr.write(f"error: {text}\n")
        return 2
    return 0


def one_line_message(error: BaseException) -> Optional[str]:
    """The line :func:`run_cli` reports for ``error``, or None for a bug (which keeps its traceback)."""
    if isinstance(error, RankFailedError):
        if error.error is None:
            return _first_line(error)
        cause = one_line_message(error.error)
        return None if cause is None else f"{cause} (rank {error.rank}; the other ranks were stopped)"
    if isinstance(error, USER_ERRORS):
        return _first_line(error)
    if isinstance(error, OSError) and error.errno in MACHINE_ERRNOS:
        names = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
        return (error.strerror or _first_line(error)) + (f": {names}" if names else "")
    if isinstance(error, torch.cuda.OutOfMemoryError) or (isinstance(error, RuntimeError)
                                                           and "can't allocate memory" in str(error)):
        detail = _first_line(error)
        detail = detail[detail.find("DefaultCPUAllocator"):] if "DefaultCPUAllocator" in detail else detail
        return f"out of memory: {detail} (a smaller --batch-size or --input-size needs less)"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


@contextlib.contextmanager
def _sigterm_raises_stopped() -> Iterator[None]:
    """SIGTERM raises :class:`Stopped` while the block runs (in the main thread only: elsewhere signals cannot be
    handled), and the previous handler comes back after it."""
    def stop(signum: int, frame: Any) -> None:
        raise Stopped()

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default: appended as ``(default: X)`` unless the help already states one.
    None (the recipe derives the value at run time, which its help then says), False flags and empty lists or
    dicts are left out rather than shown as ``(default: None)``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or not action.option_strings or default is argparse.SUPPRESS or default is None
                or default is False or default == [] or default == {}):
            return text
        return f"{text} (default: %(default)s)"


def recipe_parser(doc: Optional[str]) -> argparse.ArgumentParser:
    """The parser a recipe starts from: its module docstring's first paragraph as description, and every
    option's default in ``--help`` (:class:`DefaultsHelpFormatter`)."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0], formatter_class=DefaultsHelpFormatter)


class BackboneKwargs(ParseKwargs):
    """timm's ``--model-kwargs`` action (``KEY=VALUE`` pairs, values Python literals, else strings), with a
    ValueError naming the option for a pair that is not ``KEY=VALUE`` with an identifier KEY (timm's action fails
    with an unpacking error there); parse inside :func:`run_cli` to report it as one line."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        for item in values:
            key, sep, _ = item.partition("=")
            if not sep or not key.isidentifier():
                raise ValueError(f"{option_string} takes KEY=VALUE pairs with KEY a Python identifier, got {item!r}")
        super().__call__(parser, namespace, values, option_string)


def add_backbone_arguments(group: "argparse._ArgumentGroup", default: str = "resnet18_cifar",
                           backbone_help: str = "any timm model name",
                           kwargs_help: str = "passed to timm.create_model, e.g. zero_init_last=False "
                                              "\"channels=(32,64,128,256)\"") -> None:
    """``--backbone`` and ``--backbone-kwargs`` (a dict, see :class:`BackboneKwargs`)."""
    group.add_argument("--backbone", default=default, help=backbone_help)
    group.add_argument("--backbone-kwargs", nargs="*", default={}, action=BackboneKwargs, metavar="KEY=VALUE",
                       help=kwargs_help)


def create_with_backbone_kwargs(factory: Callable[..., Model], backbone: str, backbone_kwargs: Mapping[str, Any],
                                **kwargs: Any) -> Model:
    """``factory(backbone, **kwargs, **backbone_kwargs)``. timm reports a keyword the model does not take (a
    TypeError) or a value it cannot build with (e.g. an AttributeError for too few ``channels``) deep in its
    builder: with ``backbone_kwargs`` given, that becomes a ValueError naming ``--backbone-kwargs``."""
    try:
        return factory(backbone, **kwargs, **backbone_kwargs)
    except ValueError:
        raise  # already names what is wrong
    except Exception as error:
        if not backbone_kwargs:
            raise
        given = " ".join(f"{key}={value!r}" for key, value in backbone_kwargs.items())
        raise ValueError(f"--backbone-kwargs {given} do not fit --backbone {backbone}: {error}") from error


def add_data_arguments(
    parser: argparse.ArgumentParser, inherited_from: Optional[str] = None
) -> "argparse._ArgumentGroup":
    """Adds the "data" group with the data-source arguments every recipe takes (``--data-dir``, ``--download``,
    ``--cache-dir``: what :func:`lightly_siamese_ext.data.load_image_source` needs) and returns it for more.

    With ``inherited_from`` (e.g. "the checkpoint's") all three default to None, which the recipe reads as "not
    given here: take it from there"; ``--download`` then is True or None, never False.
    """
    group = parser.add_argument_group("data" if inherited_from is None else f"data (default: {inherited_from})")
    group.add_argument("--data-dir", type=Path, default=None,
                       help="CIFAR-10 (cifar-10-batches-py) or an ImageFolder; absent: embedded digits (smoke run)")
    group.add_argument("--download", action="store_true", default=None if inherited_from else False,
                       help="download CIFAR-10 into --data-dir when online")
    group.add_argument("--cache-dir", type=Path, default=None,
                       help="where decoded ImageFolder images are cached as .npy (default: $LSE_CACHE_DIR or "
                            "~/.cache/lightly_siamese_ext)")
    return group


def add_run_arguments(parser: argparse.ArgumentParser, out_dir: str) -> "argparse._ArgumentGroup":
    """Adds the "run" group every training recipe takes (``--out-dir``, ``--resume``, ``--overwrite``,
    ``--stop-after-epoch``, ``--seed``, ``--device``, ``--precision``, ``--threads``) and returns it for more."""
    group = parser.add_argument_group("run")
    group.add_argument("--out-dir", type=Path, default=Path(out_dir),
                       help="where metrics.csv, the plot, summary.json and the checkpoints go")
    group.add_argument("--resume", action="store_true", help="continue from <out-dir>/last.pt")
    add_overwrite_argument(group)
    group.add_argument("--stop-after-epoch", type=int, default=None,
                       help="stop (as if killed) after this epoch; --resume continues to the same result")
    group.add_argument("--seed", type=int, default=0, help="seeds the initialisation, the data order and the "
                                                           "augmentation")
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when available")
    group.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                       help="auto: bf16 autocast on CUDA, fp32 on CPU")
    group.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return group


def add_overwrite_argument(group: "argparse._ArgumentGroup") -> None:
    """``--overwrite``: what a fresh run into a folder that holds a run needs (see ``_run_dir.claim_run_dir``)."""
    group.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out-dir (its checkpoint, metrics and summary) instead of refusing "
                            "to start there")


def fill_defaults(args: argparse.Namespace, defaults: Mapping[str, Any]) -> None:
    """Sets every argument named in ``defaults`` that is still None (not given) to its value there."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def check_at_least(args: argparse.Namespace, minimum: int, *names: str) -> None:
    """ValueError naming the first option of ``names`` (argparse dests) below ``minimum``; None (not given) passes."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")


def check_number(args: argparse.Namespace, name: str, minimum: Optional[float] = None,
                 maximum: Optional[float] = None, *, exclusive_minimum: bool = False,
                 exclusive_maximum: bool = False) -> None:
    """ValueError naming ``--<name>`` (an argparse dest) unless it is a finite number within the bounds (inclusive
    unless ``exclusive_*``); None (not given) passes. argparse's ``type=float`` takes "nan" and "inf", which would
    train a NaN model."""
    value = getattr(args, name)
    if value is not None:
        check_float(value, f"--{name.replace('_', '-')}", minimum, maximum, exclusive_minimum=exclusive_minimum,
                    exclusive_maximum=exclusive_maximum)


# Values no run can use, refused before any work starts: memory, threads and processes are finite. Generous on
# purpose (CIFAR trains at 32 px with 2048-wide heads); what fits in between is checked by check_memory.
SIZE_LIMITS = {"input_size": 4096, "proj_dim": 65536, "pred_hidden_dim": 65536, "embedding_dim": 65536,
               "hidden_dim": 65536, "proj_layers": 64, "trials": 10_000_000, "threads": 1024, "num_workers": 1024,
               "stream_size": 4096}


def check_sizes(args: argparse.Namespace) -> None:
    """ValueError naming the first argument of :data:`SIZE_LIMITS` that the recipe has and that exceeds its limit."""
    for name, limit in SIZE_LIMITS.items():
        value = getattr(args, name, None)
        if value is not None and value > limit:
            raise ValueError(f"--{name.replace('_', '-')} must be <= {limit:,}, got {value:,}")


def check_memory(build: Callable[[], torch.nn.Module], device: torch.device, optimizer_states: int,
                 input_floats_per_process: int, processes: int, what: str) -> bool:
    """ValueError when the run cannot fit: the model (built on the meta device: nothing is allocated), its
    gradients and ``optimizer_states`` copies (SGD with momentum: 1, AdamW: 2) in float32, in each of ``processes``
    processes, plus one step's input of ``input_floats_per_process`` floats each, against the memory of one GPU
    (CUDA) or the memory available on this machine (CPU). A lower bound (activations come on top): it refuses only
    what cannot work. ``what`` names the arguments that set the sizes. Returns False when the model cannot be built
    on the meta device (no estimate); a ValueError of ``build`` (e.g. bad ``--backbone-kwargs``) passes through."""
    try:
        with torch.device("meta"):
            model = build()
    except ValueError:
        raise
    except Exception:  # e.g. a model that reads a tensor's value while it is built
        return False
    parameters = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    per_process = 4 * (parameters * (2 + optimizer_states) + input_floats_per_process)
    needed = per_process if device.type == "cuda" else per_process * processes
    available = _device_memory(device)
    if available is not None and needed > available:
        where = "one GPU has" if device.type == "cuda" else "this machine has"
        raise ValueError(f"{what}: {parameters / 1e6:,.1f} M parameters with their training state and one batch of "
                         f"inputs need at least {needed / 2**30:,.1f} GiB, {where} {available / 2**30:,.1f} GiB")
    return True


def _device_memory(device: torch.device) -> Optional[int]:
    """Bytes a run may use on ``device``: a CUDA device's total memory, or the memory available to this process
    (MemAvailable, within the cgroup's limit); None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device.index or 0).total_memory)
    known = [value for value in (_meminfo_available(), _cgroup_available()) if value is not None]
    return min(known) if known else None


def _meminfo_available() -> Optional[int]:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _cgroup_available() -> Optional[int]:
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    return None


def check_run_arguments(args: argparse.Namespace) -> None:
    """ValueError for a bad ``--threads``, ``--stop-after-epoch`` (where the recipe has it), ``--device cuda``
    without CUDA, ``--resume`` with ``--overwrite``, or a size beyond :data:`SIZE_LIMITS`: the run options of
    :func:`add_run_arguments`, and every recipe's sizes."""
    check_at_least(args, 1, *(name for name in ("threads", "stop_after_epoch") if hasattr(args, name)))
    check_sizes(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        raise ValueError("--resume continues the run in --out-dir and --overwrite replaces it: give one of them")


def check_warmup_epochs(args: argparse.Namespace) -> None:
    """ValueError unless ``0 <= --warmup-epochs <= --epochs``."""
    if not 0 <= args.warmup_epochs <= args.epochs:
        raise ValueError(f"--warmup-epochs must be in [0, --epochs={args.epochs}], got {args.warmup_epochs}")


def checkpointable_args(args: argparse.Namespace) -> Dict[str, Any]:
    """``vars(args)`` with paths as strings: what a ``weights_only`` checkpoint can hold (``extra={"args": ...}``)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}


def embedded_data_notice(what: str) -> str:
    """A banner saying that the run fell back to the embedded digits, ``what`` naming the run (e.g. "a SMOKE RUN of
    the pipeline (6 epochs, 8px)")."""
    bar = "!" * 78
    return (f"{bar}\n!! No data found (use --data-dir, or --download when online): falling back to the\n"
            f"!! EMBEDDED scikit-learn digits. This is {what},\n!! not a CIFAR-10 result.\n{bar}")


def print_report(title: str, lines: Sequence[str]) -> None:
    """The end-of-run report: ``title`` and ``lines`` between two rules."""
    print("\n" + "=" * 78)
    print(title)
    for line in lines:
        print(line)
    print("=" * 78, flush=True)
