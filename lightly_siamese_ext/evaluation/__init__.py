"""Evaluation on precomputed features: kNN and linear probe (SSL), collapse monitor, retrieval and verification
metrics (metric learning, Siamese networks)."""

from lightly_siamese_ext.evaluation.collapse import CollapseMonitor
from lightly_siamese_ext.evaluation.knn import extract_features, knn_accuracy, knn_predict
from lightly_siamese_ext.evaluation.linear import linear_probe
from lightly_siamese_ext.evaluation.retrieval import retrieval_metrics
from lightly_siamese_ext.evaluation.verification import (
    n_way_one_shot_accuracy,
    pair_verification_auc,
    sample_one_shot_trials,
)

__all__ = [
    "CollapseMonitor",
    "extract_features",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "n_way_one_shot_accuracy",
    "pair_verification_auc",
    "retrieval_metrics",
    "sample_one_shot_trials",
]
