"""Scaffolding of the embedding recipes (``recipes/siamese_pairs.py``, ``recipes/triplet_retrieval.py``): train a
:class:`~lightly_siamese_ext.SiameseNetwork` encoder on some classes, evaluate its embeddings on held-out classes.

Shared here: the command-line arguments, the class-disjoint data split, the training loop (uint8 images resident on
the device, batched random-resized-crop + flip augmentation there, AdamW with a cosine schedule, a checkpoint and a
metrics row every epoch, ``--resume`` that continues to the same result) and the final comparison of the trained
encoder (its embeddings and its backbone's features) with the same encoder at random initialisation and with raw
pixels. A recipe subclasses
:class:`EmbeddingTrainer` for its batches and loss (:meth:`~EmbeddingTrainer.train_epoch`) and its held-out
metrics (:meth:`~EmbeddingTrainer.held_out_metrics`), and calls :func:`run`. All text goes through the ``write``
callable given to :func:`run` (the recipes pass ``print``).
"""

from __future__ import annotations

import argparse
import json
import time
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Tuple, Type

import torch
from torch import Tensor

from lightly_siamese_ext.backbones import CIFAR10_NORMALIZE, check_model_name
from lightly_siamese_ext.data.class_split import OpenSetSplit, open_set_split
from lightly_siamese_ext.data.sources import load_image_source
from lightly_siamese_ext.data.subsets import first_per_class, random_subset
from lightly_siamese_ext.evaluation import extract_features
from lightly_siamese_ext.models import SiameseNetwork
from lightly_siamese_ext.optim import epoch_cosine_scheduler
from lightly_siamese_ext.training.checkpoint import save_checkpoint
from lightly_siamese_ext.training.cli import (MAY_CHANGE_ON_RESUME, add_data_arguments, add_run_arguments,
                                             check_at_least, check_run_arguments, check_warmup_epochs,
                                             checkpointable_args, create_with_backbone_kwargs, embedded_data_notice,
                                             run_cli)
from lightly_siamese_ext.training.metrics_log import MetricsLog
from lightly_siamese_ext.training.run_dir import prepare_run_dir
from lightly_siamese_ext.training.step import autocast_context
from lightly_siamese_ext.transforms.crop_flip import BatchedCropFlipTransform
from lightly_siamese_ext.transforms.eval import BatchedEvalTransform

__all__ = [
    "EmbeddingTrainer",
    "add_common_arguments",
    "check_common_arguments",
    "load_split",
    "resolve_class_count",
    "resolve_defaults",
    "run",
]

NORMALIZE = CIFAR10_NORMALIZE
# What a --resume may change besides MAY_CHANGE_ON_RESUME: what is evaluated and shown, not what is trained.
MAY_CHANGE = (*MAY_CHANGE_ON_RESUME, "no_progress", "eval_every", "eval_per_class", "no_baselines", "n_way", "trials")
# Augmentation defaults: mild on real data; milder on the small digits, without flips (digits are not symmetric).
AUGMENT_FULL = dict(min_scale=0.5, hf_prob=0.5)
AUGMENT_SMOKE = dict(min_scale=0.8, hf_prob=0.0)
Write = Callable[[str], None]


# --------------------------------------------------------------------------------------------------- arguments
def add_common_arguments(
    parser: argparse.ArgumentParser,
    full: Mapping[str, Any],
    smoke: Mapping[str, Any],
    out_dir: str,
    batch_unit: Optional[str] = None,
    normalize: bool = False,
) -> None:
    """The arguments every embedding recipe takes. ``full`` / ``smoke`` hold the defaults that differ between real
    data and the embedded digits (``epochs``, ``input_size``, ``embedding_dim``, and ``batch_size`` when
    ``batch_unit`` says what ``--batch-size`` counts; without it the recipe defines its own batch arguments)."""
    data = add_data_arguments(parser)
    data.add_argument("--test-classes", default="7,8,9",
                      help="held-out classes (indices or names, comma-separated): never trained on, evaluated on "
                           "(digits: 7,8,9; CIFAR-10: horse, ship, truck)")
    data.add_argument("--subset", type=int, default=None,
                      help="train on N images of the training classes drawn at random (seeded)")
    data.add_argument("--eval-per-class", type=int, default=1000,
                      help="evaluate on at most the first N images of every held-out class")

    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="resnet18_cifar", help="any timm model name")
    model.add_argument("--backbone-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                       help="passed to timm.create_model, e.g. zero_init_last=False \"channels=(32,64,128,256)\"")
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

    run_group = add_run_arguments(parser, out_dir)
    run_group.add_argument("--no-progress", action="store_true", help="no line per epoch")

    evaluation = parser.add_argument_group("evaluation on the held-out classes")
    evaluation.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    evaluation.add_argument("--no-baselines", action="store_true",
                            help="skip the encoder at random initialisation and the raw pixels")


