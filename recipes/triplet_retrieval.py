#!/usr/bin/env python
"""Metric learning with the triplet loss on P x K batches (Schroff et al. 2015; Hermans et al. 2017), evaluated as
retrieval on classes never seen in training: Recall@1/@4/@16 and MAP@R (Musgrave et al. 2020).

    python recipes/triplet_retrieval.py                                         # embedded digits: a smoke run
    python recipes/triplet_retrieval.py --data-dir ~/data/cifar10 --mining batch_hard --soft-margin
    python recipes/triplet_retrieval.py --data-dir ~/data/cifar10 --resume      # continue the run in --out-dir

Every batch holds --p classes with --k images each (lightly_siamese_ext.PKSampler), so that every anchor has
positives and negatives in the batch; the triplets are mined there: batch_all (every triplet; the default, averaged
over the triplets that still violate the margin, Hermans et al.'s "BA != 0"), batch_hard (each anchor's farthest
positive and closest negative) or semi_hard (negatives farther than the positive but within the margin, FaceNet).
From scratch, batch_hard tends to collapse (every distance equal, the loss stuck at the margin): on a reduced
CIFAR-10 run (16px, 5,000 images, 6 epochs) it left held-out MAP@R at the random-init level (0.15 vs 0.17) where
batch_all reached 0.31. The encoder is a timm backbone + an embedding MLP (SiameseNetwork's encoder), L2-normalised by
default. Images stay on the device as uint8 and are augmented there (random resized crop + flip).

Data: --data-dir may hold torchvision's CIFAR-10 folder or an ImageFolder; training uses every class but
--test-classes, and retrieval is evaluated among the --test-classes' images only (from the test split when the data
has one, else from the training split: never trained on either way), each image a query against all the others.
With no --data-dir the recipe falls back to scikit-learn's digits (train on 0-6, test on 7-9), says so loudly and
runs a short smoke configuration.

The report puts the trained encoder next to the same encoder at random initialisation and to raw pixels. Outputs
in --out-dir: metrics.csv, metrics.png, last.pt (every epoch), summary.json; see simsiam_cifar.py for --resume,
--overwrite, the folder's lock and non-finite losses.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence

import torch

import _cli
import _common
import _open_set
import _run_dir
import lightly_siamese_ext as lse
from lightly_siamese_ext.data import OpenSetSplit
from lightly_siamese_ext.losses import MINING
from lightly_siamese_ext.training import MetricsLog, autocast_context, save_checkpoint

# CIFAR-10 setting, and the smoke configuration used on the embedded digits (16px, as simsiam_cifar.py's).
FULL = dict(epochs=30, k=32, input_size=32, embedding_dim=128)
SMOKE = dict(epochs=4, k=8, input_size=16, embedding_dim=64)
RECALL_AT = (1, 4, 16)
METRICS = ("recall@1", "recall@4", "recall@16", "map@r")
TITLE = "Triplet loss on P x K batches"


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.recipe_parser(__doc__)
    _open_set.add_arguments(parser, FULL, SMOKE, out_dir="runs/triplet_retrieval", normalize=True)
    batch = parser.add_argument_group("P x K batches and triplet loss")
    batch.add_argument("--p", type=int, default=None,
                       help="classes per batch (default: all training classes, at most 8)")
    batch.add_argument("--k", type=int, default=None,
                       help=f"images per class per batch; default {FULL['k']} (smoke: {SMOKE['k']})")
    batch.add_argument("--mining", choices=MINING, default="batch_all",
                       help="which triplets of a batch count (batch_hard tends to collapse when training from scratch)")
    batch.add_argument("--margin", type=float, default=0.2, help="triplet margin (FaceNet: 0.2 on the unit sphere)")
    batch.add_argument("--soft-margin", action="store_true", help="softplus(d_ap - d_an) instead of the hinge")
    batch.add_argument("--mean-over", choices=["valid", "active"], default="active",
                       help="the mean divides by all mined triplets, or by those with a positive loss (Hermans et "
                            "al.'s BA != 0); with 'active' the loss need not fall while fewer triplets stay active")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def check_args(args: argparse.Namespace, split: OpenSetSplit) -> None:
    _open_set.resolve_class_count(args, "p", len(split.train_classes), 8, "the training classes")
    if args.k < 2:
        raise ValueError(f"--k must be >= 2 (an anchor needs a positive), got {args.k}")
    _open_set.check_arguments(args, split, batch_items=args.p * args.k, batch_arguments="--p x --k")
    _cli.check_number(args, "margin", 0)
    if args.mining == "semi_hard" and args.margin == 0:
        raise ValueError(f"--margin must be > 0 with --mining semi_hard, got {args.margin}")
    if len(split.test.labels) <= max(RECALL_AT):
        raise ValueError(f"Recall@{max(RECALL_AT)} needs more than {max(RECALL_AT)} held-out images, "
                         f"got {len(split.test.labels)}")


def held_out_metrics(args: argparse.Namespace) -> _open_set.Metrics:
    """Recall@K and MAP@R, every held-out image a query against all the others."""
    return lambda embeddings, labels: lse.retrieval_metrics(embeddings, labels, ks=RECALL_AT, distance=args.distance)


def format_metrics(result: Mapping[str, float]) -> str:
    recalls = "  ".join(f"R@{k} {result[f'recall@{k}']:.4f}" for k in RECALL_AT)
    return f"{recalls}  MAP@R {result['map@r']:.4f}"


def train(args: argparse.Namespace, split: OpenSetSplit) -> None:
    device = _common.device_for(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    amp_dtype = _common.amp_dtype_for(args, device)

    # Model, loss, optimizer and schedule.
    model = _open_set.build_encoder(args).to(device)
    criterion = lse.TripletLoss(margin=args.margin, mining=args.mining, distance=args.distance,
                                soft_margin=args.soft_margin, mean_over=args.mean_over)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = lse.epoch_cosine_scheduler(optimizer, args.epochs, warmup_epochs=args.warmup_epochs)
    # All randomness derives from (seed, epoch): the global random states need no restoring.
    checkpoint_path, start_epoch = _run_dir.prepare_run_dir(
        args.out_dir, args.resume, _cli.checkpointable_args(args), _open_set.MAY_CHANGE, model=model,
        optimizer=optimizer, scheduler=scheduler, restore_rng=False, map_location=device)

    # Data: uint8 images on the device; every batch P classes x K images (PKSampler), augmented there.
    images, labels = split.train.images.to(device), split.train.labels.to(device)
    sampler = lse.PKSampler(split.train.labels, p=args.p, k=args.k, seed=args.seed, num_replicas=1, rank=0)
    augment = lse.BatchedCropFlipTransform(args.input_size, args.min_scale, hf_prob=args.hf_prob,
                                           normalize=_open_set.NORMALIZE)
    metrics = MetricsLog(args.out_dir / "metrics.csv")
    metrics.truncate(start_epoch)
    evaluate = held_out_metrics(args)
    held_out: Dict[str, float] = {}
    epoch_times: List[float] = []
    images_per_s: List[float] = []

    for epoch in range(start_epoch, args.epochs):
        model.train()
        epoch_lr = optimizer.param_groups[0]["lr"]  # before scheduler.step() moves it to the next epoch's
        started = time.perf_counter()
        generator = _common.epoch_generator(args.seed, epoch, device)
        sampler.set_epoch(epoch)
        loss_sum = torch.zeros((), device=device)
        finite = _common.FiniteLossWatch(device)
        for batch in sampler.global_batches().to(device):
            x = augment(images[batch], generator)
            with autocast_context(device, amp_dtype):
                embeddings = model.embed(x)
            loss = criterion(embeddings, labels[batch])  # triplets mined in the batch, in float32
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()  # no host sync per step
            finite.update(loss)
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_times.append(time.perf_counter() - started)
        images_per_s.append(len(sampler) * args.p * args.k / epoch_times[-1])
        finite.check(epoch, float(loss_sum), model, checkpoint_path, "a lower --lr may help")  # before it is saved

        evaluate_now = (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs
        if evaluate_now:
            held_out = _open_set.evaluate(model, split, evaluate, device, args.input_size)
        row = {"epoch": epoch + 1, "loss": float(loss_sum) / len(sampler),
               **{name: held_out[name] if evaluate_now else None
                  for name in (*METRICS, *(f"backbone_{name}" for name in METRICS))},
               "lr": epoch_lr, "epoch_time_s": epoch_times[-1], "images_per_s": images_per_s[-1]}
        metrics.append(row)
        save_checkpoint(checkpoint_path, model=model, epoch=epoch + 1, optimizer=optimizer, scheduler=scheduler,
                        extra=_open_set.checkpoint_extra(args, split))
        metrics.plot(args.out_dir / "metrics.png", ["loss", "map@r", "backbone_map@r"],
                     title=f"{TITLE}, {args.backbone} (map@r: held-out classes)")
        if not args.no_progress:
            print(_open_set.epoch_line(args, epoch, row["loss"], held_out if evaluate_now else None, "map@r",
                                       images_per_s[-1], epoch_times[-1]), flush=True)
        if _common.stop_requested(args, epoch):
            print(f"stopping after epoch {epoch + 1} (--stop-after-epoch); continue with --resume", flush=True)
            return

    if not held_out:  # resumed a finished run: evaluate what it left
        held_out = _open_set.evaluate(model, split, evaluate, device, args.input_size)
    summary = _open_set.summarise(args, split, held_out, evaluate, device, args.p * args.k, epoch_times,
                                  images_per_s)
    _run_dir.write_summary(args.out_dir, summary)
    notes = [f"({args.mining} mining, margin {args.margin}, {args.distance} distance, {args.p} x {args.k} batches; "
             "every held-out image a query against all the others)"]
    _open_set.report(TITLE, summary, args, format_metrics, notes)


def run(args: argparse.Namespace) -> None:
    split = _open_set.load_split(args, FULL, SMOKE)
    check_args(args, split)
    with _run_dir.claim_run_dir(args.out_dir, args.resume, args.overwrite, _cli.checkpointable_args(args),
                                _open_set.MAY_CHANGE):
        print(_open_set.describe(split), flush=True)
        train(args, split)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _cli.run_cli(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
