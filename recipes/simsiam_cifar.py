#!/usr/bin/env python
"""SimSiam on CIFAR-10 with the paper's recipe (Chen & He, 2020, "Exploring Simple Siamese Representation
Learning", Appendix D).

    python recipes/simsiam_cifar.py --data-dir ~/data/cifar10          # the paper's recipe: 800 epochs, batch 512
    python recipes/simsiam_cifar.py --data-dir ~/data/cifar10 --epochs 200
    python recipes/simsiam_cifar.py --resume                            # continue the run in --out-dir
    python recipes/simsiam_cifar.py --devices 4 --sync-bn               # DDP, one process per GPU
    python recipes/simsiam_cifar.py                                     # no data: embedded digits, a smoke run

Defaults are the paper's CIFAR-10 setting: CIFAR ResNet-18, 2-layer 2048-d projector, predictor 2048-512-2048,
SGD (momentum 0.9, weight decay 5e-4), lr = 0.03 x batch / 256 with a cosine schedule, batch 512, 800 epochs,
no blur, symmetric negative-cosine loss with stop-gradient. Every default can be overridden (see --help).

Data: --data-dir may hold torchvision's CIFAR-10 folder (cifar-10-batches-py; its test batch is the held-out
split) or an ImageFolder (then the last --holdout-per-class images of every class are held out). --download
fetches CIFAR-10 when online. With neither, the recipe falls back to scikit-learn's digits, says so loudly, and
runs a short smoke configuration.

Pipelines: "batched" (default) keeps the dataset as uint8 on the training device and augments whole batches there
(GPU when present); "stream" is for data too large to keep resident: DataLoader workers decode the images (an
ImageFolder is read from its files) and resize them to uint8 tensors of one size (--stream-size), the batches move
to the training device and the same batched augmentation runs there; "lightly" uses Lightly's SimSiamTransform in a
DataLoader, for comparison.

Outputs in --out-dir: metrics.csv, metrics.png, last.pt (every epoch; torch.load(weights_only=True) reads it),
summary.json, each written atomically. A folder that holds a run is continued with --resume or replaced with
--overwrite, never silently; run.lock keeps a second run out while this one runs. A loss that stops being finite
ends the run with an error naming the epoch and step; last.pt keeps the last finite epoch.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR

import _cli
import _common
import _run_dir
import lightly_siamese_ext as lse
from lightly_siamese_ext.backbones import check_model_name
from lightly_siamese_ext.data import (ArrayImageDataset, ImageArrays, StreamingImageDataset, StreamingSplit,
                                      TrainTestSplit, random_subset, random_subset_indices, stream_train_test,
                                      streaming_loader)
from lightly_siamese_ext.training import (MetricsLog, autocast_context, count_flops, default_backend, launch,
                                          ranks_agree, save_checkpoint)

# The paper's CIFAR-10 recipe (Appendix D) and the smoke configuration used on the embedded fallback.
PAPER = dict(epochs=800, batch_size=512, input_size=32)
SMOKE = dict(epochs=12, batch_size=256, input_size=16)
NORMALIZE = lse.CIFAR10_NORMALIZE
# What a --resume may change: how the run executes and what it evaluates, not what it trains.
MAY_CHANGE = (*_run_dir.MAY_CHANGE_ON_RESUME, "pipeline", "num_workers", "devices", "sync_bn", "channels_last",
              "compile", "eval_every", "knn_k", "knn_t", "linear_epochs", "no_baselines", "no_progress")


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.recipe_parser(__doc__)
    add_data_arguments(parser, {
        "batched": "the data resident on the training device, augmented there",
        "stream": "images decoded by DataLoader workers, augmented on the training device",
        "lightly": "Lightly's SimSiamTransform + DataLoader"},
        workers_help="DataLoader workers per process for --pipeline lightly (default: CPU count) and stream "
                     "(default: CPU count / --devices)")
    add_training_arguments(parser, batch_help="global batch")

    run = _cli.add_run_arguments(parser, out_dir="runs/simsiam_cifar")
    run.add_argument("--devices", type=int, default=1, help="processes (DDP): GPUs on CUDA, gloo ranks on CPU")
    run.add_argument("--sync-bn", action="store_true", help="synchronise batch norm across processes")
    run.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto", help="auto: on for CUDA")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")

    add_evaluation_arguments(parser, progress_help="no progress bar")
    return parser


def add_data_arguments(parser: argparse.ArgumentParser, pipelines: Dict[str, str], workers_help: str) -> None:
    """The data group: the source (_cli's), the held-out split and subset, the ``pipelines`` offered (name ->
    what it does) and their DataLoader options. simsiam_lightning.py takes the same."""
    data = _cli.add_data_arguments(parser)
    data.add_argument("--holdout-per-class", type=int, default=500,
                      help="images per class held out for evaluation when the data has no test split")
    data.add_argument("--subset", type=int, default=None,
                      help="train on N training images drawn at random (seeded); they are also the kNN bank")
    data.add_argument("--pipeline", choices=list(pipelines), default="batched",
                      help="; ".join(f"{name}: {what}" for name, what in pipelines.items()))
    data.add_argument("--num-workers", type=int, default=None, help=workers_help)
    data.add_argument("--stream-size", type=int, default=None,
                      help="--pipeline stream: images are resized (shorter side, then a centre crop) to this square "
                           "side before augmentation (default: keep their size, which must be the same for all)")


def add_training_arguments(parser: argparse.ArgumentParser, batch_help: str) -> None:
    """The model, optimisation and augmentation groups: the paper's recipe (Appendix D) and lightly's
    SimSiamTransform arguments. simsiam_lightning.py takes the same; ``batch_help`` says what --batch-size is."""
    model = parser.add_argument_group("model")
    _cli.add_backbone_arguments(model, kwargs_help="passed to timm.create_model, e.g. zero_init_last=False "
                                                   "drop_path_rate=0.1")
    model.add_argument("--proj-layers", type=int, default=2, help="projector depth (2 = CIFAR, 3 = ImageNet)")
    model.add_argument("--proj-dim", type=int, default=2048, help="projector width and output (predictor in/out)")
    model.add_argument("--pred-hidden-dim", type=int, default=512, help="predictor bottleneck width")

    optim = parser.add_argument_group("optimisation (SGD, per-epoch cosine schedule)")
    optim.add_argument("--epochs", type=int, default=None,
                       help=f"default {PAPER['epochs']} (embedded smoke run: {SMOKE['epochs']})")
    optim.add_argument("--batch-size", type=int, default=None,
                       help=f"{batch_help}; default {PAPER['batch_size']} (smoke: {SMOKE['batch_size']})")
    optim.add_argument("--base-lr", type=float, default=0.03, help="lr = base_lr x batch_size / 256")
    optim.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    optim.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    optim.add_argument("--warmup-epochs", type=int, default=0, help="linear warm-up before the cosine decay")
    optim.add_argument("--fix-predictor-lr", action="store_true",
                       help="keep the predictor's lr constant (paper, Sec. 4.4)")

    aug = parser.add_argument_group("augmentation (lightly's SimSiamTransform arguments)")
    aug.add_argument("--input-size", type=int, default=None,
                     help=f"default {PAPER['input_size']} (smoke: {SMOKE['input_size']})")
    aug.add_argument("--min-scale", type=float, default=0.2,
                     help="smallest random crop, as a fraction of the image area")
    aug.add_argument("--cj-prob", type=float, default=0.8, help="colour-jitter probability")
    aug.add_argument("--cj-strength", type=float, default=1.0,
                     help="jitter = (0.4, 0.4, 0.4, 0.1) x strength, as the paper")
    aug.add_argument("--random-gray-scale", type=float, default=0.2, help="grayscale probability")
    aug.add_argument("--gaussian-blur", type=float, default=0.0, help="blur probability (the paper: none on CIFAR)")
    aug.add_argument("--hf-prob", type=float, default=0.5, help="horizontal-flip probability")


def add_evaluation_arguments(parser: argparse.ArgumentParser, progress_help: str) -> None:
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval-every", type=int, default=10, help="kNN every N epochs (and after the last)")
    evaluation.add_argument("--knn-k", type=int, default=200, help="kNN neighbours (lightly's knn_predict)")
    evaluation.add_argument("--knn-t", type=float, default=0.1, help="kNN temperature")
    evaluation.add_argument("--linear-epochs", type=int, default=100, help="0 skips the final linear probe")
    evaluation.add_argument("--no-baselines", action="store_true",
                            help="skip the kNN of a random-init encoder and of raw pixels")
    evaluation.add_argument("--no-progress", action="store_true", help=progress_help)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def resolve_defaults(args: argparse.Namespace, embedded: bool) -> None:
    """Fills the unset size arguments: the paper's values on real data, the smoke values on the fallback."""
    _cli.fill_defaults(args, SMOKE if embedded else PAPER)