def resolve_defaults(args: argparse.Namespace, embedded: bool, full: Mapping[str, Any],
                     smoke: Mapping[str, Any]) -> None:
    """Fills the unset arguments named in ``full`` (and the augmentation's): ``full``'s values on real data,
    ``smoke``'s on the digits."""
    config = {**AUGMENT_SMOKE, **smoke} if embedded else {**AUGMENT_FULL, **full}
    for key in config:
        if getattr(args, key) is None:
            setattr(args, key, config[key])


def check_common_arguments(args: argparse.Namespace, split: OpenSetSplit, batch_items: int,
                           batch_arguments: str = "--batch-size") -> None:
    """ValueError naming the first bad common argument; ``batch_items``: training images one batch draws from,
    set by ``batch_arguments`` (named in the error)."""
    check_model_name(args.backbone, "--backbone")
    check_at_least(args, 1, *(name for name in ("epochs", "batch_size", "input_size", "embedding_dim", "eval_every",
                                                 "hidden_dim") if hasattr(args, name)))
    check_run_arguments(args)
    if args.eval_per_class < 2:  # else the evaluation fails after the first epoch of training
        raise ValueError(f"--eval-per-class must be >= 2 (the held-out metrics compare images of the same class), "
                         f"got {args.eval_per_class}")
    if batch_items > len(split.train.labels):
        raise ValueError(f"{batch_arguments}: a batch draws {batch_items} images, more than the training set "
                         f"({len(split.train.labels)} images)")
    if not args.lr > 0 or args.weight_decay < 0:
        raise ValueError(f"--lr must be > 0 and --weight-decay >= 0, got {args.lr} and {args.weight_decay}")
    if not 0 < args.min_scale <= 1:
        raise ValueError(f"--min-scale must be in (0, 1], got {args.min_scale}")
    if not 0 <= args.hf_prob <= 1:
        raise ValueError(f"--hf-prob must be in [0, 1], got {args.hf_prob}")
    check_warmup_epochs(args)


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
def load_split(args: argparse.Namespace, smoke: Mapping[str, Any]) -> OpenSetSplit:
    """The data of ``--data-dir`` (or the embedded digits) split by ``--test-classes``, with ``--subset`` and
    ``--eval-per-class`` applied."""
    source = load_image_source(args.data_dir, download=args.download, cache_dir=args.cache_dir,
                               embedded_size=args.input_size or smoke["input_size"])
    held_out = [name.strip() for name in str(args.test_classes).split(",") if name.strip()]
    split = open_set_split(source, held_out)
    train, notes = split.train, []
    if args.subset is not None:
        train = random_subset(train, args.subset, args.seed, name="--subset")
        notes.append(f"{args.subset} training images drawn at random (seed {args.seed})")
    test = first_per_class(split.test, args.eval_per_class, name="--eval-per-class")
    if len(test.labels) < len(split.test.labels):
        notes.append(f"at most {args.eval_per_class} evaluation images per class")
    description = "; ".join([split.description, *notes])
    return replace(split, train=train, test=test, description=description)


