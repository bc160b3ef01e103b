#!/usr/bin/env python
"""Linear evaluation of a SimSiam checkpoint written by recipes/simsiam_cifar.py: a linear classifier on the frozen
backbone, top-1 / top-5 accuracy on the held-out split.

    python recipes/linear_eval.py --checkpoint runs/simsiam_cifar/last.pt                 # frozen features, fast
    python recipes/linear_eval.py --checkpoint runs/simsiam_cifar/last.pt --protocol lightly --epochs 100
    python recipes/linear_eval.py --allow-random-init --data-dir ~/data/cifar10            # random-init baseline

Protocols:
  features (default): the backbone's features of every image are computed once (no augmentation) and
    lightly_siamese_ext.linear_probe trains on them: lightly LinearClassifier's optimiser and schedule (SGD,
    momentum 0.9, lr x batch / 256, cosine), on features standardised with the training set's statistics. It is
    the probe simsiam_cifar.py runs at its end: with the same data, seed and epochs it gives the same numbers.
  lightly: lightly's LinearClassifier (lightly.utils.benchmarking) trained by a PyTorch Lightning Trainer on
    augmented images (random resized crop + horizontal flip, as lightly's benchmarks), the backbone frozen in eval
    mode. Images stay uint8 until the device, where the batch is augmented. Slower: every epoch runs the backbone.

Data: by default the training run's own (its --data-dir, --download, --cache-dir, --holdout-per-class, --subset,
--seed and --input-size are read from the checkpoint): the classifier trains on the run's training images and is
evaluated on its held-out split. Any of them given here overrides the checkpoint's. Without --checkpoint there is
no trained encoder: --allow-random-init evaluates the encoder at random initialisation, as a baseline.

Outputs in --out-dir: metrics.csv, per_class.png (per-class accuracy), metrics.png (lightly protocol: curves per
epoch), last.pt (the linear classifier; every epoch with the lightly protocol), summary.json. --out-dir is never the
folder of --checkpoint (the evaluation would replace the run it reads), and a folder that holds an earlier result
is replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
import torch.nn as nn
from lightly.utils.benchmarking import LinearClassifier
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

import _cli
import _run_dir
import lightly_siamese_ext as lse
from lightly_siamese_ext.backbones import check_model_name
from lightly_siamese_ext.data import TrainTestSplit, random_subset
from lightly_siamese_ext.training import MetricsLog, load_checkpoint, pyplot_or_none, save_checkpoint
from lightly_siamese_ext._atomic import write_atomically

# simsiam_cifar.py's defaults for what a checkpoint may not say: the digits are loaded at its smoke input size (16),
# and a run without a checkpoint uses its input sizes and held-out split.
EMBEDDED_SIZE = 16
INPUT_SIZE = {"embedded": 16, "real": 32}
NORMALIZE = lse.CIFAR10_NORMALIZE  # as simsiam_cifar.py trained
DATA_ARGUMENTS = ("data_dir", "download", "cache_dir", "holdout_per_class", "subset", "seed", "input_size")
TOPK = (1, 5)


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.recipe_parser(__doc__)
    encoder = parser.add_argument_group("encoder")
    encoder.add_argument("--checkpoint", type=Path, default=None, help="last.pt of a simsiam_cifar.py run")
    encoder.add_argument("--allow-random-init", action="store_true",
                         help="without --checkpoint: evaluate the encoder at random initialisation (a baseline)")
    _cli.add_backbone_arguments(encoder, backbone_help="backbone of the random-init encoder (a checkpoint names its "
                                                       "own)",
                                kwargs_help="with --allow-random-init: passed to timm.create_model, as in "
                                            "simsiam_cifar.py (a checkpoint brings its own)")

    data = _cli.add_data_arguments(parser, inherited_from="the checkpoint's")
    data.add_argument("--holdout-per-class", type=int, default=None,
                      help="images per class held out when the data has no test split (no checkpoint: 500)")
    data.add_argument("--subset", type=int, default=None, help="train on N training images drawn at random (seeded)")
    data.add_argument("--input-size", type=int, default=None,
                      help="image side (no checkpoint: 32, digits 16)")

    linear = parser.add_argument_group("linear classifier")
    linear.add_argument("--protocol", choices=["features", "lightly"], default="features",
                        help="frozen precomputed features + linear_probe, or lightly's LinearClassifier on "
                             "augmented images")
    linear.add_argument("--epochs", type=int, default=100, help="classifier training epochs")
    linear.add_argument("--batch-size", type=int, default=256, help="classifier batch size")
    linear.add_argument("--lr", type=float, default=0.1, help="lr = lr x batch_size / 256 (lightly's convention)")
    linear.add_argument("--weight-decay", type=float, default=0.0, help="features protocol only (lightly uses 0)")
    linear.add_argument("--min-scale", type=float, default=0.08,
                        help="lightly protocol: smallest random crop, as a fraction of the image area")
    linear.add_argument("--hf-prob", type=float, default=0.5, help="lightly protocol: horizontal flip probability")

    run = parser.add_argument_group("run")
    run.add_argument("--out-dir", type=Path, default=Path("runs/linear_eval"),
                     help="where metrics.csv, summary.json and the classifier (last.pt) go; never the folder of "
                          "--checkpoint")
    _cli.add_overwrite_argument(run)
    run.add_argument("--seed", type=int, default=None, help="subset and classifier seed (default: the checkpoint's, "
                                                           "else 0)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when available")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    run.add_argument("--num-workers", type=int, default=0, help="lightly protocol: DataLoader workers")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# --------------------------------------------------------------------------------------------------- encoder
def load_encoder(args: argparse.Namespace) -> Tuple[lse.SimSiam, Dict[str, Any]]:
    """The SimSiam model of ``--checkpoint`` (or a random-init one) and what describes it. Fills the data
    arguments left unset from the checkpoint's training arguments."""
    if args.checkpoint is None:
        if not args.allow_random_init:
            raise ValueError("--checkpoint is required (a simsiam_cifar.py last.pt); pass --allow-random-init to "
                             "evaluate a random-init encoder as a baseline")
        check_model_name(args.backbone, "--backbone")
        torch.manual_seed(0 if args.seed is None else args.seed)  # simsiam_cifar.py's random-init baseline
        model = _cli.create_with_backbone_kwargs(lse.SimSiam, args.backbone, args.backbone_kwargs)
        return model, {"encoder": f"{args.backbone} at RANDOM INITIALISATION (a baseline)", "checkpoint": None,
                       "pretrain_epochs": 0}
    if args.allow_random_init:
        raise ValueError("--allow-random-init and --checkpoint exclude each other")
    if args.backbone_kwargs:
        raise ValueError("--backbone-kwargs is only for --allow-random-init: a checkpoint brings its own")
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint} " + (
            "is a folder, not a checkpoint file" if args.checkpoint.is_dir() else "does not exist"))
    try:
        payload = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for files that are not checkpoints
        raise ValueError(f"--checkpoint {args.checkpoint} is not a readable checkpoint ({type(error).__name__})") \
            from error
    extra = payload.get("extra") if isinstance(payload, dict) else None
    trained = extra.get("args") if isinstance(extra, dict) else None
    if not isinstance(trained, dict) or "proj_dim" not in trained:
        raise ValueError(f"--checkpoint {args.checkpoint} was not written by simsiam_cifar.py (no training arguments)")
    check_trained_arguments(trained, args.checkpoint)
    _run_dir.check_checkpoint(payload, args.checkpoint, option="--checkpoint")
    model = _cli.create_with_backbone_kwargs(lse.SimSiam, trained["backbone"], _trained_backbone_kwargs(trained),
                                             proj_layers=trained["proj_layers"], proj_dim=trained["proj_dim"],
                                             pred_hidden_dim=trained["pred_hidden_dim"])
    load_checkpoint(args.checkpoint, model=model, restore_rng=False)
    for name in DATA_ARGUMENTS:
        if getattr(args, name) is None and trained.get(name) is not None:
            value = trained[name]
            setattr(args, name, Path(value) if name in ("data_dir", "cache_dir") else value)
    args.backbone = trained["backbone"]
    return model, {"encoder": f"SimSiam {trained['backbone']} from {args.checkpoint} (epoch {payload['epoch']})",
                   "checkpoint": str(args.checkpoint), "pretrain_epochs": payload["epoch"]}


