"""Every metric and monitor refuses non-finite features with an error naming them, instead of a number computed
from a NaN model (a kNN accuracy of 0.4 from NaN queries, say)."""

import pytest
import torch
import torch.nn.functional as F

import lightly_siamese_ext as lse

g = torch.Generator().manual_seed(0)
BANK, BANK_LABELS = torch.randn(300, 8, generator=g), torch.arange(300) % 3
QUERY, QUERY_LABELS = torch.randn(30, 8, generator=g), torch.arange(30) % 3


def _spoilt(x: torch.Tensor, value: float) -> torch.Tensor:
    x = x.clone()
    x[1, 2] = value
    return x


CALLS = {
    "knn_accuracy query": lambda v: lse.knn_accuracy(_spoilt(QUERY, v), QUERY_LABELS, BANK, BANK_LABELS, 3, k=20),
    "knn_accuracy bank": lambda v: lse.knn_accuracy(QUERY, QUERY_LABELS, _spoilt(BANK, v), BANK_LABELS, 3, k=20),
    "knn_predict feature": lambda v: lse.knn_predict(_spoilt(QUERY, v), F.normalize(BANK).T, BANK_LABELS, 3),
    "knn_predict feature_bank": lambda v: lse.knn_predict(QUERY, _spoilt(BANK, v).T, BANK_LABELS, 3),
    "linear_probe train_features": lambda v: lse.linear_probe(_spoilt(BANK, v), BANK_LABELS, QUERY, QUERY_LABELS, 3,
                                                              epochs=1),
    "linear_probe test_features": lambda v: lse.linear_probe(BANK, BANK_LABELS, _spoilt(QUERY, v), QUERY_LABELS, 3,
                                                             epochs=1),
    "retrieval_metrics embeddings": lambda v: lse.retrieval_metrics(_spoilt(BANK, v), BANK_LABELS),
    "retrieval_metrics reference_embeddings": lambda v: lse.retrieval_metrics(
        QUERY, QUERY_LABELS, reference_embeddings=_spoilt(BANK, v), reference_labels=BANK_LABELS),
    "n_way_one_shot_accuracy embeddings": lambda v: lse.n_way_one_shot_accuracy(_spoilt(BANK, v), BANK_LABELS, 3),
    "pair_verification_auc distances": lambda v: lse.pair_verification_auc(
        _spoilt(QUERY, v)[:, 2].abs(), QUERY_LABELS == 0),
}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("call", CALLS)
def test_non_finite_features_are_refused_by_name(call: str, value: float) -> None:
    argument = call.split()[1]
    with pytest.raises(ValueError, match=f"{argument} must be finite"):
        CALLS[call](value)


def test_collapse_monitor_refuses_to_report_on_non_finite_outputs() -> None:
    monitor = lse.CollapseMonitor()
    monitor.update(QUERY)
    monitor.update(_spoilt(QUERY, float("nan")))  # no host sync per step: found when the epoch is read
    with pytest.raises(ValueError, match="z must be finite"):
        monitor.compute()
    with pytest.raises(ValueError, match="z must be finite"):
        monitor.is_collapsed
