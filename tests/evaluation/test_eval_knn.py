from typing import List

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict as lightly_knn_predict

from lightly_siamese_ext.evaluation import extract_features, knn_accuracy, knn_predict


def _data(num_bank: int = 600, num_query: int = 70, dim: int = 16, num_classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    bank = torch.randn(num_bank, dim, generator=g)
    bank_labels = torch.randint(0, num_classes, (num_bank,), generator=g)
    query = torch.randn(num_query, dim, generator=g)
    query_labels = torch.randint(0, num_classes, (num_query,), generator=g)
    return query, query_labels, bank, bank_labels


def _num_voted_classes(query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, k: int) -> List[int]:
    """How many classes appear among each query's k nearest neighbours (the rest tie at score 0)."""
    sim = F.normalize(query, dim=1) @ F.normalize(bank, dim=1).T
    return [len(set(bank_labels[row.topk(k).indices].tolist())) for row in sim]


def _lightly_inputs(query: torch.Tensor, bank: torch.Tensor) -> tuple:
    """What lightly's knn_predict takes: normalised features, the bank as a (D, N) tensor."""
    return F.normalize(query, dim=1), F.normalize(bank, dim=1).T.contiguous()


def _assert_same_voted_classes(got: torch.Tensor, expected: torch.Tensor, voted: List[int]) -> None:
    # Classes without a vote tie at score 0 and come in arbitrary order: compare the voted ones.
    for row, count in enumerate(voted):
        assert torch.equal(got[row, :count], expected[row, :count]), row
        assert set(got[row].tolist()) == set(range(got.shape[1]))


@pytest.mark.parametrize("chunk_size", [7, 33, 512])
@pytest.mark.parametrize("k", [1, 20, 200])
def test_knn_predict_is_lightlys_with_lightlys_arguments(chunk_size: int, k: int) -> None:
    query, _, bank, bank_labels = _data()
    feature, feature_bank = _lightly_inputs(query, bank)
    expected = lightly_knn_predict(feature, feature_bank, bank_labels, 10, knn_k=k, knn_t=0.1)
    got = knn_predict(feature, feature_bank, bank_labels, 10, knn_k=k, knn_t=0.1, chunk_size=chunk_size)
    assert got.shape == (70, 10) and got.dtype == torch.long
    _assert_same_voted_classes(got, expected, _num_voted_classes(query, bank, bank_labels, k))


def test_knn_predict_takes_the_bank_as_lightly_does_even_when_it_is_square() -> None:
    # D == N: a bank in the other layout would run and be wrong; ours reads it as lightly does, (D, N).
    query, _, bank, bank_labels = _data(num_bank=16, dim=16)
    feature, feature_bank = _lightly_inputs(query, bank)
    expected = lightly_knn_predict(feature, feature_bank, bank_labels, 10, knn_k=5)
    got = knn_predict(feature, feature_bank, bank_labels, 10, knn_k=5)
    _assert_same_voted_classes(got, expected, _num_voted_classes(query, bank, bank_labels, 5))
    with pytest.raises(ValueError, match=r"feature_labels must have one entry per column of feature_bank \(15\), got 16"):
        knn_predict(feature, feature_bank[:, :15], bank_labels, 10, knn_k=5)


def test_knn_accuracy_normalises_rows_itself() -> None:
    query, _, bank, bank_labels = _data()
    predicted = lightly_knn_predict(*_lightly_inputs(query, bank), bank_labels, 10, knn_k=20)[:, 0]
    scaled_bank = bank * torch.linspace(0.1, 3.0, 600)[:, None]  # similarities scaled per column, not the bank
    unit_query, unit_bank = F.normalize(query, dim=1), F.normalize(bank, dim=1)
    for q, b in ((query, bank), (query * 7.0, scaled_bank), (unit_query, unit_bank)):
        assert knn_accuracy(q, predicted, b, bank_labels, 10, k=20, topk=(1,)) == {"top1": 1.0}
    # normalize=False: the raw dot product, as lightly's knn_predict on the inputs as they are (|sim| <= 1 here:
    # lightly's exp(sim / t) does not overflow).
    short_bank = unit_bank * torch.linspace(0.2, 1.0, 600)[:, None]
    raw = lightly_knn_predict(unit_query, short_bank.T.contiguous(), bank_labels, 10, knn_k=20)[:, 0]
    assert not torch.equal(raw, predicted)
    assert knn_accuracy(unit_query, raw, short_bank, bank_labels, 10, k=20, topk=(1,), normalize=False) == {"top1": 1.0}


def test_small_temperature_stays_finite() -> None:
    query, _, bank, bank_labels = _data()
    feature, feature_bank = _lightly_inputs(query, bank)
    # exp(sim / 0.001) overflows float32 in lightly's formula; here the nearest neighbour decides.
    nearest = bank_labels[(feature @ feature_bank).argmax(dim=1)]
    assert torch.equal(knn_predict(feature, feature_bank, bank_labels, 10, knn_k=20, knn_t=1e-3)[:, 0], nearest)


def test_knn_accuracy_against_counting() -> None:
    query, query_labels, bank, bank_labels = _data(num_query=333)
    predictions = lightly_knn_predict(*_lightly_inputs(query, bank), bank_labels, 10, knn_k=50)
    top1 = sum(int(p[0] == t) for p, t in zip(predictions, query_labels)) / 333
    top5 = sum(int(t in p[:5]) for p, t in zip(predictions, query_labels)) / 333
    got = knn_accuracy(query, query_labels, bank, bank_labels, 10, k=50, chunk_size=100)
    assert set(got) == {"top1", "top5"}
    assert got["top1"] == top1  # exact: hits are counted, not averaged in float32
    assert abs(got["top5"] - top5) < 0.01  # classes tied at the 5th place may differ


def test_knn_accuracy_on_clusters_and_without_top5() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 10
    bank_labels = torch.arange(300) % 3
    bank = centers[bank_labels] + torch.randn(300, 8, generator=g)
    query_labels = torch.arange(30) % 3
    query = centers[query_labels] + torch.randn(30, 8, generator=g)
    assert knn_accuracy(query, query_labels, bank, bank_labels, num_classes=3, k=10) == {"top1": 1.0}


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(knn_k=601), ValueError, r"knn_k must be an int in \[1, 600\], got 601"),
        (dict(knn_k=0), ValueError, r"knn_k must be an int in \[1, 600\], got 0"),
        (dict(num_classes=5), ValueError, "feature_labels must lie in"),
        (dict(feature_bank=torch.randn(600)), ValueError, r"feature_bank must have shape \(B, D\)"),
        (dict(feature=torch.randn(70, 15)), ValueError, "feature and feature_bank must have the same feature"),
        (dict(feature=torch.randint(0, 3, (70, 16))), TypeError, "feature must be a floating-point"),
        (dict(feature_labels=torch.zeros(600)), TypeError, "feature_labels must hold integer class ids"),
        (dict(feature_labels=torch.zeros(599, dtype=torch.long)), ValueError, "feature_labels must have one entry"),
        (dict(knn_t=0.0), ValueError, "knn_t must be a finite number > 0"),
        (dict(knn_t=float("nan")), ValueError, "knn_t must be a finite number > 0"),
        (dict(chunk_size=0), ValueError, "chunk_size must be a positive int"),
    ],
)
def test_bad_input(change: dict, error: type, match: str) -> None:
    query, _, bank, bank_labels = _data()
    kwargs = dict(feature=query, feature_bank=bank.T, feature_labels=bank_labels, num_classes=10, knn_k=20)
    kwargs.update(change)
    with pytest.raises(error, match=match):
        knn_predict(**kwargs)