def check_args(args: argparse.Namespace, n_train: int, local_processes: Optional[int] = None) -> None:
    """ValueError naming the first bad argument. ``--devices`` processes share the global batch;
    ``local_processes`` (default: all of them) run on this machine, as simsiam_lightning.py's multi-node runs
    need: those must find a GPU each and fit in its memory."""
    check_model_name(args.backbone, "--backbone")
    if args.devices < 1:
        raise ValueError(f"--devices must be >= 1, got {args.devices}")
    per_rank = args.batch_size // args.devices
    if args.batch_size % args.devices:
        raise ValueError(f"--batch-size {args.batch_size} must be divisible by --devices {args.devices}")
    if per_rank < 2:
        raise ValueError(f"--batch-size must give >= 2 images per process (batch norm), got {per_rank}")
    if args.batch_size > n_train:
        raise ValueError(f"--batch-size {args.batch_size} is larger than the training set ({n_train} images)")
    _cli.check_at_least(args, 1, "epochs", "eval_every", "input_size", "proj_dim", "pred_hidden_dim", "proj_layers")
    _cli.check_warmup_epochs(args)
    # torch.optim would name the scaled lr; the kNN would fail only after the first evaluation epoch.
    _cli.check_number(args, "base_lr", 0, exclusive_minimum=True)
    _cli.check_number(args, "momentum", 0, 1, exclusive_maximum=True)
    _cli.check_number(args, "weight_decay", 0)
    _cli.check_number(args, "min_scale", 0, 1, exclusive_minimum=True)
    for probability in ("cj_prob", "random_gray_scale", "gaussian_blur", "hf_prob"):
        _cli.check_number(args, probability, 0, 1)
    _cli.check_number(args, "cj_strength", 0)
    _cli.check_at_least(args, 1, "knn_k")
    _cli.check_number(args, "knn_t", 0, exclusive_minimum=True)
    args.knn_k = min(args.knn_k, n_train)  # the bank is the training set: what the kNN uses, and the report says
    _cli.check_at_least(args, 0, "linear_epochs", "num_workers")
    if args.stream_size is not None and args.pipeline != "stream":
        raise ValueError(f"--stream-size is for --pipeline stream, not --pipeline {args.pipeline}")
    _cli.check_run_arguments(args)
    local_processes = args.devices if local_processes is None else local_processes
    check_devices(args, local_processes)
    # Built on the meta device: bad --backbone-kwargs are a ValueError here, not a TypeError in the training
    # processes, and a model or batch that cannot fit is refused before anything is allocated.
    estimated = _cli.check_memory(lambda: build_model(args), _common.device_for(args), optimizer_states=1,
                                  input_floats_per_process=2 * 3 * args.input_size ** 2 * per_rank,
                                  processes=local_processes,
                                  what=f"--batch-size {args.batch_size} at --input-size {args.input_size} on "
                                       f"--devices {args.devices}, --backbone {args.backbone}, --proj-dim "
                                       f"{args.proj_dim}")
    if not estimated and args.backbone_kwargs:
        build_model(args)  # for real, then: still a ValueError here rather than in the training processes


