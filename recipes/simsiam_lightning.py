#!/usr/bin/env python
"""SimSiam on CIFAR-10 trained by PyTorch Lightning's Trainer: simsiam_cifar.py's recipe (the paper's Appendix D)
with Lightning's engine, for multi-GPU and multi-node runs.

    python recipes/simsiam_lightning.py --data-dir ~/data/cifar10                      # every GPU of this machine
    python recipes/simsiam_lightning.py --data-dir ~/data/cifar10 --devices 4 --strategy ddp --sync-bn
    torchrun --nproc-per-node 4 recipes/simsiam_lightning.py --devices 4 --data-dir ~/data/cifar10
    srun python recipes/simsiam_lightning.py --num-nodes 2 --devices 8 --data-dir ~/data/cifar10   # SLURM
    python recipes/simsiam_lightning.py --resume                                       # continue the run in --out-dir
    python recipes/simsiam_lightning.py --accelerator cpu --devices 2                  # no data: digits, 2 gloo ranks

The data, model, optimisation, augmentation and evaluation arguments are simsiam_cifar.py's, with the same
defaults and meaning (see --help), and so are the model, the data split and the final report, imported from it;
this file shows what Lightning does with them:

- SimSiamModule (a LightningModule): the model, two views of every batch made on the device after the transfer
  (BatchedSimSiamTransform, its random stream derived from --seed, the epoch and the global rank), the symmetric
  loss, SGD with lr = base_lr x batch / 256 and the paper's cosine stepped once per epoch.
- SimSiamData (a LightningDataModule): each rank's share of the training images, built in train_dataloader(),
  when the Trainer knows the rank and the world size. --batch-size is the global batch: every rank trains on
  batch / world size images per step (world size = --devices x --num-nodes).
- EpochMonitor (a Callback): per epoch, the loss, the collapse monitor, the kNN accuracy on held-out data every
  --eval-every epochs (lse.knn_accuracy, rank 0) and a check that the ranks trained on disjoint images, as one
  row of metrics.csv.
- Checkpoints and --resume are Lightning's: ModelCheckpoint(save_last=True, save_top_k=0) writes last.ckpt every
  epoch (once: no per-epoch copy beside it, there is no metric to rank epochs by) and
  --resume continues from it with trainer.fit(ckpt_path=...), restoring the weights, optimizer, schedule and
  loops; the data order and the augmentation of an epoch depend only on (--seed, epoch, rank), so a resumed run
  trains exactly as an uninterrupted one.

Multi-process runs use Lightning's DDP with its script launcher (--strategy ddp, what auto picks for several
devices), torchrun or SLURM; ddp_spawn / ddp_fork are refused (the monitor and the report would stay in the
spawned processes).

Pipelines: "batched" (default) keeps the training images on each rank's device; "stream" has DataLoader workers
decode them (an ImageFolder is read from its files; for data too large to keep resident) and moves each uint8
batch to the device, where the same batched augmentation runs.

Outputs in --out-dir: metrics.csv, metrics.png, last.ckpt, model.pt (the
trained SimSiam in simsiam_cifar.py's checkpoint format: linear_eval.py --checkpoint reads it), summary.json.
"""

from __future__ import annotations

import argparse
import hashlib
import contextlib
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

import _cli
import _common
import _run_dir
import lightly_siamese_ext as lse
import simsiam_cifar  # the plain-PyTorch recipe: its model, data split, evaluation and report
from lightly_siamese_ext.data import StreamingSplit, TrainTestSplit, streaming_loader
from lightly_siamese_ext.training import MetricsLog, ranks_agree, save_checkpoint

PAPER, SMOKE, NORMALIZE = simsiam_cifar.PAPER, simsiam_cifar.SMOKE, simsiam_cifar.NORMALIZE
CHECKPOINT_NAME = "last.ckpt"
# What marks --out-dir as holding a run of this recipe, and what --overwrite removes (any other Lightning checkpoint
# in it too: a Trainer with save_top_k left on, or a user's copy, would be resumed from by no one).
RUN_FILES = (CHECKPOINT_NAME, "*.ckpt", "model.pt", _run_dir.METRICS_NAME, _run_dir.SUMMARY_NAME)
OUTPUT_FILES = (_run_dir.SUMMARY_NAME, "metrics.png", _run_dir.METRICS_NAME, "model.pt", "*.ckpt")
# What a --resume may change: how and where the run executes and what it evaluates, not what it trains.
MAY_CHANGE = (*_run_dir.MAY_CHANGE_ON_RESUME, "pipeline", "num_workers", "accelerator", "devices", "num_nodes",
              "strategy", "sync_bn", "channels_last", "eval_every", "knn_k", "knn_t", "linear_epochs",
              "no_baselines", "no_progress")
PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed"}  # --precision -> Lightning's precision


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.recipe_parser(__doc__)
    simsiam_cifar.add_data_arguments(parser, {
        "batched": "the training images resident on each device, augmented there",
        "stream": "images decoded by DataLoader workers, augmented on the device"},
        workers_help="DataLoader workers per process for --pipeline stream (default: CPU count / --devices)")
    simsiam_cifar.add_training_arguments(parser, batch_help="global batch, split across the devices")

    run = parser.add_argument_group("run (Lightning's Trainer)")
    run.add_argument("--out-dir", type=Path, default=Path("runs/simsiam_lightning"),
                     help="where metrics.csv, the plot, the checkpoints, model.pt and summary.json go")
    run.add_argument("--resume", action="store_true", help=f"continue from <out-dir>/{CHECKPOINT_NAME}")
    _cli.add_overwrite_argument(run)
    run.add_argument("--stop-after-epoch", type=int, default=None,
                     help="stop (as if killed) after this epoch; --resume continues to the same result")
    run.add_argument("--seed", type=int, default=0, help="seeds the initialisation, the data order and the "
                                                         "augmentation (each rank: its own stream)")
    run.add_argument("--accelerator", default="auto", help="Trainer(accelerator=): cpu, gpu, cuda, mps, auto")
    run.add_argument("--devices", default="auto",
                     help="Trainer(devices=): processes per node (a number), GPU ids (0,1), -1 or auto")
    run.add_argument("--num-nodes", type=int, default=1, help="Trainer(num_nodes=): machines (SLURM, torchrun)")
    run.add_argument("--strategy", default="auto", help="Trainer(strategy=): auto, ddp, ddp_spawn, ...")
    run.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                     help="auto: bf16 mixed precision on CUDA, fp32 elsewhere")
    run.add_argument("--sync-bn", action="store_true", help="Trainer(sync_batchnorm=True): batch norm across ranks")
    run.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto", help="auto: on for CUDA")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: torch's "
                                                               "choice)")

    simsiam_cifar.add_evaluation_arguments(parser, progress_help="no progress bar: one line per epoch")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# -------------------------------------------------------------------------------------------------- the model
