"""The classic Siamese twin network: one encoder with shared weights applied to two inputs."""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from lightly_siamese_ext._validation import check_choice, check_image_batch, check_same_batch_size
from lightly_siamese_ext.backbones import create_backbone, infer_in_chans
from lightly_siamese_ext.distances import DISTANCES, paired_distances
from lightly_siamese_ext.heads import EmbeddingHead

__all__ = ["SiameseNetwork"]


class SiameseNetwork(nn.Module):
    """Twin network (Bromley et al. 1993; Hadsell, Chopra & LeCun 2006): ``e = head(backbone(x))`` for both inputs.

    There is one encoder module: both branches use the very same parameters, so gradients from a loss on both
    outputs accumulate in one set of weights. Train it with :class:`lightly_siamese_ext.ContrastiveLoss` on pairs
    or :class:`lightly_siamese_ext.TripletLoss` on labelled batches. ``torch.jit.script`` and ``torch.export.export``
    work on it (the input checks run in eager mode only).

    Args:
        backbone: timm model name or an ``nn.Module`` returning (B, D) features.
        embedding_dim: Width of the embedding.
        hidden_dim: Hidden width of the embedding head (defaults to the backbone's feature width).
        normalize: L2-normalise embeddings (unit sphere).
        distance: What :meth:`distance` computes: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``
            (1 - cosine similarity), as in :mod:`lightly_siamese_ext.distances`.
        pretrained: Load timm's pretrained weights for a named backbone.
        **backbone_kwargs: Passed to ``timm.create_model``.
    """

    def __init__(
        self,
        backbone: Union[str, nn.Module] = "resnet18_cifar",
        embedding_dim: int = 128,
        hidden_dim: Optional[int] = None,
        normalize: bool = False,
        distance: str = "euclidean",
        pretrained: bool = False,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        check_choice(distance, "distance", DISTANCES)
        self.backbone, self.feature_dim = create_backbone(backbone, pretrained=pretrained, **backbone_kwargs)
        self.in_chans = infer_in_chans(self.backbone)
        self.embedding_head = EmbeddingHead(self.feature_dim, hidden_dim, embedding_dim, normalize=normalize)
        self.embedding_dim = embedding_dim
        self.distance_name = distance

    def embed(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) -> embeddings (B, embedding_dim)."""
        if not torch.jit.is_scripting():
            check_image_batch(x, "x", self.in_chans)
        return self.embedding_head(self.backbone(x))

    def forward(self, x0: Tensor, x1: Tensor) -> Tuple[Tensor, Tensor]:
        """Two image batches (B, C, H, W) -> their embeddings ``(e0, e1)``, each (B, embedding_dim).

        Same-sized inputs go through the encoder as one 2B batch (one pass, and batch norm sees both branches,
        so the two embeddings are normalised alike); differently sized inputs go through it one after the other.
        """
        if not torch.jit.is_scripting():
            check_image_batch(x0, "x0", self.in_chans)
            check_image_batch(x1, "x1", self.in_chans)
            check_same_batch_size(x0, x1)
        if x0.shape == x1.shape:
            e0, e1 = self.embed(torch.cat([x0, x1])).chunk(2)
            return e0, e1
        return self.embed(x0), self.embed(x1)

    def distance(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Distance (B,) between the embeddings of paired images (B, C, H, W) under the configured metric."""
        e0, e1 = self(x0, x1)
        return paired_distances(e0.float(), e1.float(), self.distance_name)
