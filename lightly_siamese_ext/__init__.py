"""lightly-siamese-ext: Siamese-network training for Lightly users.

The names here are the ones a training loop uses (the README's API tour). The rest lives in documented
submodules: :mod:`~lightly_siamese_ext.backbones`, :mod:`~lightly_siamese_ext.heads`,
:mod:`~lightly_siamese_ext.models`, :mod:`~lightly_siamese_ext.distances`, :mod:`~lightly_siamese_ext.losses`
(mining, the distance matrix), :mod:`~lightly_siamese_ext.data`, :mod:`~lightly_siamese_ext.transforms` (the
batched per-sample ops in ``transforms.functional``), :mod:`~lightly_siamese_ext.evaluation`,
:mod:`~lightly_siamese_ext.optim` and :mod:`~lightly_siamese_ext.training` (checkpoints, metrics log, FLOPs/MFU,
process launch).

Importing the package registers the CIFAR-stem ResNets (``resnet18_cifar``, ``resnet34_cifar``, ``resnet50_cifar``)
in timm's model registry.
"""

from lightly_siamese_ext.backbones import create_backbone
from lightly_siamese_ext.data import GPUResidentLoader, PairDataset, PKSampler, TripletDataset, load_train_test
from lightly_siamese_ext.evaluation import (
    CollapseMonitor,
    extract_features,
    knn_accuracy,
    knn_predict,
    linear_probe,
    n_way_one_shot_accuracy,
    pair_verification_auc,
    retrieval_metrics,
)
from lightly_siamese_ext.heads import EmbeddingHead, SimSiamPredictionHead, SimSiamProjectionHead
from lightly_siamese_ext.losses import ContrastiveLoss, TripletLoss
from lightly_siamese_ext.models import SiameseNetwork, SimSiam, SimSiamOutput, simsiam_loss
from lightly_siamese_ext.optim import epoch_cosine_scheduler
from lightly_siamese_ext.transforms import (
    CIFAR10_NORMALIZE,
    BatchedCropFlipTransform,
    BatchedEvalTransform,
    BatchedSimSiamTransform,
)

__version__ = "0.1.0"

__all__ = [
    "BatchedCropFlipTransform",
    "BatchedEvalTransform",
    "BatchedSimSiamTransform",
    "CIFAR10_NORMALIZE",
    "CollapseMonitor",
    "ContrastiveLoss",
    "EmbeddingHead",
    "GPUResidentLoader",
    "PKSampler",
    "PairDataset",
    "SiameseNetwork",
    "SimSiam",
    "SimSiamOutput",
    "SimSiamPredictionHead",
    "SimSiamProjectionHead",
    "TripletDataset",
    "TripletLoss",
    "create_backbone",
    "epoch_cosine_scheduler",
    "extract_features",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "load_train_test",
    "n_way_one_shot_accuracy",
    "pair_verification_auc",
    "retrieval_metrics",
    "simsiam_loss",
    "__version__",
]
