import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lightly_siamese_ext.evaluation import linear_probe


def _blobs(num: int, num_classes: int, dim: int, spread: float, seed: int, offset: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    labels = torch.arange(num) % num_classes
    # A large shared offset and scale: the probe must standardise to train well.
    features = offset + 50.0 * (centers[labels] + spread * torch.randn(num, dim, generator=g))
    return features, labels


def test_separable_data_is_learned_perfectly() -> None:
    x, y = _blobs(400, 6, 16, spread=0.3, seed=0, offset=100.0)
    xt, yt = _blobs(120, 6, 16, spread=0.3, seed=1, offset=100.0)
    result = linear_probe(x, y, xt, yt, num_classes=6, epochs=5, batch_size=100)
    assert result["top1"] == 1.0 and result["top5"] == 1.0
    assert result["train_loss"] < 0.3  # chance is ln 6 = 1.8


def test_classifier_applies_to_raw_features_and_holds_train_statistics() -> None:
    x, y = _blobs(300, 3, 8, spread=1.0, seed=0, offset=5.0)
    xt, yt = _blobs(90, 3, 8, spread=1.0, seed=1, offset=5.0)
    result = linear_probe(x, y, xt, yt, num_classes=3, epochs=5)
    assert set(result) == {"top1", "train_loss", "classifier"}  # no top5 among 3 classes
    classifier = result["classifier"]
    assert not classifier.training
    torch.testing.assert_close(classifier[0].running_mean, x.mean(dim=0))
    torch.testing.assert_close(classifier[0].running_var, x.var(dim=0, unbiased=False))
    with torch.no_grad():
        accuracy = (classifier(xt).argmax(dim=1) == yt).float().mean().item()
    assert accuracy == pytest.approx(result["top1"])


def test_deterministic_for_a_seed_and_global_rng_untouched() -> None:
    x, y = _blobs(200, 4, 8, spread=1.5, seed=0)
    xt, yt = _blobs(80, 4, 8, spread=1.5, seed=1)
    state = torch.random.get_rng_state()
    a = linear_probe(x, y, xt, yt, num_classes=4, epochs=2, batch_size=64, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = linear_probe(x, y, xt, yt, num_classes=4, epochs=2, batch_size=64, seed=7)
    c = linear_probe(x, y, xt, yt, num_classes=4, epochs=2, batch_size=64, seed=8)
    assert torch.equal(a["classifier"][1].weight, b["classifier"][1].weight)
    assert a["top1"] == b["top1"] and a["train_loss"] == b["train_loss"]
    assert not torch.equal(a["classifier"][1].weight, c["classifier"][1].weight)


def test_close_to_sklearn_logistic_regression() -> None:
    x, y = _blobs(300, 4, 10, spread=3.0, seed=0)
    xt, yt = _blobs(400, 4, 10, spread=3.0, seed=1)
    mean, std = x.mean(dim=0), x.std(dim=0)
    oracle = LogisticRegression(max_iter=2000).fit(((x - mean) / std).numpy(), y.numpy())
    expected = float((oracle.predict(((xt - mean) / std).numpy()) == yt.numpy()).mean())
    assert 0.5 < expected < 0.98  # a problem with errors to get right, not a trivial one
    got = linear_probe(x, y, xt, yt, num_classes=4, epochs=15, batch_size=100)["top1"]
    assert abs(got - expected) < 0.03


def test_lr_is_scaled_by_batch_size() -> None:
    # Same lr * batch / 256 and one step per epoch on the whole set: identical training for batch 256 at lr 0.1
    # and batch 512 at lr 0.05 (both take every sample in one batch since N = 200).
    x, y = _blobs(200, 4, 8, spread=1.5, seed=0)
    a = linear_probe(x, y, x, y, num_classes=4, epochs=3, batch_size=256, lr=0.1)
    b = linear_probe(x, y, x, y, num_classes=4, epochs=3, batch_size=512, lr=0.05)
    c = linear_probe(x, y, x, y, num_classes=4, epochs=3, batch_size=512, lr=0.1)
    torch.testing.assert_close(a["classifier"][1].weight, b["classifier"][1].weight)
    assert not torch.allclose(a["classifier"][1].weight, c["classifier"][1].weight)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(train_labels=torch.zeros(9, dtype=torch.long)), ValueError, "train_labels must have one entry"),
        (dict(test_features=torch.randn(5, 3)), ValueError, "must have the same feature dimension"),
        (dict(train_features=torch.ones(10, 4, dtype=torch.long)), TypeError, "train_features must be a floating"),
        (dict(test_labels=torch.zeros(5)), TypeError, "test_labels must hold integer class ids"),
        (dict(test_labels=torch.full((5,), 3)), ValueError, r"must lie in \[0, 3\)"),
        (dict(num_classes=0), ValueError, "num_classes must be a positive int"),
        (dict(epochs=0), ValueError, "epochs must be a positive int"),
        (dict(lr=-1.0), ValueError, "lr must be a finite number > 0"),
        (dict(lr=float("inf")), ValueError, "lr must be a finite number > 0"),
        (dict(weight_decay=-1.0), ValueError, "weight_decay must be a finite number >= 0"),
        (dict(topk=5), TypeError, "topk must be a non-empty sequence"),
    ],
)
def test_bad_input(change: dict, error: type, match: str) -> None:
    kwargs = dict(
        train_features=torch.randn(10, 4),
        train_labels=torch.arange(10) % 3,
        test_features=torch.randn(5, 4),
        test_labels=torch.arange(5) % 3,
        num_classes=3,
        epochs=1,
    )
    kwargs.update(change)
    with pytest.raises(error, match=match):
        linear_probe(**kwargs)
