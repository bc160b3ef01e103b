"""SimSiam assembled from Lightly's own modules, as Lightly's CIFAR-10 benchmark does: the reference that the
train-step and end-to-end benchmarks compare with."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn
from lightly.loss import NegativeCosineSimilarity
from lightly.models import ResNetGenerator
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from torch import Tensor

from lightly_siamese_ext import SimSiam


class LightlySimSiam(nn.Module):
    """Lightly's benchmark model: ``ResNetGenerator("resnet-18")`` without its classifier, then Lightly's
    SimSiam projection (3 layers, 512 -> 2048 -> 2048 -> 2048) and prediction heads (2048 -> 512 -> 2048)."""

    def __init__(self) -> None:
        super().__init__()
        resnet = ResNetGenerator("resnet-18")
        self.backbone = nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1))
        self.projection_head = SimSiamProjectionHead(512, 2048, 2048)
        self.prediction_head = SimSiamPredictionHead(2048, 512, 2048)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        z = self.projection_head(self.backbone(x).flatten(start_dim=1))
        return z.detach(), self.prediction_head(z)


def matching_simsiam() -> SimSiam:
    """Our ``SimSiam("resnet18_cifar")`` with the reference's 3-layer projector, so both sides do the same work.

    Our default is the paper's 2-layer CIFAR projector; Lightly's ``SimSiamProjectionHead`` always has 3 layers
    (4.2 M parameters and 0.7 % of the step's FLOPs more): comparing those would flatter ours."""
    return SimSiam("resnet18_cifar", proj_layers=3)


def lightly_train_step(
    model: LightlySimSiam, x0: Tensor, x1: Tensor, optimizer: torch.optim.Optimizer, criterion: NegativeCosineSimilarity
) -> Tensor:
    """The training step of Lightly's SimSiam example and benchmark."""
    z0, p0 = model(x0)
    z1, p1 = model(x1)
    loss = 0.5 * (criterion(z0, p1) + criterion(z1, p0))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()
