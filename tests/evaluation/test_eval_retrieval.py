from typing import Dict, Optional, Sequence

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from lightly_siamese_ext.evaluation import retrieval_metrics


def _data(n: int = 60, num_classes: int = 5, dim: int = 8, seed: int = 0, spread: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    centers = torch.randn(num_classes, dim, generator=g)
    return centers[labels] + spread * torch.randn(n, dim, generator=g), labels


def _brute_force(
    queries: torch.Tensor,
    labels: torch.Tensor,
    references: Optional[torch.Tensor],
    reference_labels: Optional[torch.Tensor],
    ks: Sequence[int],
    distance: str,
) -> Dict[str, float]:
    same_source = references is None
    if same_source:
        references, reference_labels = queries, labels
    recalls = {k: [] for k in ks}
    average_precisions = []
    for i in range(len(queries)):
        others = [j for j in range(len(references)) if not (same_source and j == i)]
        if distance == "cosine":
            key = lambda j: -float(F.cosine_similarity(queries[i], references[j], dim=0))  # noqa: E731
        else:
            key = lambda j: float((queries[i] - references[j]).norm())  # noqa: E731
        ranked = sorted(others, key=key)
        relevant = [int(reference_labels[j] == labels[i]) for j in ranked]
        r = sum(relevant)
        if r == 0:
            continue
        for k in ks:
            recalls[k].append(float(any(relevant[:k])))
        precision_sum, hits = 0.0, 0
        for rank, rel in enumerate(relevant[:r], start=1):
            hits += rel
            precision_sum += rel * hits / rank
        average_precisions.append(precision_sum / r)
    result = {f"recall@{k}": sum(v) / len(v) for k, v in recalls.items()}
    result["map@r"] = sum(average_precisions) / len(average_precisions)
    return result


def _pml(queries, labels, references=None, reference_labels=None, distance="euclidean") -> Dict[str, float]:
    knn = CustomKNN(CosineSimilarity() if distance == "cosine" else LpDistance(normalize_embeddings=False))
    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=knn,
        device=torch.device("cpu"),
    )
    return calculator.get_accuracy(queries, labels, references, reference_labels)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_same_source_against_brute_force_and_pml(distance: str) -> None:
    embeddings, labels = _data()
    got = retrieval_metrics(embeddings, labels, ks=(1, 2, 4, 16), distance=distance, chunk_size=13)
    expected = _brute_force(embeddings, labels, None, None, (1, 2, 4, 16), distance)
    assert got == pytest.approx(expected, abs=1e-9)
    pml = _pml(embeddings, labels, distance=distance)
    assert got["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert got["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    assert 0.0 < got["map@r"] < got["recall@1"] < got["recall@16"] <= 1.0  # a non-trivial case


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_separate_reference_set_against_brute_force_and_pml(distance: str) -> None:
    queries, labels = _data(n=30, seed=1)
    references, reference_labels = _data(n=50, seed=2)
    references = references + 0.5  # not the same distribution: nothing hides behind symmetry
    got = retrieval_metrics(
        queries, labels, (1, 4), distance, reference_embeddings=references, reference_labels=reference_labels
    )
    expected = _brute_force(queries, labels, references, reference_labels, (1, 4), distance)
    assert got == pytest.approx(expected, abs=1e-9)
    pml = _pml(queries, labels, references, reference_labels, distance=distance)
    assert got["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert got["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)


def test_lone_queries_are_left_out_like_pml() -> None:
    embeddings, labels = _data(n=40)
    labels[3] = 99  # a class with a single sample: no other sample to find
    with pytest.warns(UserWarning, match="1 of 40 queries have no reference"):
        got = retrieval_metrics(embeddings, labels, ks=(1,))
    pml = _pml(embeddings, labels)
    assert got["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert got["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)


def test_chunk_size_does_not_change_the_result() -> None:
    embeddings, labels = _data(n=75)
    results = [retrieval_metrics(embeddings, labels, chunk_size=size) for size in (1, 8, 75, 1000)]
    assert all(result == pytest.approx(results[0], abs=1e-12) for result in results)


def test_a_shift_far_from_the_origin_keeps_the_euclidean_ranking() -> None:
    # Shifting every embedding keeps every distance; uncentred float32 scores 2 q.r - |r|^2 lost the order here
    # (recall@1 0.06 instead of 0.09 in an earlier version).
    embeddings, labels = _data(n=200, num_classes=12, dim=16, spread=3.0)
    small = embeddings * 0.01
    shifted_refs = {"reference_embeddings": small[100:] + 100.0, "reference_labels": labels[100:]}
    plain_refs = {"reference_embeddings": small[100:], "reference_labels": labels[100:]}
    assert retrieval_metrics(small + 100.0, labels) == pytest.approx(retrieval_metrics(small, labels), abs=0.011)
    got = retrieval_metrics(small[:100] + 100.0, labels[:100], **shifted_refs)
    assert got == pytest.approx(retrieval_metrics(small[:100], labels[:100], **plain_refs), abs=0.011)


def test_self_is_excluded_by_index_not_by_distance() -> None:
    embeddings, labels = _data(n=20)
    doubled, doubled_labels = torch.cat([embeddings, embeddings]), torch.cat([labels, labels])
    # Every query's exact duplicate (distance 0) is another sample of its class: ranked first.
    got = retrieval_metrics(doubled, doubled_labels, ks=(1,))
    assert got["recall@1"] == 1.0


def test_perfect_clusters_score_one() -> None:
    embeddings, labels = _data(n=50, spread=1e-3)
    got = retrieval_metrics(embeddings * 100, labels, ks=(1, 4))
    assert got == {"recall@1": 1.0, "recall@4": 1.0, "map@r": 1.0}


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(ks=(1, 20)), ValueError, r"ks entries must be at most 19"),
        (dict(ks=(0,)), ValueError, "every entry of ks must be a positive int"),
        (dict(ks=4), TypeError, "ks must be a non-empty sequence"),
        (dict(labels=torch.zeros(20)), TypeError, "labels must hold integer class ids"),
        (dict(labels=torch.zeros(19, dtype=torch.long)), ValueError, "labels must have one entry per row"),
        (dict(labels=torch.zeros(20, 1, dtype=torch.long)), ValueError, "labels must be a 1-D tensor"),
        (dict(embeddings=torch.ones(20, 4, dtype=torch.int32)), TypeError, "embeddings must be a floating-point"),
        (dict(distance="manhattan"), ValueError, "distance must be one of"),
        (dict(reference_labels=torch.zeros(20, dtype=torch.long)), ValueError, "without reference_embeddings"),
        (dict(reference_embeddings=torch.randn(5, 4)), ValueError, "reference_labels must be given"),
        (dict(reference_embeddings=torch.randn(5, 3), reference_labels=torch.zeros(5, dtype=torch.long)),
         ValueError, "same feature dimension"),
        (dict(labels=torch.arange(20)), ValueError, "no query has a reference of its own class"),
        (dict(chunk_size=0), ValueError, "chunk_size must be a positive int"),
    ],
)
def test_bad_input(change: dict, error: type, match: str) -> None:
    kwargs = dict(embeddings=torch.randn(20, 4), labels=torch.arange(20) % 3, ks=(1, 4))
    kwargs.update(change)
    with pytest.raises(error, match=match):
        retrieval_metrics(**kwargs)