class SimSiamModule(pl.LightningModule):
    """SimSiam as Lightning trains it: ``lse.SimSiam``, views made on the device, ``lse.simsiam_loss``, SGD."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.save_hyperparameters(_cli.checkpointable_args(args))  # in every checkpoint: --resume compares them
        self.args = args
        torch.manual_seed(args.seed)  # simsiam_cifar.py's initial weights
        self.model = simsiam_cifar.build_model(args)
        self.augment = simsiam_cifar.build_augmentation(args)
        self.views_generator: Optional[torch.Generator] = None
        self.ranks_agree: Optional[bool] = None

    def memory_format(self) -> torch.memory_format:
        # Where it trains, also before the model is moved there.
        return simsiam_cifar.memory_format_for(self.args, self.trainer.strategy.root_device)

    def setup(self, stage: str) -> None:
        # Before Lightning wraps the model in DDP: its gradient buckets take the parameters' layout as they are then
        # (converted later, every step would copy the gradients into buckets of the old strides).
        self.model.to(memory_format=self.memory_format())

    def on_train_epoch_start(self) -> None:
        # The epoch's augmentation: from (seed, epoch, global rank) alone, as in simsiam_cifar.py. Every rank draws
        # its own views, and a resumed run draws what an uninterrupted one would have.
        self.views_generator = _common.epoch_generator(self.args.seed, self.current_epoch, self.device,
                                                       self.global_rank)

    def on_after_batch_transfer(self, batch: Sequence[Tensor], dataloader_idx: int) -> Tuple[Tensor, Tensor, Tensor]:
        """uint8 images on the device -> two augmented float views. The batch's last item is each image's index in
        the training split (the EpochMonitor checks that ranks see disjoint images)."""
        images, ids = batch[0], batch[-1]
        x0, x1 = self.augment(images, self.views_generator)
        memory_format = self.memory_format()
        return x0.contiguous(memory_format=memory_format), x1.contiguous(memory_format=memory_format), ids

    def training_step(self, batch: Tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Dict[str, Tensor]:
        x0, x1, ids = batch
        out = self.model(x0, x1)  # SimSiamOutput: projections z (detached) and predictions p
        loss = lse.simsiam_loss(out)  # 0.5 * (D(p0, z1) + D(p1, z0)), in float32
        # The epoch mean over every rank's batches: one reduce per epoch (a per-step value is a host sync per step).
        self.log("loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        return {"loss": loss, "z0": out.z0.detach(), "ids": ids}

    def configure_optimizers(self) -> Dict[str, Any]:
        optimizer, scheduler = simsiam_cifar.build_optimizer(self.model, self.args)  # the paper's SGD and cosine
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_train_end(self) -> None:
        # A DDP sanity check while the process group exists (all ranks take part).
        self.ranks_agree = ranks_agree(self.model) if self.trainer.world_size > 1 else True


# --------------------------------------------------------------------------------------------------- the data
Splits = Union[TrainTestSplit, StreamingSplit]


class SimSiamData(pl.LightningDataModule):
    """Each rank's share of the training images, built when the Trainer knows the rank and the world size.

    Both pipelines shuffle and shard with ``torch.utils.data.DistributedSampler`` (seed ``--seed``; Lightning calls
    its ``set_epoch``): the same order as simsiam_cifar.py for the same seed and world size. SimSiam trains without
    labels: the batches carry each image's index in the training split instead (for the disjointness check).
    """

    def __init__(self, splits: Splits, args: argparse.Namespace) -> None:
        super().__init__()
        self.splits, self.args = splits, args

    def train_dataloader(self) -> Any:
        rank, world_size = self.trainer.global_rank, self.trainer.world_size
        per_device = self.args.batch_size // world_size
        device = self.trainer.strategy.root_device
        if self.args.pipeline == "stream":  # (images uint8, labels, indices), decoded by worker processes
            workers = simsiam_cifar.stream_workers(self.args, self.trainer.num_devices)
            return streaming_loader(self.splits.train, per_device, shuffle=True, drop_last=True, seed=self.args.seed,
                                    num_replicas=world_size, rank=rank, num_workers=workers,
                                    pin_memory=device.type == "cuda")
        train = self.splits.train  # (images uint8, indices), the images resident on this rank's device
        return lse.GPUResidentLoader(train.images, torch.arange(len(train.labels)), per_device, device=device,
                                     shuffle=True, drop_last=True, seed=self.args.seed, num_replicas=world_size,
                                     rank=rank)


# ------------------------------------------------------------------------------------------ what each epoch logs
class EpochMonitor(pl.Callback):
    """Per epoch, what simsiam_cifar.py measures: the mean loss over ranks, the collapse monitor over the global
    batch, the kNN accuracy of the held-out split against the training split every ``--eval-every`` epochs (rank 0,
    frozen backbone), and which images every rank trained on (their indices, gathered: ``shard_overlap`` counts
    images seen by more than one rank, 0 when the shares are disjoint). Rank 0 writes one metrics.csv row."""

    def __init__(self, splits: Splits, args: argparse.Namespace) -> None:
        self.splits, self.args = splits, args
        self.metrics: Optional[MetricsLog] = None  # rank 0's, opened once it holds the folder
        self.epochs_done = 0  # in the checkpoint: a resumed run keeps the rows it covers
        self.knn: Optional[Dict[str, float]] = None
        self.features: Optional[Tuple[Tensor, Tensor]] = None  # (bank, query) of the last evaluation
        self.shards: Optional[Dict[str, Any]] = None
        self.epoch_times: List[float] = []
        self.images_per_s: List[float] = []

    def state_dict(self) -> Dict[str, Any]:
        return {"epochs_done": self.epochs_done}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.epochs_done = int(state_dict["epochs_done"])

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.collapse = lse.CollapseMonitor(gather_distributed=trainer.world_size > 1)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning restored epochs_done from the checkpoint: a resumed run drops the rows it does not cover.
        if self.metrics is not None:
            self.metrics.truncate(self.epochs_done)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]  # the rate this epoch trains at
        self.loss_sum: Any = torch.zeros((), device=pl_module.device)
        self.finite = _common.FiniteLossWatch(pl_module.device)
        self.steps, self.ids = 0, []
        self.collapse.reset()
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.loss_sum = self.loss_sum + outputs["loss"].detach()  # no host sync per step
        self.finite.update(outputs["loss"])
        self.collapse.update(outputs["z0"])
        self.ids.append(outputs["ids"])
        self.steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        epoch_time = time.perf_counter() - self.started
        images_per_s = self.steps * self.args.batch_size / epoch_time
        # Collectives first (every rank): the loss, the collapse statistics and the indices of all ranks.
        loss = float(trainer.strategy.reduce(self.loss_sum / max(self.steps, 1), reduce_op="mean"))
        # Before anything of this epoch is logged or checkpointed (Lightning runs ModelCheckpoint after this).
        self.finite.check(epoch, loss, pl_module.model, self.args.out_dir / CHECKPOINT_NAME, "a lower --base-lr may help")
        collapse_std = self.collapse.compute()
        self.shards = shard_check(trainer, pl_module, torch.cat(self.ids) if self.ids else torch.zeros(0),
                                  epoch)
        evaluate_now = (epoch + 1) % self.args.eval_every == 0 or epoch + 1 == self.args.epochs
        knn_top1 = None
        if trainer.is_global_zero:
            if evaluate_now:
                self.features = simsiam_cifar.encode_splits(pl_module.model.embed, self.splits, pl_module.device,
                                                            self.args)
                self.knn = simsiam_cifar.knn_of(self.features, self.splits, self.args)
                knn_top1 = self.knn["top1"]
            self.epoch_times.append(epoch_time)
            self.images_per_s.append(images_per_s)
            row = {"epoch": epoch + 1, "loss": loss, "collapse_std": collapse_std,
                   "collapse_ratio": self.collapse.ratio, "knn_top1": knn_top1, "lr": self.lr,
                   "epoch_time_s": epoch_time, "images_per_s": images_per_s,
                   "shard_overlap": self.shards["overlap"]}
            assert self.metrics is not None
            self.metrics.append(row)
            self.metrics.plot(self.args.out_dir / "metrics.png", ["loss", "knn_top1", "collapse_std"],
                              title=f"SimSiam {self.args.backbone} (Lightning)")
            if self.args.no_progress:
                knn = f" knn {knn_top1:.3f}" if knn_top1 is not None else ""
                print(f"epoch {epoch + 1}/{self.args.epochs} loss {loss:+.4f} std {collapse_std:.4f}{knn} "
                      f"{images_per_s:.0f} img/s", flush=True)
            simsiam_cifar.warn_if_collapsed(self.collapse, epoch)
            if self.shards["overlap"]:
                print(f"WARNING: at epoch {epoch + 1}, {self.shards['overlap']} images were trained on by more than "
                      "one rank: the ranks' shares of the data are not disjoint.", flush=True)
        self.epochs_done = epoch + 1


def shard_check(trainer: pl.Trainer, pl_module: pl.LightningModule, ids: Tensor, epoch: int) -> Dict[str, Any]:
    """Which training images each rank saw this epoch: per rank the count, a sha256 of its sorted indices and its
    augmentation seed; ``overlap`` counts indices seen by more than one rank. A collective (every rank calls it)."""
    generator = pl_module.views_generator
    ids = ids.to(pl_module.device, torch.long)
    seed = torch.tensor([generator.initial_seed() if generator is not None else -1], device=pl_module.device)
    # (world size, N): every rank has the same N (drop_last); on one device all_gather returns the tensor itself.
    gathered = pl_module.all_gather(ids).reshape(trainer.world_size, -1).cpu()
    seeds = pl_module.all_gather(seed).reshape(trainer.world_size).cpu()
    ranks = [{"rank": rank, "images": len(part),
              "sha256": hashlib.sha256(part.sort().values.numpy().tobytes()).hexdigest(),
              "augmentation_seed": int(seeds[rank])} for rank, part in enumerate(gathered)]
    return {"epoch": epoch + 1, "ranks": ranks, "overlap": int(gathered.numel() - gathered.unique().numel())}


# ---------------------------------------------------------------------------------------------- the Trainer
def build_trainer(args: argparse.Namespace, monitor: EpochMonitor) -> pl.Trainer:
    """Lightning's Trainer for the arguments; a configuration Lightning refuses is a ValueError (one line)."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException
    from pytorch_lightning.strategies.launchers import _MultiProcessingLauncher

    cuda = args.accelerator in ("gpu", "cuda") or (args.accelerator == "auto" and torch.cuda.is_available())
    precision = PRECISION[args.precision] if args.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    stop = args.stop_after_epoch if args.stop_after_epoch is not None and args.stop_after_epoch < args.epochs else None
    checkpoint = ModelCheckpoint(dirpath=args.out_dir, save_last=True, save_top_k=0, enable_version_counter=False)
    try:
        trainer = pl.Trainer(
            max_epochs=stop or args.epochs, accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
            strategy=args.strategy, precision=precision, sync_batchnorm=args.sync_bn,
            use_distributed_sampler=False,  # SimSiamData shards itself, with simsiam_cifar.py's order
            callbacks=[monitor, checkpoint], logger=False, default_root_dir=args.out_dir,
            enable_progress_bar=not args.no_progress, enable_model_summary=False, num_sanity_val_steps=0,
            benchmark=True if cuda else None,
        )
    except (MisconfigurationException, ImportError, ValueError, RuntimeError, TypeError) as error:
        raise ValueError(f"Lightning's Trainer refuses --accelerator {args.accelerator} --devices {args.devices} "
                         f"--num-nodes {args.num_nodes} --strategy {args.strategy}: {error}") from error
    if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
        # ddp_spawn / ddp_fork / ddp_notebook train in child processes and send back only the weights: the epoch
        # monitor's results (the last kNN, the shard check) and the report would be lost or wrong.
        raise ValueError(f"--strategy {args.strategy} trains in processes started by multiprocessing, whose epoch "
                         "monitor and report stay in them: use --strategy ddp (Lightning's launcher, torchrun or "
                         "SLURM)")
    return trainer