def check_devices(args: argparse.Namespace, local_processes: int) -> None:
    """ValueError for more CUDA processes on this machine than its GPUs, or ``--sync-bn`` where torch's
    SyncBatchNorm cannot run."""
    device = _common.device_for(args)
    if device.type == "cuda" and local_processes > torch.cuda.device_count():
        raise ValueError(f"{local_processes} processes on this machine ask for one GPU each, but CUDA has "
                         f"{torch.cuda.device_count()} (--devices)")
    if args.sync_bn and device.type != "cuda":
        raise ValueError("--sync-bn synchronises batch norm across GPUs (torch's SyncBatchNorm needs CUDA); this run "
                         "is on the CPU: leave it out")


def build_model(args: argparse.Namespace) -> lse.SimSiam:
    """The SimSiam model the arguments describe (linear_eval.py rebuilds it the same way from a checkpoint)."""
    return _cli.create_with_backbone_kwargs(lse.SimSiam, args.backbone, args.backbone_kwargs,
                                            proj_layers=args.proj_layers, proj_dim=args.proj_dim,
                                            pred_hidden_dim=args.pred_hidden_dim)


def build_augmentation(args: argparse.Namespace) -> lse.BatchedSimSiamTransform:
    """The two views of SimSiam's augmentation with the arguments' strengths, made for whole batches on the device."""
    return lse.BatchedSimSiamTransform(
        input_size=args.input_size, min_scale=args.min_scale, cj_prob=args.cj_prob, cj_strength=args.cj_strength,
        random_gray_scale=args.random_gray_scale, gaussian_blur=args.gaussian_blur, hf_prob=args.hf_prob,
        normalize=NORMALIZE,
    )