def check_trained_arguments(trained: Dict[str, Any], checkpoint: Path) -> None:
    """ValueError naming ``checkpoint`` when the arguments that rebuild its model are not of simsiam_cifar.py's
    types (a tampered or foreign checkpoint)."""
    expected = {"backbone": str, "proj_layers": int, "proj_dim": int, "pred_hidden_dim": int}
    for name, kind in expected.items():
        value = trained.get(name)
        if type(value) is not kind or (kind is int and value < 1):  # type(True) is bool, not int
            raise ValueError(f"--checkpoint {checkpoint} holds --{name.replace('_', '-')} {value!r}; "
                             f"simsiam_cifar.py writes {'a positive int' if kind is int else 'a str'}")


def _trained_backbone_kwargs(trained: Dict[str, Any]) -> Dict[str, Any]:
    """The checkpoint's ``--backbone-kwargs``: a dict, or the KEY=VALUE list of checkpoints written before
    the recipes parsed it with timm's ``ParseKwargs``."""
    kwargs = trained.get("backbone_kwargs") or {}
    if isinstance(kwargs, list):
        kwargs = build_parser().parse_args(["--backbone-kwargs", *kwargs]).backbone_kwargs
    return kwargs


# ------------------------------------------------------------------------------------------------------ data
def load_splits(args: argparse.Namespace) -> TrainTestSplit:
    """simsiam_cifar.py's split for the same arguments: its held-out split, its seeded training subset."""
    args.seed = 0 if args.seed is None else args.seed
    args.holdout_per_class = 500 if args.holdout_per_class is None else args.holdout_per_class
    splits = lse.load_train_test(args.data_dir, download=bool(args.download), cache_dir=args.cache_dir,
                             holdout_per_class=args.holdout_per_class, embedded_size=EMBEDDED_SIZE)
    if args.subset is not None:
        splits = TrainTestSplit(random_subset(splits.train, args.subset, args.seed, name="--subset"), splits.test,
                                splits.description, splits.embedded)
    if args.input_size is None:
        args.input_size = INPUT_SIZE["embedded" if splits.embedded else "real"]
    return splits