def check_args(args: argparse.Namespace, world_size: int, local_processes: int, device: torch.device,
               n_train: int) -> None:
    """simsiam_cifar.py's checks, with the world size, the processes of this node and the device the Trainer
    resolved."""
    per_device = args.batch_size // world_size
    if args.batch_size % world_size:
        raise ValueError(f"--batch-size {args.batch_size} must be divisible by the world size {world_size} "
                         f"(--devices x --num-nodes): it is the global batch")
    if per_device < 2:
        raise ValueError(f"--batch-size must give >= 2 images per device (batch norm), got {per_device} "
                         f"({args.batch_size} over {world_size} devices)")
    _cli.check_at_least(args, 1, "num_nodes")
    plain = argparse.Namespace(**{**vars(args), "devices": world_size, "device": device.type})
    simsiam_cifar.check_args(plain, n_train, local_processes)
    args.knn_k = plain.knn_k  # at most the bank's size, as the report says


def checkpoint_to_resume(args: argparse.Namespace) -> Tuple[Path, int]:
    """``(checkpoint, epochs it finished)`` for --resume. A missing or unreadable checkpoint, or one trained with
    other training arguments, is an error: a resumed run only continues to the same result with the same
    arguments."""
    path = args.out_dir / CHECKPOINT_NAME
    payload = _run_dir.read_checkpoint_to_resume(path)
    saved = payload.get("hyper_parameters") if isinstance(payload, dict) else None
    monitor = payload.get("callbacks", {}).get(EpochMonitor.__qualname__) if isinstance(saved, dict) else None
    if not isinstance(saved, dict) or not isinstance(monitor, dict) or "state_dict" not in payload:
        raise ValueError(f"--resume: {path} is not a checkpoint of simsiam_lightning.py")
    _run_dir.refuse_changed_training_args(path, saved, _cli.checkpointable_args(args), MAY_CHANGE)
    return path, int(monitor["epochs_done"])


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):  # its info lines, not ours
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning 2.6 uses torch's deprecated LeafSpec check when it moves batches: not ours to fix.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Said because SimSiamData (a LightningDataModule) inherits the hook too; SimSiamModule's is the one meant.
    warnings.filterwarnings("ignore", message=r".*overridden `on_after_batch_transfer` in `LightningModule`")
    # The folder holds our run.lock from the start (and, when resumed, the run being continued).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def say(text: str) -> None:
    """Prints on rank 0 only (Lightning's DDP runs this script once per process; the rank from the environment)."""
    if rank_zero_only.rank == 0:
        print(text, flush=True)


