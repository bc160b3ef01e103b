"""The recipes' command lines: shared argument groups, their checks, and user errors reported as one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, TextIO, TypeVar

import torch
from timm.utils import ParseKwargs

Model = TypeVar("Model")

# What a user's arguments or data can cause: reported as one line, without a traceback. Anything else is a bug and
# keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)


def run_cli(fn: Callable[[], None], stderr: Optional[TextIO] = None) -> int:
    """Runs ``fn``; returns 0, or 2 after writing ``error: <first line of the message>`` to ``stderr`` (default
    ``sys.stderr``) when it raises one of :data:`USER_ERRORS`."""
    try:
        fn()
    except USER_ERRORS as error:
        text = str(error).strip() or type(error).__name__
        (stderr or sys.stderr).write(f"error: {text.splitlines()[0]}\n")
        return 2
    return 0


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
    """Adds the "run" group every training recipe takes (``--out-dir``, ``--resume``, ``--stop-after-epoch``,
    ``--seed``, ``--device``, ``--precision``, ``--threads``) and returns it for more."""
    group = parser.add_argument_group("run")
    group.add_argument("--out-dir", type=Path, default=Path(out_dir),
                       help="where metrics.csv, the plot, summary.json and the checkpoints go")
    group.add_argument("--resume", action="store_true", help="continue from <out-dir>/last.pt")
    group.add_argument("--stop-after-epoch", type=int, default=None,
                       help="stop (as if killed) after this epoch; --resume continues to the same result")
    group.add_argument("--seed", type=int, default=0, help="seeds the initialisation, the data order and the "
                                                           "augmentation")
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when available")
    group.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                       help="auto: bf16 autocast on CUDA, fp32 on CPU")
    group.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return group


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


def check_run_arguments(args: argparse.Namespace) -> None:
    """ValueError for a bad ``--threads``, ``--stop-after-epoch`` (where the recipe has it) or ``--device cuda``
    without CUDA: the run options of :func:`add_run_arguments`."""
    check_at_least(args, 1, *(name for name in ("threads", "stop_after_epoch") if hasattr(args, name)))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")


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
