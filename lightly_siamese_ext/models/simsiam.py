"""SimSiam (Chen & He, 2020): a backbone, a projection MLP and a prediction MLP trained with stop-gradient."""

# No ``from __future__ import annotations``: TorchScript cannot resolve the string annotations it would give
# SimSiamOutput's fields (pytorch#95858).

from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn as nn
from lightly.loss import NegativeCosineSimilarity
from torch import Tensor

from lightly_siamese_ext._validation import check_image_batch, check_same_batch_size
from lightly_siamese_ext.backbones import create_backbone, infer_in_chans
from lightly_siamese_ext.heads import SimSiamPredictionHead, SimSiamProjectionHead

__all__ = ["SimSiam", "SimSiamOutput", "simsiam_loss"]


class SimSiamOutput(NamedTuple):
    """What :meth:`SimSiam.forward` returns for two views of a batch. All tensors are (B, proj_dim).

    ``z0``/``z1`` are the projections, already detached (the stop-gradient targets); ``p0``/``p1`` the predictions.
    """

    z0: Tensor
    z1: Tensor
    p0: Tensor
    p1: Tensor


class SimSiam(nn.Module):
    """SimSiam: ``f = projector(backbone(x))``, ``h = predictor``, trained with a symmetric stop-gradient loss.

    The loss of the paper (Algorithm 1) is symmetric in the two views::

        L = D(p0, stopgrad(z1)) / 2 + D(p1, stopgrad(z0)) / 2,   D(p, z) = -cos(p, z)

    ``forward`` returns the projections already detached, so lightly's ``NegativeCosineSimilarity`` applies as is.
    Called with one view, ``model(x)`` returns ``(z.detach(), p)`` like the ``SimSiam`` module of Lightly's examples,
    so their training loops run unchanged. ``torch.jit.script`` and ``torch.export.export`` work on the model (the
    input checks run in eager mode only). Usage::

        import torch
        import lightly_siamese_ext as lse
        from lightly.loss import NegativeCosineSimilarity

        model = lse.SimSiam("resnet18_cifar")                    # CIFAR recipe: 2-layer projector, 2048-d
        criterion = NegativeCosineSimilarity()
        optimizer = torch.optim.SGD(model.parameter_groups(fix_predictor_lr=True), lr=0.06, momentum=0.9,
                                    weight_decay=5e-4)
        x0, x1 = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)   # two augmented views
        out = model(x0, x1)                                      # SimSiamOutput(z0, z1, p0, p1)
        loss = 0.5 * (criterion(out.p0, out.z1) + criterion(out.p1, out.z0))   # == simsiam_loss(out)
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        z0, p0 = model(x0)                                       # one view, as in Lightly's examples

    Args:
        backbone: timm model name (e.g. ``"resnet18_cifar"``) or an ``nn.Module`` returning (B, D) features (a timm
            model with its classifier is refused: see :func:`~lightly_siamese_ext.create_backbone`).
        proj_layers: Depth of the projection MLP: 2 for CIFAR (paper, Appendix D), 3 for ImageNet.
        proj_dim: Output width of the projector and predictor (2048 in the paper).
        pred_hidden_dim: Bottleneck width of the predictor (512 in the paper).
        proj_hidden_dim: Hidden width of the projector (defaults to ``proj_dim``).
        pretrained: Load timm's pretrained weights for a named backbone.
        **backbone_kwargs: Passed to ``timm.create_model`` (e.g. ``drop_path_rate``, ``in_chans``).
    """

    def __init__(
        self,
        backbone: Union[str, nn.Module] = "resnet18_cifar",
        proj_layers: int = 2,
        proj_dim: int = 2048,
        pred_hidden_dim: int = 512,
        proj_hidden_dim: Optional[int] = None,
        pretrained: bool = False,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        self.backbone, self.feature_dim = create_backbone(backbone, pretrained=pretrained, **backbone_kwargs)
        self.in_chans = infer_in_chans(self.backbone)
        self.projection_head = SimSiamProjectionHead(
            input_dim=self.feature_dim,
            hidden_dim=proj_dim if proj_hidden_dim is None else proj_hidden_dim,
            output_dim=proj_dim,
            num_layers=proj_layers,
        )
        self.prediction_head = SimSiamPredictionHead(proj_dim, pred_hidden_dim, proj_dim)

    def embed(self, x: Tensor) -> Tensor:
        """Backbone features (B, feature_dim) of images (B, C, H, W): what kNN / linear evaluation uses."""
        if not torch.jit.is_scripting():
            check_image_batch(x, "x", self.in_chans)
        return self.backbone(x)

    def forward_view(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """One view (B, C, H, W) -> ``(z.detach(), p)``, both (B, proj_dim), as in lightly's SimSiam example."""
        z = self.projection_head(self.embed(x))
        p = self.prediction_head(z)
        return z.detach(), p

    def forward(self, x0: Tensor, x1: Optional[Tensor] = None) -> Union[Tuple[Tensor, Tensor], SimSiamOutput]:
        """Two views (B, C, H, W) of the same images -> :class:`SimSiamOutput` with (B, proj_dim) tensors; one
        view -> ``(z.detach(), p)``, as :meth:`forward_view` (Lightly's example model).

        The views go through the backbone separately, so batch norm uses per-view statistics as in the paper.
        """
        if x1 is None:
            return self.forward_view(x0)
        if not torch.jit.is_scripting():
            check_image_batch(x0, "x0", self.in_chans)
            check_image_batch(x1, "x1", self.in_chans)
            check_same_batch_size(x0, x1)
        z0, p0 = self.forward_view(x0)
        z1, p1 = self.forward_view(x1)
        return SimSiamOutput(z0=z0, z1=z1, p0=p0, p1=p1)

    def parameter_groups(self, fix_predictor_lr: bool = False) -> List[Dict[str, Any]]:
        """Optimizer parameter groups: ``encoder`` (backbone + projector) and ``predictor``.

        With ``fix_predictor_lr=True`` the predictor group carries ``fix_lr=True``: the paper keeps the predictor's
        learning rate constant while the encoder's follows the cosine schedule (Sec. 4.4), which
        :func:`lightly_siamese_ext.epoch_cosine_scheduler` honours. Every parameter is in exactly one group.
        """
        encoder = [*self.backbone.parameters(), *self.projection_head.parameters()]
        return [
            {"name": "encoder", "params": encoder, "fix_lr": False},
            {"name": "predictor", "params": list(self.prediction_head.parameters()), "fix_lr": fix_predictor_lr},
        ]


def simsiam_loss(output: SimSiamOutput, criterion: Optional[nn.Module] = None) -> Tensor:
    """Symmetric SimSiam loss ``0.5 * (D(p0, z1) + D(p1, z0))``, computed in float32 even under autocast.

    ``criterion`` defaults to lightly's ``NegativeCosineSimilarity``; the result lies in [-1, 1] (-1 is perfect).
    """
    criterion = NegativeCosineSimilarity() if criterion is None else criterion
    z0, z1, p0, p1 = (t.float() for t in output)
    return 0.5 * (criterion(p0, z1) + criterion(p1, z0))
