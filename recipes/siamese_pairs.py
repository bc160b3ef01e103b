#!/usr/bin/env python
"""Siamese twin network trained with the contrastive loss on pairs (Hadsell, Chopra & LeCun 2006), evaluated on
classes it never saw: pair-verification ROC-AUC and N-way one-shot accuracy (Koch, Zemel & Salakhutdinov 2015).

    python recipes/siamese_pairs.py                                          # embedded digits: a smoke run
    python recipes/siamese_pairs.py --data-dir ~/data/cifar10 --test-classes horse,ship,truck
    python recipes/siamese_pairs.py --data-dir ~/data/cifar10 --resume       # continue the run in --out-dir

One encoder (a timm backbone + an embedding MLP, shared by both branches) maps images to embeddings; same-class
pairs are pulled together, different-class pairs pushed at least --margin apart. Each epoch pairs every training
image with a partner drawn for that epoch (--positive-fraction of them of its own class), on the device, in
batches: images stay there as uint8 and are augmented there (random resized crop + flip).

Data: --data-dir may hold torchvision's CIFAR-10 folder or an ImageFolder; training uses every class but
--test-classes, and evaluation uses only the --test-classes (from the test split when the data has one, else from
the training split: never trained on either way). With no --data-dir the recipe falls back to scikit-learn's
digits (train on 0-6, test on 7-9), says so loudly and runs a short smoke configuration.

The report puts the trained encoder next to the same encoder at random initialisation and to raw pixels, so that
the reader sees what training added. Outputs in --out-dir: metrics.csv, metrics.png, last.pt (every epoch),
summary.json; see simsiam_cifar.py for --resume, --overwrite, the folder's lock and non-finite losses.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

import _cli
import _common
import _open_set
import _run_dir
import lightly_siamese_ext as lse
from lightly_siamese_ext.data import OpenSetSplit
from lightly_siamese_ext.distances import paired_distances, pairwise_distances
from lightly_siamese_ext.training import MetricsLog, autocast_context, save_checkpoint

# CIFAR-10 setting, and the smoke configuration used on the embedded digits (16px, as simsiam_cifar.py's).
FULL = dict(epochs=30, batch_size=128, input_size=32, embedding_dim=128)
SMOKE = dict(epochs=4, batch_size=32, input_size=16, embedding_dim=64)
TITLE = "Siamese network + contrastive loss"


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.recipe_parser(__doc__)
    _open_set.add_arguments(parser, FULL, SMOKE, out_dir="runs/siamese_pairs", batch_unit="pairs", normalize=True)
    loss = parser.add_argument_group("contrastive loss")
    loss.add_argument("--margin", type=float, default=1.0,
                      help="different-class pairs closer than this are pushed apart")
    loss.add_argument("--positive-fraction", type=float, default=0.5, help="share of same-class pairs per epoch")
    evaluation = parser.add_argument_group("one-shot evaluation")
    evaluation.add_argument("--n-way", type=int, default=None,
                            help="classes per one-shot trial (default: all held-out classes, at most 20)")
    evaluation.add_argument("--trials", type=int, default=2000, help="one-shot trials")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def check_args(args: argparse.Namespace, split: OpenSetSplit) -> None:
    _open_set.check_arguments(args, split, batch_items=args.batch_size, images_per_step=2 * args.batch_size)
    _cli.check_number(args, "positive_fraction", 0, 1)
    _cli.check_number(args, "margin", 0)
    _open_set.resolve_class_count(args, "n_way", len(split.test_classes), 20, "the held-out classes")
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")


def pair_batches(labels: Tensor, batch_size: int, positive_fraction: float, seed: int, epoch: int,
                 generator: torch.Generator) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
    """This epoch's pairs in batches of (first index, second index, same class), (batch_size,) each, on the
    generator's device: every image once as the first of a pair, in an order drawn from ``generator``, with a
    partner drawn by :class:`~lightly_siamese_ext.PairDataset` from ``seed + epoch``. Only full batches (batch norm).

    The order must not come from ``seed + epoch`` too: PairDataset picks the same-class pairs with that permutation,
    so the batches would hold only same-class or only different-class pairs.
    """
    indices = TensorDataset(torch.arange(len(labels)), labels)
    indices.targets = labels  # type: ignore[attr-defined]  # read by PairDataset: no item is ever loaded
    pairs = lse.PairDataset(indices, positive_fraction=positive_fraction, seed=seed)
    pairs.set_epoch(epoch)
    partner, same = (t.to(generator.device) for t in pairs.partners())
    order = torch.randperm(len(labels), generator=generator, device=generator.device)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        first = order[start : start + batch_size]
        yield first, partner[first], same[first]


def held_out_metrics(args: argparse.Namespace) -> _open_set.Metrics:
    """ROC-AUC of telling same-class from different-class pairs by distance, over every pair of held-out images;
    N-way one-shot accuracy (Koch et al.)."""

    def metrics(embeddings: Tensor, labels: Tensor) -> Dict[str, float]:
        distances = pairwise_distances(embeddings, distance=args.distance)
        rows, cols = torch.triu_indices(len(labels), len(labels), 1, device=embeddings.device)
        auc = lse.pair_verification_auc(distances[rows, cols], labels[rows] == labels[cols])
        one_shot = lse.n_way_one_shot_accuracy(embeddings, labels, n_way=args.n_way, trials=args.trials,
                                               seed=args.seed, distance=args.distance)
        return {"auc": auc, "one_shot": one_shot}

    return metrics


def train(args: argparse.Namespace, split: OpenSetSplit) -> None:
    device = _common.device_for(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    amp_dtype = _common.amp_dtype_for(args, device)

    # Model, loss, optimizer and schedule.
    model = _open_set.build_encoder(args).to(device)
    criterion = lse.ContrastiveLoss(margin=args.margin, distance=args.distance)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = lse.epoch_cosine_scheduler(optimizer, args.epochs, warmup_epochs=args.warmup_epochs)
    # All randomness derives from (seed, epoch): the global random states need no restoring.
    checkpoint_path, start_epoch = _run_dir.prepare_run_dir(
        args.out_dir, args.resume, _cli.checkpointable_args(args), _open_set.MAY_CHANGE, model=model,
        optimizer=optimizer, scheduler=scheduler, restore_rng=False, map_location=device)

    # Data: uint8 images on the device, one augmented view per image of a pair.
    images, labels = split.train.images.to(device), split.train.labels
    augment = lse.BatchedCropFlipTransform(args.input_size, args.min_scale, hf_prob=args.hf_prob,
                                           normalize=_open_set.NORMALIZE)
    metrics = MetricsLog(args.out_dir / "metrics.csv")
    metrics.truncate(start_epoch)
    evaluate = held_out_metrics(args)
    held_out: Dict[str, float] = {}
    epoch_times: List[float] = []
    images_per_s: List[float] = []
    steps_per_epoch = len(labels) // args.batch_size

    for epoch in range(start_epoch, args.epochs):
        model.train()
        epoch_lr = optimizer.param_groups[0]["lr"]  # before scheduler.step() moves it to the next epoch's
        started = time.perf_counter()
        generator = _common.epoch_generator(args.seed, epoch, device)
        # Running sums: loss, same-pair distances and count, different-pair distances and count (no host sync).
        totals = torch.zeros(5, device=device)
        finite = _common.FiniteLossWatch(device)
        for first, second, same in pair_batches(labels, args.batch_size, args.positive_fraction, args.seed, epoch,
                                                generator):
            x0, x1 = augment(images[first], generator), augment(images[second], generator)
            with autocast_context(device, amp_dtype):
                e0, e1 = model(x0, x1)  # one encoder, shared weights
            loss = criterion(e0, e1, same)  # y * d^2 + (1 - y) * max(margin - d, 0)^2, in float32
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            finite.update(loss)
            with torch.no_grad():
                distance = paired_distances(e0.detach().float(), e1.detach().float(), args.distance)
                totals += torch.stack([loss.detach(), (distance * same).sum(), same.sum(),
                                       (distance * ~same).sum(), (~same).sum()])
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_times.append(time.perf_counter() - started)
        images_per_s.append(steps_per_epoch * 2 * args.batch_size / epoch_times[-1])
        finite.check(epoch, float(totals[0]), model, checkpoint_path, "a lower --lr may help")  # before it is saved

        evaluate_now = (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs
        if evaluate_now:
            held_out = _open_set.evaluate(model, split, evaluate, device, args.input_size)
        loss_sum, same_sum, same_count, different_sum, different_count = totals.tolist()
        row = {"epoch": epoch + 1, "loss": loss_sum / steps_per_epoch, "same_distance": same_sum / max(same_count, 1),
               "different_distance": different_sum / max(different_count, 1),
               **{name: held_out[name] if evaluate_now else None for name in ("auc", "one_shot", "backbone_auc",
                                                                              "backbone_one_shot")},
               "lr": epoch_lr, "epoch_time_s": epoch_times[-1], "images_per_s": images_per_s[-1]}
        metrics.append(row)
        save_checkpoint(checkpoint_path, model=model, epoch=epoch + 1, optimizer=optimizer, scheduler=scheduler,
                        extra=_open_set.checkpoint_extra(args, split))
        metrics.plot(args.out_dir / "metrics.png", ["loss", "same_distance", "different_distance", "auc",
                                                    "backbone_auc"],
                     title=f"{TITLE}, {args.backbone} (auc: held-out classes)")
        if not args.no_progress:
            print(_open_set.epoch_line(args, epoch, row["loss"], held_out if evaluate_now else None, "auc",
                                       images_per_s[-1], epoch_times[-1]), flush=True)
        if _common.stop_requested(args, epoch):
            print(f"stopping after epoch {epoch + 1} (--stop-after-epoch); continue with --resume", flush=True)
            return

    if not held_out:  # resumed a finished run: evaluate what it left
        held_out = _open_set.evaluate(model, split, evaluate, device, args.input_size)
    summary = _open_set.summarise(args, split, held_out, evaluate, device, 2 * args.batch_size, epoch_times,
                                  images_per_s)
    _run_dir.write_summary(args.out_dir, summary)
    pairs = summary["eval_images"] * (summary["eval_images"] - 1) // 2
    notes = [f"(chance: ROC-AUC 0.5, one-shot {1 / args.n_way:.3f}; AUC over all {pairs} pairs of held-out images, "
             f"{args.trials} one-shot trials; {args.distance} distance)"]
    _open_set.report(TITLE, summary, args, lambda result: format_metrics(result, args.n_way), notes)


def format_metrics(result: Mapping[str, float], n_way: int) -> str:
    return f"ROC-AUC {result['auc']:.4f}   {n_way}-way one-shot {result['one_shot']:.4f}"


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