def check_args(args: argparse.Namespace) -> None:
    _cli.check_at_least(args, 1, "epochs", "batch_size", "input_size")
    _cli.check_at_least(args, 0, "num_workers")
    _cli.check_number(args, "lr", 0, exclusive_minimum=True)
    _cli.check_number(args, "weight_decay", 0)
    _cli.check_run_arguments(args)
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise NotADirectoryError(f"--out-dir {args.out_dir} is a file, not a folder")
    if args.checkpoint is not None:
        _run_dir.refuse_the_folder_of(args.out_dir, args.checkpoint)
    _cli.check_number(args, "min_scale", 0, 1, exclusive_minimum=True)
    _cli.check_number(args, "hf_prob", 0, 1)


# ------------------------------------------------------------------------------------------------- protocols
def features_protocol(model: lse.SimSiam, splits: TrainTestSplit, device: torch.device,
                      args: argparse.Namespace) -> Tuple[nn.Module, Dict[str, float]]:
    """linear_probe on frozen features: what simsiam_cifar.py runs at its end."""
    preprocess = lse.BatchedEvalTransform(args.input_size, NORMALIZE)
    train = lse.extract_features(model.embed, splits.train.images, device=device, preprocess=preprocess)[0]
    test = lse.extract_features(model.embed, splits.test.images, device=device, preprocess=preprocess)[0]
    probe = lse.linear_probe(train, splits.train.labels.to(device), test, splits.test.labels.to(device),
                             num_classes=len(splits.train.classes), epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, weight_decay=args.weight_decay, seed=args.seed)
    metrics = MetricsLog(args.out_dir / "metrics.csv")
    metrics.truncate(0)
    metrics.append({"epoch": args.epochs, "train_loss": probe["train_loss"],
                    **{f"top{k}": probe[f"top{k}"] for k in TOPK if f"top{k}" in probe}})
    save_checkpoint(args.out_dir / "last.pt", model=probe["classifier"], epoch=args.epochs,
                    extra={"args": _cli.checkpointable_args(args), "protocol": "features"})
    return probe["classifier"], {key: value for key, value in probe.items() if isinstance(value, float)}