# ---------------------------------------------------------------------------------------------------- training
class EmbeddingTrainer(ABC):
    """The training loop and evaluation of an embedding recipe. Subclasses implement :meth:`train_epoch` and
    :meth:`held_out_metrics` and name their columns in :attr:`train_columns` and :attr:`metric_names`.

    All randomness of epoch ``e`` comes from generators seeded with ``(seed, e)``: a resumed run draws exactly the
    batches and augmentations of an uninterrupted one.
    """

    #: What :meth:`train_epoch` returns, in the CSV and the plot.
    train_columns: Tuple[str, ...] = ("loss",)
    #: What :meth:`held_out_metrics` returns, in the CSV, the plot and the summary.
    metric_names: Tuple[str, ...] = ()
    #: The metric of the per-epoch line and the plot.
    headline_metric: str = ""
    #: What the recipe trains, for the report and the plot.
    title: str = ""

    def __init__(self, args: argparse.Namespace, split: OpenSetSplit) -> None:
        self.args, self.split = args, split
        use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if use_cuda else "cpu")
        if args.threads:
            torch.set_num_threads(args.threads)
        use_bf16 = args.precision == "bf16" or (args.precision == "auto" and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if use_bf16 else None
        self.model = self.build_model().to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        self.scheduler = epoch_cosine_scheduler(self.optimizer, args.epochs, warmup_epochs=args.warmup_epochs)
        self.images = split.train.images.to(self.device)
        self.train_labels = split.train.labels.to(self.device)
        self.augment = BatchedCropFlipTransform(args.input_size, args.min_scale, hf_prob=args.hf_prob,
                                                normalize=NORMALIZE)
        self.preprocess = BatchedEvalTransform(args.input_size, NORMALIZE)

    # ------------------------------------------------------------------------------ what a recipe implements
    @abstractmethod
    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """Trains one epoch; returns the :attr:`train_columns`."""

    @abstractmethod
    def steps_per_epoch(self) -> int:
        """Optimisation steps per epoch."""

    @abstractmethod
    def images_per_step(self) -> int:
        """Images through the encoder per step."""

    @abstractmethod
    def held_out_metrics(self, embeddings: Tensor, labels: Tensor) -> Dict[str, float]:
        """The :attr:`metric_names` of held-out embeddings (N, D) with labels (N,)."""

    # ------------------------------------------------------------------------------------- building blocks
    def build_model(self) -> SiameseNetwork:
        """The encoder, seeded: the trained and the random-init encoders start from the same weights."""
        args = self.args
        torch.manual_seed(args.seed)
        return create_with_backbone_kwargs(SiameseNetwork, args.backbone, args.backbone_kwargs,
                                           embedding_dim=args.embedding_dim, hidden_dim=args.hidden_dim,
                                           normalize=args.normalize, distance=args.distance)

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """Augmentation randomness of ``epoch`` (on the device)."""
        return torch.Generator(device=self.device).manual_seed(self.args.seed * 1_000_003 + epoch * 1_009)

    def autocast(self) -> ContextManager[object]:
        return autocast_context(self.device, self.amp_dtype)

    def step(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def embed(self, encoder: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
        """Embeddings (N, D) of uint8 images (N, 3, H, W), preprocessed for evaluation (no augmentation)."""
        return extract_features(encoder, images, device=self.device, preprocess=self.preprocess)[0]

    def evaluate(self, encoder: Callable[[Tensor], Tensor]) -> Dict[str, float]:
        """:meth:`held_out_metrics` of ``encoder`` on the held-out classes."""
        test = self.split.test
        return self.held_out_metrics(self.embed(encoder, test.images), test.labels.to(self.device))

    def evaluate_model(self, model: SiameseNetwork) -> Dict[str, float]:
        """:meth:`held_out_metrics` of ``model``'s embeddings, and (prefixed ``backbone_``) of its backbone's
        features: with few training classes the embedding head can specialise to them while the backbone's
        features still transfer, so both are reported."""
        test = self.split.test
        labels = test.labels.to(self.device)
        features = self.embed(model.backbone, test.images)
        embeddings = extract_features(model.embedding_head, features, device=self.device)[0]  # in eval mode
        backbone = self.held_out_metrics(features, labels)
        return {**self.held_out_metrics(embeddings, labels), **{f"backbone_{k}": v for k, v in backbone.items()}}

    def format_metrics(self, result: Mapping[str, float]) -> str:
        """One line of :attr:`metric_names` values, for the report."""
        return "  ".join(f"{name} {result[name]:.4f}" for name in self.metric_names)

    def report_notes(self, summary: Mapping[str, Any]) -> List[str]:
        """Lines after the report's table (e.g. chance levels)."""
        return []

    # ------------------------------------------------------------------------------------------------- loop
    def fit(self, write: Write) -> Optional[Dict[str, Any]]:
        """Trains (resuming if asked), evaluates, writes the outputs; returns the summary, or None when stopped
        early by ``--stop-after-epoch``."""
        args = self.args
        # All randomness derives from (seed, epoch): the global random states need no restoring.
        checkpoint_path, start_epoch = prepare_run_dir(args.out_dir, args.resume, checkpointable_args(args),
                                                       MAY_CHANGE, model=self.model, optimizer=self.optimizer,
                                                       scheduler=self.scheduler, restore_rng=False,
                                                       map_location=self.device)
        metrics = MetricsLog(args.out_dir / "metrics.csv")
        metrics.truncate(start_epoch)
        held_out: Dict[str, float] = {}
        columns = [*self.metric_names, *(f"backbone_{name}" for name in self.metric_names)]
        images_per_s: List[float] = []
        epoch_times: List[float] = []
        for epoch in range(start_epoch, args.epochs):
            self.model.train()
            epoch_lr = self.optimizer.param_groups[0]["lr"]  # before scheduler.step() moves it to the next epoch's
            started = time.perf_counter()
            row: Dict[str, Any] = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            self.scheduler.step()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            epoch_times.append(time.perf_counter() - started)
            images_per_s.append(self.steps_per_epoch() * self.images_per_step() / epoch_times[-1])
            evaluate_now = (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs
            if evaluate_now:
                held_out = self.evaluate_model(self.model)
            row.update({name: held_out[name] if evaluate_now else None for name in columns})
            row.update(lr=epoch_lr, epoch_time_s=epoch_times[-1],
                       images_per_s=images_per_s[-1])
            metrics.append(row)
            save_checkpoint(checkpoint_path, model=self.model, epoch=epoch + 1, optimizer=self.optimizer,
                            scheduler=self.scheduler, extra=self.checkpoint_extra())
            metrics.plot(args.out_dir / "metrics.png",
                         [*self.train_columns, self.headline_metric, f"backbone_{self.headline_metric}"],
                         title=f"{self.title}, {args.backbone} ({self.headline_metric}: held-out classes)")
            if not args.no_progress:
                name = self.headline_metric
                headline = (f" held-out {name}: embedding {held_out[name]:.4f} "
                            f"backbone {held_out[f'backbone_{name}']:.4f}" if evaluate_now else "")
                write(f"epoch {epoch + 1}/{args.epochs} loss {row['loss']:.4f}{headline} "
                      f"{images_per_s[-1]:.0f} img/s {epoch_times[-1]:.1f} s")
            if args.stop_after_epoch is not None and epoch + 1 >= args.stop_after_epoch and epoch + 1 < args.epochs:
                write(f"stopping after epoch {epoch + 1} (--stop-after-epoch); continue with --resume")
                return None
        if not held_out:  # resumed a finished run: evaluate what it left
            held_out = self.evaluate_model(self.model)
        return self.summarise(held_out, epoch_times, images_per_s)

    def checkpoint_extra(self) -> Dict[str, Any]:
        classes = self.split.train.classes
        return {"args": checkpointable_args(self.args), "data": self.split.description,
                "train_classes": [classes[i] for i in self.split.train_classes],
                "test_classes": [classes[i] for i in self.split.test_classes]}

    def summarise(self, held_out: Dict[str, float], epoch_times: List[float],
                  images_per_s: List[float]) -> Dict[str, Any]:
        args = self.args
        summary: Dict[str, Any] = {
            "data": self.split.description,
            "embedded_smoke_run": self.split.embedded,
            **{key: value for key, value in self.checkpoint_extra().items() if key != "args"},
            "train_images": len(self.split.train.labels),
            "eval_images": len(self.split.test.labels),
            "backbone": args.backbone,
            "epochs": args.epochs,
            "images_per_batch": self.images_per_step(),
            **_split_backbone(held_out, "trained"),
        }
        if not args.no_baselines:
            summary.update(_split_backbone(self.evaluate_model(self.build_model().to(self.device)), "random_init"))
            summary["raw_pixels"] = self.evaluate(lambda x: x.flatten(start_dim=1))
        if epoch_times:
            summary["epoch_time_s"] = sum(epoch_times) / len(epoch_times)
            summary["images_per_s"] = sum(images_per_s) / len(images_per_s)
        (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def report(self, summary: Mapping[str, Any], write: Write) -> None:
        args = self.args
        write("\n" + "=" * 78)
        write(f"{self.title}: {summary['backbone']}, {summary['epochs']} epochs, {summary['images_per_batch']} images "
              "per batch")
        write(f"data: {summary['data']}")
        if "images_per_s" in summary:
            write(f"throughput: {summary['images_per_s']:.0f} training images/s, {summary['epoch_time_s']:.2f} s "
                  "per epoch")
        write(f"held-out classes {summary['test_classes']} ({summary['eval_images']} images), never seen in "
              "training:")
        rows = [("trained encoder, embedding", "trained"), ("trained encoder, backbone features", "trained_backbone"),
                ("random-init encoder, embedding", "random_init"),
                ("random-init encoder, backbone features", "random_init_backbone"), ("raw pixels", "raw_pixels")]
        for label, key in rows:
            if key in summary:
                write(f"  {label + ':':<40} {self.format_metrics(summary[key])}")
        for line in self.report_notes(summary):
            write("  " + line)
        if summary["embedded_smoke_run"]:
            write(f"NOTE: this was a SMOKE RUN on the embedded digits ({summary['epochs']} epochs, {args.input_size}px,"
                  f" {summary['train_images']} training images). Digits are easy even for raw pixels: compare the "
                  "rows above before reading anything into them. Point --data-dir at CIFAR-10 for real results.")
        write(f"files: {args.out_dir / 'metrics.csv'}, {args.out_dir / 'metrics.png'}, {args.out_dir / 'last.pt'}, "
              f"{args.out_dir / 'summary.json'}")
        write("=" * 78)


def _split_backbone(metrics: Mapping[str, float], key: str) -> Dict[str, Dict[str, float]]:
    """``{key: embedding metrics, key_backbone: backbone metrics}`` from :meth:`EmbeddingTrainer.evaluate_model`."""
    prefix = "backbone_"
    return {key: {k: v for k, v in metrics.items() if not k.startswith(prefix)},
            f"{key}_backbone": {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}}


# --------------------------------------------------------------------------------------------------------- run
def run(
    args: argparse.Namespace,
    trainer_cls: Type[EmbeddingTrainer],
    check_args: Callable[[argparse.Namespace, OpenSetSplit], None],
    full: Mapping[str, Any],
    smoke: Mapping[str, Any],
    write: Write,
) -> int:
    """Loads the data, trains, evaluates and reports; returns the exit status (2 and one ``error:`` line on
    stderr for bad arguments or data)."""

    def body() -> None:
        split = load_split(args, smoke)
        resolve_defaults(args, split.embedded, full, smoke)
        if split.embedded:
            write(embedded_data_notice(f"a SMOKE RUN of the pipeline ({args.epochs} epochs, {args.input_size}px)"))
        check_args(args, split)
        write(f"data: {split.description}: {len(split.train.labels)} training images of {len(split.train_classes)} "
              f"classes, {len(split.test.labels)} evaluation images of {len(split.test_classes)} held-out classes")
        trainer = trainer_cls(args, split)
        summary = trainer.fit(write)
        if summary is not None:
            trainer.report(summary, write)

    return run_cli(body)