# ------------------------------------------------------------------------------------------------------ main
def run(args: argparse.Namespace) -> None:
    quiet_lightning()
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = simsiam_cifar.load_splits(args)
    simsiam_cifar.resolve_defaults(args, splits.embedded)
    if splits.embedded:
        say(_cli.embedded_data_notice(f"a SMOKE RUN of the pipeline ({args.epochs} epochs, {args.input_size}px)"))
    monitor = EpochMonitor(splits, args)
    trainer = build_trainer(args, monitor)
    check_args(args, trainer.world_size, trainer.num_devices, trainer.strategy.root_device, len(splits.train.labels))
    # The Trainer knows this process's rank from the launcher's environment (Lightning's script launcher, torchrun,
    # SLURM); the other ranks start inside fit(), after rank 0 passed these checks and locked the folder.
    with contextlib.ExitStack() as held:
        if trainer.is_global_zero:
            held.enter_context(_run_dir.claim_run_dir(args.out_dir, args.resume, args.overwrite, run_files=RUN_FILES,
                                                      output_files=OUTPUT_FILES,
                                                      check_resume=lambda _: checkpoint_to_resume(args)))
            monitor.metrics = MetricsLog(args.out_dir / _run_dir.METRICS_NAME)
        # Every rank resumes from the checkpoint rank 0 has checked (Lightning does not pass ckpt_path on).
        checkpoint = args.out_dir / CHECKPOINT_NAME if args.resume else None
        say(f"data: {splits.description}: {len(splits.train.labels)} training / {len(splits.test.labels)} "
            f"evaluation images; global batch {args.batch_size} = {trainer.world_size} device(s) x "
            f"{args.batch_size // trainer.world_size} images per step")
        module = SimSiamModule(args)
        trainer.fit(module, datamodule=SimSiamData(splits, args), ckpt_path=checkpoint)
        if trainer.is_global_zero:
            report_run(args, splits, trainer, module, monitor)