def build_optimizer(model: lse.SimSiam, args: argparse.Namespace) -> Tuple[torch.optim.SGD, LambdaLR]:
    """The paper's Appendix D: SGD with the lr scaled by the global batch (``base_lr * batch / 256``), cosine per
    epoch (the predictor's group constant with --fix-predictor-lr)."""
    optimizer = torch.optim.SGD(model.parameter_groups(args.fix_predictor_lr), lr=args.base_lr * args.batch_size / 256,
                                momentum=args.momentum, weight_decay=args.weight_decay)
    return optimizer, lse.epoch_cosine_scheduler(optimizer, args.epochs, warmup_epochs=args.warmup_epochs)


def memory_format_for(args: argparse.Namespace, device: torch.device) -> torch.memory_format:
    """--channels-last: on, off, or (auto) on for CUDA, where convolutions are faster in NHWC."""
    on = args.channels_last == "on" or (args.channels_last == "auto" and device.type == "cuda")
    return torch.channels_last if on else torch.contiguous_format


def warn_if_collapsed(collapse: lse.CollapseMonitor, epoch: int) -> None:
    if collapse.is_collapsed:
        print(f"WARNING: representations look collapsed at epoch {epoch + 1}: std of the normalised projections is "
              f"{collapse.compute():.4f}, {collapse.ratio:.2f} of the healthy 1/sqrt(d). Check the learning rate, the "
              "predictor and the augmentation.", flush=True)


