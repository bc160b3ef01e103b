"""lightly-siamese-ext: Siamese-network training for Lightly users.

Importing the package registers the CIFAR-stem ResNets (``resnet18_cifar``, ``resnet34_cifar``, ``resnet50_cifar``)
in timm's model registry.
"""

from lightly_siamese_ext.backbones import (
    CIFAR10_MEAN,
    CIFAR10_NORMALIZE,
    CIFAR10_STD,
    CifarResNet,
    create_backbone,
    feature_dim_of,
)
from lightly_siamese_ext.data import (
    GPUResidentLoader,
    ImageArrays,
    PairDataset,
    PKSampler,
    TripletDataset,
    images_from_numpy,
    load_cifar10_folder,
    load_image_folder,
    load_image_source,
    load_train_test,
    read_targets,
)
from lightly_siamese_ext.evaluation import (
    CollapseMonitor,
    extract_features,
    knn_accuracy,
    knn_predict_chunked,
    linear_probe,
    n_way_one_shot_accuracy,
    pair_verification_auc,
    retrieval_metrics,
    sample_one_shot_trials,
)
from lightly_siamese_ext.heads import EmbeddingHead, SimSiamPredictionHead, SimSiamProjectionHead
from lightly_siamese_ext.losses import (
    ContrastiveLoss,
    TripletLoss,
    mine_batch_all,
    mine_batch_hard,
    mine_semi_hard,
    paired_distances,
    pairwise_distances,
)
from lightly_siamese_ext.models import SiameseNetwork, SimSiam, SimSiamOutput, simsiam_loss
from lightly_siamese_ext.optim import CosineWarmupScheduler, epoch_cosine_scheduler
from lightly_siamese_ext.transforms import BatchedCropFlipTransform, BatchedEvalTransform, BatchedSimSiamTransform

__version__ = "0.1.0"

__all__ = [
    "BatchedCropFlipTransform",
    "BatchedEvalTransform",
    "BatchedSimSiamTransform",
    "CIFAR10_MEAN",
    "CIFAR10_NORMALIZE",
    "CIFAR10_STD",
    "CifarResNet",
    "CollapseMonitor",
    "ContrastiveLoss",
    "CosineWarmupScheduler",
    "EmbeddingHead",
    "GPUResidentLoader",
    "ImageArrays",
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
    "feature_dim_of",
    "images_from_numpy",
    "knn_accuracy",
    "knn_predict_chunked",
    "linear_probe",
    "load_cifar10_folder",
    "load_image_folder",
    "load_image_source",
    "load_train_test",
    "mine_batch_all",
    "mine_batch_hard",
    "mine_semi_hard",
    "n_way_one_shot_accuracy",
    "pair_verification_auc",
    "paired_distances",
    "pairwise_distances",
    "read_targets",
    "retrieval_metrics",
    "sample_one_shot_trials",
    "simsiam_loss",
    "__version__",
]