def test_knn_accuracy_bad_input() -> None:
    query, query_labels, bank, bank_labels = _data()
    with pytest.raises(ValueError, match="query_labels must have one entry"):
        knn_accuracy(query, query_labels[:-1], bank, bank_labels, 10)
    with pytest.raises(ValueError, match="topk must contain a value <= num_classes"):
        knn_accuracy(query, query_labels, bank, bank_labels, 10, topk=(11,))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 600\], got 601"):  # its own names
        knn_accuracy(query, query_labels, bank, bank_labels, 10, k=601)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_extract_features_eval_mode_no_grad_and_restores_training() -> None:
    encoder = _Encoder().train()
    images = torch.randn(10, 3, 2, 2)
    labels = torch.arange(10)
    batches = [(images[:4], labels[:4], ["a"] * 4), (images[4:], labels[4:], ["b"] * 6)]
    features, got_labels = extract_features(encoder, batches)
    assert encoder.training and encoder.net[2].training  # restored
    assert not features.requires_grad and features.dtype == torch.float32
    encoder.eval()
    with torch.no_grad():
        expected = encoder(images)
    torch.testing.assert_close(features, expected)  # eval mode: running stats, no dropout
    assert torch.equal(got_labels, labels)


def test_extract_features_plain_tensors_preprocess_and_callable() -> None:
    images = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
    features, labels = extract_features(
        lambda x: x.mean(dim=(2, 3)), [images[:2], images[2:]], preprocess=lambda x: x.float() / 255
    )
    assert labels is None
    torch.testing.assert_close(features, images.float().div(255).mean(dim=(2, 3)))


def test_extract_features_restores_training_flag_on_error() -> None:
    encoder = _Encoder().train()

    def batches():
        yield torch.randn(2, 3, 2, 2)
        raise RuntimeError("loader died")

    with pytest.raises(RuntimeError, match="loader died"):
        extract_features(encoder, batches())
    assert encoder.training


def test_extract_features_bad_batches() -> None:
    encoder = _Encoder()
    with pytest.raises(ValueError, match="batches must yield at least one batch"):
        extract_features(encoder, [])
    with pytest.raises(TypeError, match="batches must yield image tensors"):
        extract_features(encoder, [{"image": torch.randn(2, 3, 2, 2)}])
    with pytest.raises(ValueError, match="batches must all carry labels or all not"):
        extract_features(encoder, [(torch.randn(2, 3, 2, 2), torch.zeros(2)), torch.randn(2, 3, 2, 2)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    query, _, bank, bank_labels = _data(num_bank=2000)
    feature, feature_bank = _lightly_inputs(query, bank)
    cpu = knn_predict(feature, feature_bank, bank_labels, 10, knn_k=50)
    cuda = knn_predict(feature.cuda(), feature_bank.cuda(), bank_labels.cuda(), 10, knn_k=50)
    assert (cuda[:, 0].cpu() == cpu[:, 0]).float().mean() > 0.97  # TF32 / summation order may flip near-ties


def test_extract_features_bound_method_uses_eval_mode_and_a_single_tensor_is_chunked() -> None:
    encoder = _Encoder().train()
    running_mean = encoder.net[2].running_mean.clone()
    images = torch.randn(10, 3, 2, 2)
    features, labels = extract_features(encoder.forward, images, batch_size=3)
    assert labels is None and encoder.training
    torch.testing.assert_close(encoder.net[2].running_mean, running_mean)  # BN statistics untouched
    encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(features, encoder(images))
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(encoder, images, batch_size=0)