# ------------------------------------------------------------------------------------------------ training
def train(rank: int, world_size: int, args: argparse.Namespace, splits: TrainTestSplit) -> None:
    """One process of the run: rank ``rank`` of ``world_size`` (``launch`` starts them)."""
    # Where and how the run executes.
    device = _common.device_for(args, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    amp_dtype = _common.amp_dtype_for(args, device)
    memory_format = memory_format_for(args, device)
    is_main = rank == 0

    # Model, optimizer and schedule: the paper's Appendix D (lr scaled with the batch, cosine per epoch).
    torch.manual_seed(args.seed)
    model = build_model(args)
    if args.sync_bn and world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, memory_format=memory_format)
    optimizer, scheduler = build_optimizer(model, args)
    checkpoint_path, start_epoch = _run_dir.prepare_run_dir(
        args.out_dir, args.resume, _cli.checkpointable_args(args), MAY_CHANGE, model=model, optimizer=optimizer,
        scheduler=scheduler, map_location=device)
    train_model: nn.Module = model
    if world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if args.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]

    # Data: the uint8 images stay on the device, each rank gets its share, batches are augmented there.
    augment = build_augmentation(args)
    if args.pipeline == "stream":  # the images stay where they are; workers decode each batch
        loader = streaming_loader(splits.train, args.batch_size // world_size, shuffle=True, drop_last=True,
                                  seed=args.seed, num_replicas=world_size, rank=rank,
                                  num_workers=stream_workers(args, world_size), pin_memory=device.type == "cuda")
    else:
        loader = lse.GPUResidentLoader(splits.train.images, splits.train.labels,
                                       batch_size=args.batch_size // world_size, shuffle=True, drop_last=True,
                                       device=device, seed=args.seed, num_replicas=world_size, rank=rank)

    metrics = MetricsLog(args.out_dir / "metrics.csv")
    if is_main:
        metrics.truncate(start_epoch)  # a resumed run drops the rows its checkpoint does not cover
    collapse = lse.CollapseMonitor(gather_distributed=world_size > 1)
    knn: Optional[Dict[str, float]] = None
    features: Optional[Tuple[Tensor, Tensor]] = None  # (bank, query) of the last evaluation
    epoch_times: List[float] = []
    images_per_s: List[float] = []
    progress = progress_printer(args, is_main, start_epoch)

    for epoch in range(start_epoch, args.epochs):
        model.train()
        epoch_lr = optimizer.param_groups[0]["lr"]  # read before scheduler.step() moves it to the next epoch's
        started = time.perf_counter()
        loss_sum, steps = torch.zeros((), device=device), 0
        finite = _common.FiniteLossWatch(device)
        collapse.reset()
        if args.pipeline == "batched":
            loader.set_epoch(epoch)
            views = batched_views(loader, augment, _common.epoch_generator(args.seed, epoch, device, rank))
        elif args.pipeline == "stream":
            loader.sampler.set_epoch(epoch)
            views = streamed_views(loader, augment, _common.epoch_generator(args.seed, epoch, device, rank), device)
        else:
            views = lightly_views(splits.train, args, epoch, rank, world_size)
        for x0, x1 in views:
            x0 = x0.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            x1 = x1.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            with autocast_context(device, amp_dtype):
                out = train_model(x0, x1)  # SimSiamOutput: projections z (detached) and predictions p
                loss = lse.simsiam_loss(out)  # 0.5 * (D(p0, z1) + D(p1, z0)), in float32
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()  # no host sync per step
            finite.update(loss)
            collapse.update(out.z0)
            steps += 1
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_time = time.perf_counter() - started
        epoch_times.append(epoch_time)
        images_per_s.append(steps * args.batch_size / epoch_time)
        epoch_loss = mean_across_ranks(loss_sum / max(steps, 1), world_size)
        finite.check(epoch, epoch_loss, model, checkpoint_path, "a lower --base-lr may help")  # before it is saved
        collapse_std = collapse.compute()

        # Evaluation on the main process: kNN of the held-out split against the training split, frozen backbone.
        evaluate_now = (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs
        if is_main:
            if evaluate_now:
                features = encode_splits(model.embed, splits, device, args)
                knn = knn_of(features, splits, args)
            row = {"epoch": epoch + 1, "loss": epoch_loss, "collapse_std": collapse_std,
                   "collapse_ratio": collapse.ratio, "knn_top1": knn["top1"] if evaluate_now and knn else None,
                   "lr": epoch_lr, "epoch_time_s": epoch_time, "images_per_s": images_per_s[-1]}
            metrics.append(row)
            save_checkpoint(checkpoint_path, model=model, epoch=epoch + 1, optimizer=optimizer, scheduler=scheduler,
                            extra={"args": _cli.checkpointable_args(args), "data": splits.description})
            metrics.plot(args.out_dir / "metrics.png", ["loss", "knn_top1", "collapse_std"],
                         title=f"SimSiam {args.backbone}")
            progress(epoch, row)
            warn_if_collapsed(collapse, epoch)
        if world_size > 1:
            dist.barrier()
        if _common.stop_requested(args, epoch):
            if is_main:
                print(f"stopping after epoch {epoch + 1} (--stop-after-epoch); continue with --resume", flush=True)
            return

    agree = ranks_agree(model) if world_size > 1 else True
    if is_main:
        summary = final_evaluation(model, splits, device, args, knn, features)
        summary.update(devices=world_size, ranks_agree=agree)
        if epoch_times:
            summary["epoch_time_s"] = sum(epoch_times) / len(epoch_times)
            summary["images_per_s"] = sum(images_per_s) / len(images_per_s)
        _run_dir.write_summary(args.out_dir, summary)
        report(summary, args)


def batched_views(loader: lse.GPUResidentLoader, augment: lse.BatchedSimSiamTransform,
                  generator: torch.Generator) -> Iterator[List[Tensor]]:
    """Two augmented views of every batch of ``loader``, made on the batch's device."""
    for images, _ in loader:
        yield augment(images, generator)


def streamed_views(loader: Any, augment: lse.BatchedSimSiamTransform, generator: torch.Generator,
                   device: torch.device) -> Iterator[List[Tensor]]:
    """Two augmented views of every uint8 batch the workers decoded, made on ``device`` after an asynchronous copy
    (pinned memory)."""
    for images, _, _ in loader:
        yield augment(images.to(device, non_blocking=True), generator)


def stream_workers(args: argparse.Namespace, world_size: int) -> int:
    """``--num-workers`` for --pipeline stream: the CPU count shared by the processes on this machine."""
    if args.num_workers is not None:
        return args.num_workers
    return max(1, (torch.multiprocessing.cpu_count() or 1) // world_size)


def mean_across_ranks(value: Tensor, world_size: int) -> float:
    if world_size > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= world_size
    return float(value)


def progress_printer(args: argparse.Namespace, is_main: bool, start_epoch: int) -> Any:
    """A function that shows an epoch's row: a tqdm bar when available, else a line."""
    bar = None
    if is_main and not args.no_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=args.epochs, initial=start_epoch, unit="epoch", dynamic_ncols=True)
        except ImportError:
            bar = None

    def show(epoch: int, row: Dict[str, Any]) -> None:
        knn = f" knn {row['knn_top1']:.3f}" if row["knn_top1"] is not None else ""
        text = (f"epoch {epoch + 1}/{args.epochs} loss {row['loss']:+.4f} std {row['collapse_std']:.4f}{knn} "
                f"{row['images_per_s']:.0f} img/s")
        if bar is not None:
            bar.set_postfix_str(text.split(" ", 2)[2])
            bar.update(1)
        else:
            print(text, flush=True)

    return show


# ---------------------------------------------------------------------------------------------- evaluation
def encode_splits(encoder: Any, splits: TrainTestSplit, device: torch.device,
                  args: argparse.Namespace) -> Tuple[Tensor, Tensor]:
    """Features of the training split (the kNN bank) and of the evaluation split, without augmentation."""
    preprocess = lse.BatchedEvalTransform(args.input_size, NORMALIZE)

    def images_of(part: Any) -> Any:  # the resident tensor, or (--pipeline stream) the files, read in order
        if not isinstance(part, StreamingImageDataset):
            return part.images
        return streaming_loader(part, 512, shuffle=False, num_replicas=1, rank=0, persistent_workers=False,
                                num_workers=stream_workers(args, 1), pin_memory=device.type == "cuda")

    return tuple(lse.extract_features(encoder, images_of(part), device=device, preprocess=preprocess)[0]
                 for part in (splits.train, splits.test))  # type: ignore[return-value]


def knn_of(features: Tuple[Tensor, Tensor], splits: TrainTestSplit, args: argparse.Namespace) -> Dict[str, float]:
    bank, query = features
    return lse.knn_accuracy(query, splits.test.labels.to(query.device), bank, splits.train.labels.to(bank.device),
                            num_classes=len(splits.train.classes), k=min(args.knn_k, len(bank)),
                            temperature=args.knn_t)


def final_evaluation(model: lse.SimSiam, splits: TrainTestSplit, device: torch.device, args: argparse.Namespace,
                     knn: Optional[Dict[str, float]], features: Optional[Tuple[Tensor, Tensor]]) -> Dict[str, Any]:
    """The trained encoder's kNN and linear probe, next to the same encoder at random initialisation and to raw
    pixels (``--no-baselines`` skips those), and the training FLOPs per image."""
    summary: Dict[str, Any] = {"data": splits.description, "embedded_smoke_run": splits.embedded,
                               "backbone": args.backbone, "epochs": args.epochs, "batch_size": args.batch_size,
                               "pipeline": args.pipeline, "knn": knn}
    if features is None:  # resumed after the last epoch: nothing was evaluated in this process
        features = encode_splits(model.embed, splits, device, args)
        summary["knn"] = knn_of(features, splits, args)
    if args.linear_epochs > 0:
        bank, query = features
        probe = lse.linear_probe(bank, splits.train.labels.to(device), query, splits.test.labels.to(device),
                                 num_classes=len(splits.train.classes), epochs=args.linear_epochs, seed=args.seed)
        summary["linear"] = {key: value for key, value in probe.items() if isinstance(value, float)}
    if not args.no_baselines:
        torch.manual_seed(args.seed)  # the trained model's initial weights
        random_init = build_model(args).to(device)
        summary["knn_random_init"] = knn_of(encode_splits(random_init.embed, splits, device, args), splits, args)
        summary["knn_raw_pixels"] = knn_of(encode_splits(lambda x: x.flatten(start_dim=1), splits, device, args),
                                           splits, args)
    # Counted on a copy: a training-mode pass would move the trained model's batch-norm statistics.
    probe_model = copy.deepcopy(model)
    flops_input = torch.zeros(2, 3, args.input_size, args.input_size, device=device)
    summary["train_flops_per_image"] = count_flops(
        lambda: lse.simsiam_loss(probe_model(flops_input, flops_input)).backward()) // 2
    return summary


def report(summary: Dict[str, Any], args: argparse.Namespace, files: Sequence[str] = ("metrics.csv", "metrics.png",
           "last.pt", "summary.json"), notes: Sequence[str] = ()) -> None:
    """The end-of-run report; ``files`` (in --out-dir) and ``notes`` (lines before them) let simsiam_lightning.py
    print the same report."""

    def fmt(result: Optional[Dict[str, float]]) -> str:
        return "-" if not result else f"top1 {result['top1']:.4f}" + (
            f", top5 {result['top5']:.4f}" if "top5" in result else "")

    lines = [f"data: {summary['data']}"]
    if "images_per_s" in summary:
        lines.append(f"throughput: {summary['images_per_s']:.0f} images/s, {summary['epoch_time_s']:.2f} s per epoch "
                     f"({summary['train_flops_per_image'] / 1e9:.2f} GFLOP per training image)")
    lines.append(f"kNN (k={args.knn_k}, t={args.knn_t}), trained encoder:   {fmt(summary['knn'])}")
    if "linear" in summary:
        lines.append(f"linear probe on frozen features:           {fmt(summary['linear'])}")
    if "knn_random_init" in summary:
        lines.append(f"kNN, same encoder at random initialisation: {fmt(summary['knn_random_init'])}")
        lines.append(f"kNN, raw pixels:                            {fmt(summary['knn_raw_pixels'])}")
    if summary["embedded_smoke_run"]:
        lines.append("NOTE: this was a SMOKE RUN on the embedded digits. Digits are easy for any encoder (see the "
                     "random-init and raw-pixel rows): these numbers show the pipeline works, not that SimSiam "
                     "learned good features. Point --data-dir at CIFAR-10 for real results.")
    lines.extend(notes)
    lines.append("files: " + ", ".join(str(args.out_dir / name) for name in files))
    _cli.print_report(f"SimSiam {summary['backbone']}, {summary['epochs']} epochs, batch {summary['batch_size']}, "
                      f"{summary['pipeline']} pipeline, {summary['devices']} process(es)", lines)


# ---------------------------------------------------------------------------------------- for comparison
def lightly_views(train: ImageArrays, args: argparse.Namespace, epoch: int, rank: int,
                  world_size: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """Lightly's pipeline (``--pipeline lightly``): PIL images -> SimSiamTransform in DataLoader workers."""
    from lightly.transforms import SimSiamTransform
    from torch.utils.data import DataLoader, DistributedSampler

    transform = SimSiamTransform(
        input_size=args.input_size, min_scale=args.min_scale, cj_prob=args.cj_prob, cj_strength=args.cj_strength,
        random_gray_scale=args.random_gray_scale, gaussian_blur=args.gaussian_blur, hf_prob=args.hf_prob,
        normalize=NORMALIZE,
    )
    dataset = ArrayImageDataset(train.images, train.labels, transform=transform)
    sampler = DistributedSampler(dataset, world_size, rank, shuffle=True, seed=args.seed, drop_last=True)
    sampler.set_epoch(epoch)
    workers = args.num_workers if args.num_workers is not None else (torch.multiprocessing.cpu_count() or 1)
    loader = DataLoader(dataset, batch_size=args.batch_size // world_size, sampler=sampler, drop_last=True,
                        num_workers=workers, persistent_workers=False, pin_memory=torch.cuda.is_available())
    for views, _ in loader:
        yield views[0], views[1]


# ------------------------------------------------------------------------------------------------------ main
def load_splits(args: argparse.Namespace) -> Union[TrainTestSplit, StreamingSplit]:
    """The training and held-out images: decoded whole (tensors), or for --pipeline stream datasets whose items
    are read when a batch needs them (the same images, the same split and --subset)."""
    if args.pipeline == "stream":
        _cli.check_at_least(args, 1, "stream_size")
        _cli.check_sizes(args)  # before the first image is resized to it
        splits: Any = stream_train_test(args.data_dir, size=args.stream_size, download=args.download,
                                        cache_dir=args.cache_dir, holdout_per_class=args.holdout_per_class,
                                        embedded_size=SMOKE["input_size"])
        if args.subset is not None:
            keep = random_subset_indices(len(splits.train), args.subset, args.seed, name="--subset")
            splits = replace(splits, train=splits.train.subset(keep))
        return splits
    splits = lse.load_train_test(args.data_dir, download=args.download, cache_dir=args.cache_dir,
                                 holdout_per_class=args.holdout_per_class, embedded_size=SMOKE["input_size"])
    if args.subset is not None:
        splits = replace(splits, train=random_subset(splits.train, args.subset, args.seed, name="--subset"))
    return splits


def run(args: argparse.Namespace) -> None:
    splits = load_splits(args)
    resolve_defaults(args, splits.embedded)
    if splits.embedded:
        print(_cli.embedded_data_notice(f"a SMOKE RUN of the pipeline ({args.epochs} epochs, {args.input_size}px)"),
              flush=True)
    check_args(args, len(splits.train.labels))
    # Here, not only in the training processes: the folder is locked for the whole run, and a refusal comes first.
    with _run_dir.claim_run_dir(args.out_dir, args.resume, args.overwrite, _cli.checkpointable_args(args), MAY_CHANGE,
                                needs=(*_run_dir.TRAINING_STATE, "rng")):
        print(f"data: {splits.description}: {len(splits.train.labels)} training / {len(splits.test.labels)} "
              "evaluation images", flush=True)
        # The backend follows --device, not CUDA's presence: a --device cpu run on a GPU machine needs gloo.
        launch(train, args.devices, args=(args, splits), backend=default_backend(_common.device_for(args).type))


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _cli.run_cli(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
