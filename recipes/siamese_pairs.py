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
summary.json.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

import lightly_siamese_ext as lse
from lightly_siamese_ext.data.class_split import OpenSetSplit
from lightly_siamese_ext.training import embedding_recipe as recipe
from lightly_siamese_ext.training.cli import recipe_parser

# CIFAR-10 setting, and the smoke configuration used on the embedded digits (16px, as simsiam_cifar.py's).
FULL = dict(epochs=30, batch_size=128, input_size=32, embedding_dim=128)
SMOKE = dict(epochs=4, batch_size=32, input_size=16, embedding_dim=64)


def build_parser() -> argparse.ArgumentParser:
    parser = recipe_parser(__doc__)
    recipe.add_common_arguments(parser, FULL, SMOKE, out_dir="runs/siamese_pairs", batch_unit="pairs", normalize=True)
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
    recipe.check_common_arguments(args, split, batch_items=args.batch_size)
    if not 0.0 <= args.positive_fraction <= 1.0:
        raise ValueError(f"--positive-fraction must be in [0, 1], got {args.positive_fraction}")
    if args.margin < 0:
        raise ValueError(f"--margin must be >= 0, got {args.margin}")
    recipe.resolve_class_count(args, "n_way", len(split.test_classes), 20, "the held-out classes")
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


class PairTrainer(recipe.EmbeddingTrainer):
    """Contrastive training on batches of pairs; pair verification and one-shot classification on held-out classes."""

    train_columns = ("loss", "same_distance", "different_distance")
    metric_names = ("auc", "one_shot")
    headline_metric = "auc"
    title = "Siamese network + contrastive loss"

    def __init__(self, args: argparse.Namespace, split: OpenSetSplit) -> None:
        super().__init__(args, split)
        self.criterion = lse.ContrastiveLoss(margin=args.margin, distance=args.distance)

    def steps_per_epoch(self) -> int:
        return len(self.train_labels) // self.args.batch_size

    def images_per_step(self) -> int:
        return 2 * self.args.batch_size

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        # Running sums: loss, same-pair distances and count, different-pair distances and count (no host sync).
        totals = torch.zeros(5, device=self.device)
        args, generator = self.args, self.epoch_generator(epoch)
        batches = pair_batches(self.train_labels.cpu(), args.batch_size, args.positive_fraction, args.seed, epoch,
                               generator)
        for first, second, same in batches:
            x0 = self.augment(self.images[first], generator)
            x1 = self.augment(self.images[second], generator)
            with self.autocast():
                e0, e1 = self.model(x0, x1)
            loss = self.criterion(e0, e1, same)
            self.step(loss)
            with torch.no_grad():
                distance = lse.paired_distances(e0.detach().float(), e1.detach().float(), self.args.distance)
                totals += torch.stack([loss.detach(), (distance * same).sum(), same.sum(),
                                       (distance * ~same).sum(), (~same).sum()])
        loss_sum, same_sum, same_count, different_sum, different_count = totals.tolist()
        return {"loss": loss_sum / self.steps_per_epoch(), "same_distance": same_sum / max(same_count, 1),
                "different_distance": different_sum / max(different_count, 1)}

    def held_out_metrics(self, embeddings: Tensor, labels: Tensor) -> Dict[str, float]:
        """ROC-AUC of telling same-class from different-class pairs by distance, over every pair of held-out images;
        N-way one-shot accuracy (Koch et al.)."""
        distances = lse.pairwise_distances(embeddings, distance=self.args.distance)
        rows, cols = torch.triu_indices(len(labels), len(labels), 1, device=embeddings.device)
        auc = lse.pair_verification_auc(distances[rows, cols], labels[rows] == labels[cols])
        one_shot = lse.n_way_one_shot_accuracy(embeddings, labels, n_way=self.args.n_way, trials=self.args.trials,
                                               seed=self.args.seed, distance=self.args.distance)
        return {"auc": auc, "one_shot": one_shot}

    def format_metrics(self, result: Mapping[str, float]) -> str:
        return f"ROC-AUC {result['auc']:.4f}   {self.args.n_way}-way one-shot {result['one_shot']:.4f}"

    def report_notes(self, summary: Mapping[str, Any]) -> List[str]:
        pairs = summary["eval_images"] * (summary["eval_images"] - 1) // 2
        return [f"(chance: ROC-AUC 0.5, one-shot {1 / self.args.n_way:.3f}; AUC over all {pairs} pairs of held-out "
                f"images, {self.args.trials} one-shot trials; {self.args.distance} distance)"]

def main(argv: Optional[Sequence[str]] = None) -> int:
    return recipe.run(parse_args(argv), PairTrainer, check_args, full=FULL, smoke=SMOKE, write=print)


if __name__ == "__main__":
    sys.exit(main())
