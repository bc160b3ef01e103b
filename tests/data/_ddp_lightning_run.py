"""A 2-process CPU Lightning DDP run (gloo), started by ``test_ddp_sharding.py`` in a fresh process.

The loaders and the transform are built at module level, before any process group exists, as Lightly's
distributed example builds its loader. Each rank writes what it trained on to ``OUT/<run>-rank<r>.pt``: per
step the epoch, the sample ids and (for the GPU-resident loader) the augmented views.

Usage: ``python _ddp_lightning_run.py OUT``
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightly_siamese_ext as lse

OUT = Path(sys.argv[1])
SAMPLES, BATCH, EPOCHS = 48, 4, 2

# One image repeated: a difference between the ranks' views can only come from their augmentation streams.
IMAGE = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
augment = lse.BatchedSimSiamTransform(input_size=8, gaussian_blur=0.0, normalize=None)
gpu_loader = lse.GPUResidentLoader(
    IMAGE.expand(SAMPLES, -1, -1, -1), torch.arange(SAMPLES), batch_size=BATCH, device="cpu", drop_last=True,
    transform=augment,
)  # its "labels" are the sample ids

# 6 classes x 8 samples; P x K = 3 x 4: the 4 batches of an epoch (2 a rank) use every sample exactly once.
LABELS = torch.arange(6).repeat_interleave(8)[torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(1))]
pk_loader = DataLoader(TensorDataset(torch.arange(SAMPLES), LABELS), batch_sampler=lse.PKSampler(LABELS, 3, 4, seed=2))


class Recorder(pl.LightningModule):
    """Trains a 2-parameter model on the batches and records them."""

    def __init__(self, run: str) -> None:
        super().__init__()
        self.run = run
        self.layer = nn.Linear(1, 1)
        self.steps: list = []

    def setup(self, stage: str) -> None:
        torch.set_num_threads(1)  # two ranks on a small CI machine

    def training_step(self, batch, batch_idx):
        if self.run == "gpu_loader":
            (view0, view1), ids = batch
            self.steps.append({"epoch": self.current_epoch, "ids": ids.tolist(), "views": (view0, view1)})
            x = torch.stack((view0.mean(), view1.mean())).unsqueeze(1)
        else:
            ids, labels = batch
            self.steps.append({"epoch": self.current_epoch, "ids": ids.tolist(), "labels": labels.tolist()})
            x = ids.float().unsqueeze(1) / SAMPLES
        return self.layer(x).pow(2).mean()

    def on_train_end(self) -> None:
        torch.save(self.steps, OUT / f"{self.run}-rank{self.global_rank}.pt")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(run: str, loader, **trainer_kwargs) -> None:
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_fork", max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=OUT, **trainer_kwargs,
    )
    trainer.fit(Recorder(run), loader)


if __name__ == "__main__":
    warnings.filterwarnings("ignore")  # Lightning's advice on workers and logging
    torch.set_num_threads(1)
    fit("gpu_loader", gpu_loader)
    fit("pk_sampler", pk_loader)  # the default Trainer: use_distributed_sampler=True
    fit("pk_sampler_own_sharding", pk_loader, use_distributed_sampler=False)