def report_run(args: argparse.Namespace, splits: Splits, trainer: pl.Trainer, module: "SimSiamModule",
               monitor: EpochMonitor) -> None:
    """On rank 0 after fit(): the trained model as model.pt, and (unless stopped early) the final evaluation."""
    device = trainer.strategy.root_device
    model = module.model.to(device)  # Lightning's teardown moved it to the CPU
    save_checkpoint(args.out_dir / "model.pt", model=model, epoch=monitor.epochs_done,
                    extra={"args": _cli.checkpointable_args(args), "data": splits.description})
    if monitor.epochs_done < args.epochs:
        say(f"stopping after epoch {monitor.epochs_done} (--stop-after-epoch); continue with --resume")
        return
    summary = simsiam_cifar.final_evaluation(model, splits, device, args, monitor.knn, monitor.features)
    summary.update(devices=trainer.world_size, per_device_batch=args.batch_size // trainer.world_size,
                   strategy=type(trainer.strategy).__name__, precision=str(trainer.precision),
                   ranks_agree=module.ranks_agree, shards=monitor.shards)
    if monitor.epoch_times:
        summary["epoch_time_s"] = sum(monitor.epoch_times) / len(monitor.epoch_times)
        summary["images_per_s"] = sum(monitor.images_per_s) / len(monitor.images_per_s)
    _run_dir.write_summary(args.out_dir, summary)
    notes = [f"devices: {trainer.world_size} x {summary['per_device_batch']} images per step "
             f"({summary['strategy']}, precision {summary['precision']})"]
    if monitor.shards is not None:
        overlap = monitor.shards["overlap"]
        notes.append(f"data shards (epoch {monitor.shards['epoch']}): " + ", ".join(
            f"rank {r['rank']} {r['images']} images" for r in monitor.shards["ranks"])
            + (", disjoint" if not overlap else f", OVERLAPPING in {overlap} images"))
    simsiam_cifar.report(summary, args, files=("metrics.csv", "metrics.png", CHECKPOINT_NAME, "model.pt",
                                               "summary.json"), notes=notes)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _cli.run_cli(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
