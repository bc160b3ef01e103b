"""What the two metric-learning recipes (siamese_pairs.py, triplet_retrieval.py) share: their arguments, the
class-disjoint split (train on some classes, evaluate on classes never seen in training), the encoder, its
held-out evaluation next to the baselines, and the report. Their loops, losses and batches are their own."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch
from torch import Tensor

import _cli
import _common
import _run_dir
import lightly_siamese_ext as lse
from lightly_siamese_ext.backbones import check_model_name
from lightly_siamese_ext.data import OpenSetSplit, first_per_class, load_image_source, open_set_split, random_subset

NORMALIZE = lse.CIFAR10_NORMALIZE
# What a --resume may change besides MAY_CHANGE_ON_RESUME: what is evaluated and shown, not what is trained.
MAY_CHANGE = (*_run_dir.MAY_CHANGE_ON_RESUME, "no_progress", "eval_every", "eval_per_class", "no_baselines", "n_way",
              "trials")
# Augmentation defaults: mild on real data; milder on the small digits, without flips (digits are not symmetric).
AUGMENT_FULL = dict(min_scale=0.5, hf_prob=0.5)
AUGMENT_SMOKE = dict(min_scale=0.8, hf_prob=0.0)
#: ``metrics(embeddings (N, D), labels (N,)) -> {name: value}``: a recipe's held-out metrics.
Metrics = Callable[[Tensor, Tensor], Dict[str, float]]


# --------------------------------------------------------------------------------------------------- arguments
def add_arguments(parser: argparse.ArgumentParser, full: Mapping[str, Any], smoke: Mapping[str, Any], out_dir: str,
                  batch_unit: Optional[str] = None, normalize: bool = False) -> None:
    """The arguments both recipes take. ``full`` / ``smoke`` hold the defaults that differ between real data and
    the embedded digits (``epochs``, ``input_size``, ``embedding_dim``, and ``batch_size`` when ``batch_unit`` says
    what ``--batch-size`` counts; without it the recipe defines its own batch arguments)."""
    data = _cli.add_data_arguments(parser)
    data.add_argument("--test-classes", default="7,8,9",
                      help="held-out classes (indices or names, comma-separated): never trained on, evaluated on "
                           "(digits: 7,8,9; CIFAR-10: horse, ship, truck)")
    data.add_argument("--subset", type=int, default=None,
                      help="train on N images of the training classes drawn at random (seeded)")
    data.add_argument("--eval-per-class", type=int, default=1000,
                      help="evaluate on at most the first N images of every held-out class")

    model = parser.add_argument_group("model")
    _cli.add_backbone_arguments(model)
    model.add_argument("--embedding-dim", type=int, default=None,
                       help=f"default {full['embedding_dim']} (smoke: {smoke['embedding_dim']})")
    model.add_argument("--hidden-dim", type=int, default=None, help="hidden width of the embedding head "
                                                                    "(default: the backbone's feature width)")
    model.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=normalize,
                       help="L2-normalise the embeddings (unit sphere)")
    model.add_argument("--distance", choices=["euclidean", "cosine"], default="euclidean",
                       help="distance between embeddings, in the loss and in the evaluation")

    optim = parser.add_argument_group("optimisation (AdamW, cosine schedule)")
    optim.add_argument("--epochs", type=int, default=None, help=f"default {full['epochs']} (smoke: {smoke['epochs']})")
    if batch_unit is not None:
        optim.add_argument("--batch-size", type=int, default=None,
                           help=f"{batch_unit} per batch; default {full['batch_size']} (smoke: {smoke['batch_size']})")
    optim.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
    optim.add_argument("--weight-decay", type=float, default=5e-4, help="AdamW (decoupled) weight decay")
    optim.add_argument("--warmup-epochs", type=int, default=0, help="linear warm-up before the cosine decay")

    aug = parser.add_argument_group("augmentation (random resized crop + horizontal flip)")
    aug.add_argument("--input-size", type=int, default=None,
                     help=f"default {full['input_size']} (smoke: {smoke['input_size']})")
    aug.add_argument("--min-scale", type=float, default=None,
                     help=f"smallest crop, as a fraction of the image area; default {AUGMENT_FULL['min_scale']} "
                          f"(smoke: {AUGMENT_SMOKE['min_scale']})")
    aug.add_argument("--hf-prob", type=float, default=None,
                     help=f"probability of a horizontal flip; default {AUGMENT_FULL['hf_prob']} "
                          f"(smoke: {AUGMENT_SMOKE['hf_prob']})")

    run_group = _cli.add_run_arguments(parser, out_dir)
    run_group.add_argument("--no-progress", action="store_true", help="no line per epoch")

    evaluation = parser.add_argument_group("evaluation on the held-out classes")
    evaluation.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    evaluation.add_argument("--no-baselines", action="store_true",
                            help="skip the encoder at random initialisation and the raw pixels")


def check_arguments(args: argparse.Namespace, split: OpenSetSplit, batch_items: int,
                    batch_arguments: str = "--batch-size", images_per_step: Optional[int] = None) -> None:
    """ValueError naming the first bad shared argument; ``batch_items``: training images one batch draws from,
    set by ``batch_arguments`` (named in the error); ``images_per_step``: the images one step encodes (default
    ``batch_items``)."""
    check_model_name(args.backbone, "--backbone")
    _cli.check_at_least(args, 1, *(name for name in ("epochs", "batch_size", "input_size", "embedding_dim",
                                                      "eval_every", "hidden_dim") if hasattr(args, name)))
    _cli.check_run_arguments(args)
    if args.eval_per_class < 2:  # else the evaluation fails after the first epoch of training
        raise ValueError(f"--eval-per-class must be >= 2 (the held-out metrics compare images of the same class), "
                         f"got {args.eval_per_class}")
    if batch_items > len(split.train.labels):
        raise ValueError(f"{batch_arguments}: a batch draws {batch_items} images, more than the training set "
                         f"({len(split.train.labels)} images)")
    _cli.check_number(args, "lr", 0, exclusive_minimum=True)
    _cli.check_number(args, "weight_decay", 0)
    _cli.check_number(args, "min_scale", 0, 1, exclusive_minimum=True)
    _cli.check_number(args, "hf_prob", 0, 1)
    _cli.check_warmup_epochs(args)
    images = batch_items if images_per_step is None else images_per_step
    _cli.check_memory(lambda: build_encoder(args), _common.device_for(args), optimizer_states=2,  # AdamW
                      input_floats_per_process=images * 3 * args.input_size ** 2, processes=1,
                      what=f"{batch_arguments} ({images} images a step) at --input-size {args.input_size}, "
                           f"--backbone {args.backbone}, --embedding-dim {args.embedding_dim}")


def resolve_class_count(args: argparse.Namespace, name: str, available: int, default_cap: int, what: str) -> int:
    """Fills ``args.<name>``, a number of classes, when unset (all ``available`` ones, at most ``default_cap``)
    and checks that it is in [2, available]; ``what`` names the available classes in the error."""
    value = getattr(args, name)
    if value is None:
        value = min(available, default_cap)
        setattr(args, name, value)
    if not 2 <= value <= available:
        raise ValueError(f"--{name.replace('_', '-')} must be in [2, {available}] ({what}), got {value}")
    return value


# -------------------------------------------------------------------------------------------------------- data
def load_split(args: argparse.Namespace, full: Mapping[str, Any], smoke: Mapping[str, Any]) -> OpenSetSplit:
    """The data of ``--data-dir`` (or the embedded digits) split by ``--test-classes``, with ``--subset`` and
    ``--eval-per-class`` applied; fills the unset arguments named in ``full`` / ``smoke`` (and the augmentation's)
    with the values for real data or for the digits, and announces the fallback loudly."""
    _cli.check_sizes(args)  # before the digits are decoded at --input-size
    source = load_image_source(args.data_dir, download=args.download, cache_dir=args.cache_dir,
                               embedded_size=args.input_size or smoke["input_size"])
    _cli.fill_defaults(args, {**AUGMENT_SMOKE, **smoke} if source.embedded else {**AUGMENT_FULL, **full})
    if source.embedded:
        print(_cli.embedded_data_notice(f"a SMOKE RUN of the pipeline ({args.epochs} epochs, {args.input_size}px)"),
              flush=True)
    held_out = [name.strip() for name in str(args.test_classes).split(",") if name.strip()]
    split = open_set_split(source, held_out)
    train, notes = split.train, []
    if args.subset is not None:
        train = random_subset(train, args.subset, args.seed, name="--subset")
        notes.append(f"{args.subset} training images drawn at random (seed {args.seed})")
    test = first_per_class(split.test, args.eval_per_class, name="--eval-per-class")
    if len(test.labels) < len(split.test.labels):
        notes.append(f"at most {args.eval_per_class} evaluation images per class")
    return replace(split, train=train, test=test, description="; ".join([split.description, *notes]))


def describe(split: OpenSetSplit) -> str:
    return (f"data: {split.description}: {len(split.train.labels)} training images of {len(split.train_classes)} "
            f"classes, {len(split.test.labels)} evaluation images of {len(split.test_classes)} held-out classes")


# ------------------------------------------------------------------------------------------------------- model
def build_encoder(args: argparse.Namespace) -> lse.SiameseNetwork:
    """The encoder (backbone + embedding head), seeded: the trained and the random-init encoders start alike."""
    torch.manual_seed(args.seed)
    return _cli.create_with_backbone_kwargs(lse.SiameseNetwork, args.backbone, args.backbone_kwargs,
                                            embedding_dim=args.embedding_dim, hidden_dim=args.hidden_dim,
                                            normalize=args.normalize, distance=args.distance)


def checkpoint_extra(args: argparse.Namespace, split: OpenSetSplit) -> Dict[str, Any]:
    classes = split.train.classes
    return {"args": _cli.checkpointable_args(args), "data": split.description,
            "train_classes": [classes[i] for i in split.train_classes],
            "test_classes": [classes[i] for i in split.test_classes]}


# -------------------------------------------------------------------------------------------------- evaluation
def evaluate(model: lse.SiameseNetwork, split: OpenSetSplit, metrics: Metrics, device: torch.device,
             input_size: int) -> Dict[str, float]:
    """``metrics`` of the held-out classes' embeddings, and (prefixed ``backbone_``) of the backbone's features:
    with few training classes the embedding head can specialise to them while the backbone still transfers."""
    preprocess = lse.BatchedEvalTransform(input_size, NORMALIZE)
    labels = split.test.labels.to(device)
    features = lse.extract_features(model.backbone, split.test.images, device=device, preprocess=preprocess)[0]
    embeddings = lse.extract_features(model.embedding_head, features, device=device)[0]  # in eval mode
    backbone = {f"backbone_{key}": value for key, value in metrics(features, labels).items()}
    return {**metrics(embeddings, labels), **backbone}


def summarise(args: argparse.Namespace, split: OpenSetSplit, held_out: Mapping[str, float], metrics: Metrics,
              device: torch.device, images_per_batch: int, epoch_times: Sequence[float],
              images_per_s: Sequence[float]) -> Dict[str, Any]:
    """The run's summary: the trained encoder's held-out metrics next to the same encoder at random
    initialisation and to raw pixels (``--no-baselines`` skips those), and its throughput."""
    summary: Dict[str, Any] = {
        "data": split.description, "embedded_smoke_run": split.embedded,
        **{key: value for key, value in checkpoint_extra(args, split).items() if key != "args"},
        "train_images": len(split.train.labels), "eval_images": len(split.test.labels), "backbone": args.backbone,
        "epochs": args.epochs, "images_per_batch": images_per_batch, **_by_part(held_out, "trained"),
    }
    if not args.no_baselines:
        random_init = build_encoder(args).to(device)
        summary.update(_by_part(evaluate(random_init, split, metrics, device, args.input_size), "random_init"))
        preprocess = lse.BatchedEvalTransform(args.input_size, NORMALIZE)
        pixels = lse.extract_features(lambda x: x.flatten(start_dim=1), split.test.images, device=device,
                                      preprocess=preprocess)[0]
        summary["raw_pixels"] = metrics(pixels, split.test.labels.to(device))
    if epoch_times:
        summary["epoch_time_s"] = sum(epoch_times) / len(epoch_times)
        summary["images_per_s"] = sum(images_per_s) / len(images_per_s)
    return summary


def _by_part(metrics: Mapping[str, float], key: str) -> Dict[str, Dict[str, float]]:
    """``{key: embedding metrics, key_backbone: backbone metrics}`` from :func:`evaluate`'s result."""
    prefix = "backbone_"
    return {key: {k: v for k, v in metrics.items() if not k.startswith(prefix)},
            f"{key}_backbone": {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}}


def epoch_line(args: argparse.Namespace, epoch: int, loss: float, held_out: Optional[Mapping[str, float]],
               headline: str, images_per_s: float, seconds: float) -> str:
    """The progress line of an epoch (``held_out`` only when it was evaluated)."""
    metric = (f" held-out {headline}: embedding {held_out[headline]:.4f} backbone {held_out[f'backbone_{headline}']:.4f}"
              if held_out is not None else "")
    return f"epoch {epoch + 1}/{args.epochs} loss {loss:.4f}{metric} {images_per_s:.0f} img/s {seconds:.1f} s"


def report(title: str, summary: Mapping[str, Any], args: argparse.Namespace,
           format_metrics: Callable[[Mapping[str, float]], str], notes: Sequence[str]) -> None:
    lines = [f"data: {summary['data']}"]
    if "images_per_s" in summary:
        lines.append(f"throughput: {summary['images_per_s']:.0f} training images/s, {summary['epoch_time_s']:.2f} s "
                     "per epoch")
    lines.append(f"held-out classes {summary['test_classes']} ({summary['eval_images']} images), never seen in "
                 "training:")
    rows = [("trained encoder, embedding", "trained"), ("trained encoder, backbone features", "trained_backbone"),
            ("random-init encoder, embedding", "random_init"),
            ("random-init encoder, backbone features", "random_init_backbone"), ("raw pixels", "raw_pixels")]
    lines += [f"  {label + ':':<40} {format_metrics(summary[key])}" for label, key in rows if key in summary]
    lines += [f"  {note}" for note in notes]
    if summary["embedded_smoke_run"]:
        lines.append(f"NOTE: this was a SMOKE RUN on the embedded digits ({summary['epochs']} epochs, "
                     f"{args.input_size}px, {summary['train_images']} training images). Digits are easy even for raw "
                     "pixels: compare the rows above before reading anything into them. Point --data-dir at CIFAR-10 "
                     "for real results.")
    lines.append(f"files: {args.out_dir / 'metrics.csv'}, {args.out_dir / 'metrics.png'}, "
                 f"{args.out_dir / 'last.pt'}, {args.out_dir / 'summary.json'}")
    _cli.print_report(f"{title}: {summary['backbone']}, {summary['epochs']} epochs, {summary['images_per_batch']} "
                      "images per batch", lines)
