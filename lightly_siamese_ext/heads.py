"""Heads on top of a backbone's pooled (B, D) features, built on lightly's ``ProjectionHead``."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch.nn as nn
import torch.nn.functional as F
from lightly.models.modules.heads import ProjectionHead, SimSiamPredictionHead
from torch import Tensor

from lightly_siamese_ext._validation import check_positive_int

__all__ = ["EmbeddingHead", "SimSiamPredictionHead", "SimSiamProjectionHead"]

_Block = Tuple[int, int, Optional[nn.Module], Optional[nn.Module]]


class SimSiamProjectionHead(ProjectionHead):
    """SimSiam projection MLP with a configurable depth.

    "The projection MLP (in f) has BN applied to each fully-connected (fc) layer, including its output fc. Its
    output fc has no ReLU. The hidden fc is 2048-d. This MLP has 3 layers." [0] For CIFAR "the projection MLP has
    2 layers" [0, Appendix D]. With ``num_layers=3`` this is exactly lightly's ``SimSiamProjectionHead``.

    - [0]: SimSiam, 2020, https://arxiv.org/abs/2011.10566

    Args:
        input_dim: Width of the backbone features.
        hidden_dim: Width of the hidden layers.
        output_dim: Width of the projection.
        num_layers: Number of Linear layers (>= 1): 2 for the paper's CIFAR variant, 3 for ImageNet.

    Shapes: (B, input_dim) -> (B, output_dim).
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 2048,
        num_layers: int = 3,
    ) -> None:
        for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim), ("output_dim", output_dim)):
            check_positive_int(value, name)
        check_positive_int(num_layers, "num_layers")
        widths = [input_dim] + [hidden_dim] * (num_layers - 1)
        blocks: List[_Block] = [(w_in, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()) for w_in in widths[:-1]]
        blocks.append((widths[-1], output_dim, nn.BatchNorm1d(output_dim, affine=False), None))
        super().__init__(blocks)
        self.num_layers = num_layers


class EmbeddingHead(ProjectionHead):
    """Embedding head of a Siamese twin network: Linear -> BN -> ReLU -> Linear, optionally L2-normalised.

    Args:
        input_dim: Width of the backbone features.
        hidden_dim: Width of the hidden layer (defaults to ``input_dim``).
        output_dim: Width of the embedding.
        normalize: Project the embedding onto the unit sphere (what cosine-style metric losses expect).

    Shapes: (B, input_dim) -> (B, output_dim).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: Optional[int] = None,
        output_dim: int = 128,
        normalize: bool = False,
    ) -> None:
        hidden_dim = input_dim if hidden_dim is None else hidden_dim
        for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim), ("output_dim", output_dim)):
            check_positive_int(value, name)
        super().__init__(
            [
                (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()),
                (hidden_dim, output_dim, None, None),
            ]
        )
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        embedding = self.layers(x)  # not super().forward(x): TorchScript does not compile super()
        return F.normalize(embedding, dim=1) if self.normalize else embedding