def lightly_protocol(model: lse.SimSiam, splits: TrainTestSplit, device: torch.device,
                     args: argparse.Namespace) -> Tuple[nn.Module, Dict[str, float]]:
    """lightly's LinearClassifier on augmented images, trained by a Lightning Trainer."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):  # its info lines, not ours
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning 2.6 uses torch's deprecated LeafSpec check when it moves batches: not ours to fix.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    pl.seed_everything(args.seed, workers=True, verbose=False)
    num_classes = len(splits.train.classes)
    classifier = AugmentedLinearClassifier(
        model.backbone, batch_size_per_device=args.batch_size, lr=args.lr, feature_dim=model.feature_dim,
        num_classes=num_classes, topk=tuple(k for k in TOPK if k <= num_classes), input_size=args.input_size,
        min_scale=args.min_scale, hf_prob=args.hf_prob, seed=args.seed,
    )
    recorder = EpochRecorder(args)
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=not args.no_progress,
        num_sanity_val_steps=0, callbacks=[recorder], default_root_dir=str(args.out_dir),
    )
    train_loader = _loader(splits.train.images, splits.train.labels, args, shuffle=True)
    test_loader = _loader(splits.test.images, splits.test.labels, args, shuffle=False)
    trainer.fit(classifier, train_loader, test_loader)
    result = trainer.validate(classifier, test_loader, verbose=False)[0]
    metrics = {f"top{k}": float(result[f"val_top{k}"]) for k in classifier.topk}
    metrics["train_loss"] = recorder.last_train_loss
    classifier.to(device).eval()
    return nn.Sequential(classifier.classification_head), metrics


class AugmentedLinearClassifier(LinearClassifier):
    """lightly's LinearClassifier fed uint8 batches: training batches get a random resized crop + flip and
    validation batches a resize + normalisation, on the device after the transfer (no per-image CPU work)."""

    def __init__(self, model: nn.Module, batch_size_per_device: int, lr: float, feature_dim: int, num_classes: int,
                 topk: Tuple[int, ...], input_size: int, min_scale: float, hf_prob: float, seed: int) -> None:
        super().__init__(model, batch_size_per_device=batch_size_per_device, lr=lr, feature_dim=feature_dim,
                         num_classes=num_classes, topk=topk)
        self.augment = lse.BatchedCropFlipTransform(input_size, min_scale, hf_prob=hf_prob, normalize=NORMALIZE,
                                                    seed=seed)
        self.preprocess = lse.BatchedEvalTransform(input_size, NORMALIZE)

    def on_after_batch_transfer(self, batch: Tuple[Tensor, Tensor], dataloader_idx: int) -> Tuple[Tensor, Tensor]:
        images, labels = batch
        transform = self.augment if self.trainer.training else self.preprocess
        return transform(images), labels


class EpochRecorder(pl.Callback):
    """Per epoch: the mean training loss and lightly's validation top-k in metrics.csv, the head in last.pt."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.metrics = MetricsLog(args.out_dir / "metrics.csv")
        self.metrics.truncate(0)
        self.loss_sum: Any = 0.0
        self.steps, self.started = 0, 0.0
        self.last_train_loss = float("nan")

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.loss_sum, self.steps, self.started = 0.0, 0, time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.loss_sum = self.loss_sum + outputs["loss"].detach()  # no host sync per step
        self.steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:  # after validation
        self.last_train_loss = float(self.loss_sum) / max(self.steps, 1)
        logged = trainer.callback_metrics
        self.metrics.append({"epoch": trainer.current_epoch + 1, "train_loss": self.last_train_loss,
                             **{f"top{k}": float(logged[f"val_top{k}"]) for k in module.topk},
                             "epoch_time_s": time.perf_counter() - self.started})
        self.metrics.plot(self.args.out_dir / "metrics.png", ["train_loss", *[f"top{k}" for k in module.topk]],
                          title="lightly LinearClassifier")
        save_checkpoint(self.args.out_dir / "last.pt", model=module.classification_head,
                        epoch=trainer.current_epoch + 1,
                        extra={"args": _cli.checkpointable_args(self.args), "protocol": "lightly"})


def _loader(images: Tensor, labels: Tensor, args: argparse.Namespace, shuffle: bool) -> Any:
    """Whole uint8 batches by tensor indexing (no per-image collate); seeded shuffling."""
    dataset = TensorDataset(images, labels)
    order = (RandomSampler(dataset, generator=torch.Generator().manual_seed(args.seed)) if shuffle
             else SequentialSampler(dataset))
    return DataLoader(dataset, sampler=BatchSampler(order, args.batch_size, drop_last=False), batch_size=None,
                      num_workers=args.num_workers, pin_memory=torch.cuda.is_available())


# ----------------------------------------------------------------------------------------------------- report
@torch.no_grad()
def per_class_accuracy(encoder: Callable[[Tensor], Tensor], classifier: nn.Module, splits: TrainTestSplit,
                       device: torch.device, args: argparse.Namespace) -> List[float]:
    """Top-1 accuracy of every class of the held-out split."""
    preprocess = lse.BatchedEvalTransform(args.input_size, NORMALIZE)
    features = lse.extract_features(encoder, splits.test.images, device=device, preprocess=preprocess)[0]
    predicted = classifier.to(device).eval()(features).argmax(dim=1).cpu()
    labels = splits.test.labels.cpu()
    num_classes = len(splits.train.classes)
    hits = torch.bincount(labels[predicted == labels], minlength=num_classes).double()
    return (hits / torch.bincount(labels, minlength=num_classes).clamp_min(1)).tolist()


def plot_per_class(accuracy: List[float], classes: List[str], path: Path, title: str) -> None:
    plt = pyplot_or_none()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(classes) + 1), 3.2))
    ax.bar(range(len(classes)), accuracy)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(title)
    fig.tight_layout()
    try:
        write_atomically(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
    finally:
        plt.close(fig)


def _report(summary: Dict[str, Any], args: argparse.Namespace) -> None:
    protocol = ("frozen precomputed features + linear_probe" if args.protocol == "features"
                else "lightly LinearClassifier on augmented images (Lightning)")
    accuracy = "   ".join(f"top-{k} {summary['linear'][f'top{k}']:.4f}" for k in TOPK if f"top{k}" in summary["linear"])
    lines = [f"encoder: {summary['encoder']}",
             f"data: {summary['data']} ({summary['train_images']} training / {summary['eval_images']} evaluation "
             "images)",
             f"held-out accuracy: {accuracy}   (chance {1 / len(summary['per_class_top1']):.3f})",
             "per class top-1: " + ", ".join(f"{name} {value:.2f}" for name, value in summary["per_class_top1"].items())]
    if summary["checkpoint"] is None:
        lines.append("NOTE: the encoder was NOT trained (--allow-random-init): this is a baseline for a trained "
                     "checkpoint.")
    if summary["embedded_smoke_run"]:
        lines.append("NOTE: the embedded digits are easy for any encoder, even at random initialisation: this shows "
                     "the pipeline works, not that the encoder learned good features.")
    files = ["metrics.csv", "per_class.png", *(["metrics.png"] if args.protocol == "lightly" else []), "last.pt",
             "summary.json"]
    lines.append("files: " + ", ".join(str(args.out_dir / name) for name in files))
    _cli.print_report(f"Linear evaluation, {protocol}, {args.epochs} epochs, batch {args.batch_size}", lines)


# ------------------------------------------------------------------------------------------------------- main
def evaluate(args: argparse.Namespace) -> None:
    model, about = load_encoder(args)
    splits = load_splits(args)
    if splits.embedded:
        print(_cli.embedded_data_notice(f"a SMOKE RUN of the evaluation ({args.input_size}px)"), flush=True)
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    model = model.to(device)
    with _run_dir.claim_run_dir(args.out_dir, resume=False, overwrite=args.overwrite, resumable=False):
        run_protocol(args, model, about, splits, device)


def run_protocol(args: argparse.Namespace, model: lse.SimSiam, about: Dict[str, Any], splits: TrainTestSplit,
                 device: torch.device) -> None:
    """The chosen protocol on the encoder, then the per-class accuracy, the summary and the report."""
    print(f"encoder: {about['encoder']}\ndata: {splits.description}: {len(splits.train.labels)} training / "
          f"{len(splits.test.labels)} evaluation images", flush=True)
    started = time.perf_counter()
    protocol = features_protocol if args.protocol == "features" else lightly_protocol
    classifier, linear = protocol(model, splits, device, args)
    per_class = per_class_accuracy(model.embed, classifier, splits, device, args)
    plot_per_class(per_class, splits.train.classes, args.out_dir / "per_class.png",
                   f"linear evaluation ({args.protocol}): top-1 per class")
    summary = {
        **about,
        "protocol": args.protocol,
        "data": splits.description,
        "embedded_smoke_run": splits.embedded,
        "train_images": len(splits.train.labels),
        "eval_images": len(splits.test.labels),
        "epochs": args.epochs,
        "seed": args.seed,
        "linear": linear,
        "per_class_top1": dict(zip(splits.train.classes, per_class)),
        "seconds": time.perf_counter() - started,
    }
    _run_dir.write_summary(args.out_dir, summary)
    _report(summary, args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _cli.run_cli(lambda: evaluate(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
