import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from lightly_siamese_ext.evaluation import n_way_one_shot_accuracy, pair_verification_auc, sample_one_shot_trials


@pytest.mark.parametrize("decimals", [None, 1, 0])  # no ties, some ties, heavy ties
def test_auc_against_sklearn(decimals) -> None:
    g = torch.Generator().manual_seed(0)
    same = torch.randint(0, 2, (300,), generator=g)
    distances = torch.rand(300, generator=g) * 3 - same.float()  # same pairs tend to be closer
    if decimals is not None:
        distances = distances.round(decimals=decimals)
    expected = roc_auc_score(same.numpy(), (-distances).numpy())
    assert 0.5 < expected < 1.0
    assert pair_verification_auc(distances, same) == pytest.approx(expected, abs=1e-12)
    assert pair_verification_auc(distances.double(), same.bool()) == pytest.approx(expected, abs=1e-12)


def test_same_may_be_bool_integer_or_floating_as_the_contrastive_targets() -> None:
    distances = torch.rand(20, generator=torch.Generator().manual_seed(3))
    same = torch.arange(20) % 3 == 0
    expected = pair_verification_auc(distances, same)
    assert pair_verification_auc(distances, same.long()) == expected == pair_verification_auc(distances, same.float())


def test_auc_extremes() -> None:
    same = torch.tensor([1, 1, 0, 0, 0])
    assert pair_verification_auc(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]), same) == 1.0
    assert pair_verification_auc(torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1]), same) == 0.0
    assert pair_verification_auc(torch.full((5,), 0.7), same) == 0.5


@pytest.mark.parametrize(
    "distances, same, error, match",
    [
        (torch.rand(4), torch.tensor([1, 1, 1, 1]), ValueError, "both kinds of pairs, got 4 same and 0 different"),
        (torch.rand(4), torch.tensor([0, 1, 2, 0]), ValueError, r"same must hold 1 \(similar pair\) or 0"),
        (torch.rand(4), torch.tensor([0.0, 1.0, 0.5, 0.0]), ValueError, r"same must hold 1 \(similar pair\) or 0"),
        (torch.tensor([0.1, float("nan"), 0.2, 0.3]), torch.tensor([0, 1, 1, 0]), ValueError, "must be finite"),
        (torch.rand(4), torch.tensor([0, 1, 1]), ValueError, r"same must have shape \(4,\), got shape \(3,\)"),
        (torch.tensor([1, 2, 3]), torch.tensor([0, 1, 1]), TypeError, "distances must be a floating-point"),
        (torch.rand(3, 1), torch.tensor([0, 1, 1]), ValueError, "distances must be 1-D"),
        ([0.1, 0.2], torch.tensor([0, 1]), TypeError, r"distances must be a torch.Tensor of shape \(P,\), got list"),
    ],
)
def test_auc_bad_input(distances, same, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        pair_verification_auc(distances, same)


def _labels() -> torch.Tensor:
    # 7 classes with 1 to 6 samples (class 3 has a single sample: never in a trial), shuffled.
    labels = torch.cat([torch.full((size,), c) for c, size in enumerate([2, 6, 3, 1, 4, 5, 2])])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


def test_sampled_trials_follow_the_protocol() -> None:
    labels = _labels()
    query, support = sample_one_shot_trials(labels, n_way=5, trials=400, generator=torch.Generator().manual_seed(1))
    assert query.shape == (400,) and support.shape == (400, 5) and query.dtype == support.dtype == torch.long
    support_labels = labels[support]
    assert torch.equal(support_labels[:, 0], labels[query])  # column 0 is the answer
    assert (support[:, 0] != query).all()  # a different sample than the query
    assert all(len(set(row.tolist())) == 5 for row in support_labels)  # distinct classes
    assert not (support_labels == 3).any() and not (labels[query] == 3).any()
    # Every eligible class and sample shows up (the sampler is not stuck on a subset).
    assert set(labels[query].tolist()) == {0, 1, 2, 4, 5, 6}
    eligible = [i for i in range(len(labels)) if labels[i] != 3]
    assert set(torch.cat([query, support.flatten()]).tolist()) == set(eligible)
    again = sample_one_shot_trials(labels, n_way=5, trials=400, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again[0], query) and torch.equal(again[1], support)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_one_shot_accuracy_against_brute_force_loop(distance: str) -> None:
    labels = _labels()
    embeddings = torch.randn(len(labels), 6, generator=torch.Generator().manual_seed(2)) + labels[:, None] * 0.3
    state = torch.random.get_rng_state()
    got = n_way_one_shot_accuracy(embeddings, labels, n_way=4, trials=300, seed=5, distance=distance)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    query, support = sample_one_shot_trials(labels, 4, 300, torch.Generator().manual_seed(5))
    correct = 0
    for q, row in zip(query.tolist(), support.tolist()):
        if distance == "cosine":
            dists = [1 - float(F.cosine_similarity(embeddings[q], embeddings[s], dim=0)) for s in row]
        else:
            dists = [float((embeddings[q] - embeddings[s]).norm()) for s in row]
        correct += int(min(range(4), key=lambda i: dists[i]) == 0)
    assert got == pytest.approx(correct / 300, abs=1e-12)
    assert 0.3 < got < 1.0


def test_one_shot_accuracy_extremes() -> None:
    labels = torch.arange(200) % 10
    g = torch.Generator().manual_seed(0)
    separated = torch.randn(10, 16, generator=g)[labels] * 10 + 0.01 * torch.randn(200, 16, generator=g)
    assert n_way_one_shot_accuracy(separated, labels, n_way=10, trials=200) == 1.0
    noise = torch.randn(200, 16, generator=g)
    assert n_way_one_shot_accuracy(noise, labels, n_way=5, trials=4000) == pytest.approx(0.2, abs=0.03)
    # Collapsed embeddings: every support ties; random tie-breaking is right 1 / n_way of the time.
    assert n_way_one_shot_accuracy(torch.ones(200, 16), labels, n_way=4, trials=50) == pytest.approx(0.25)


def test_generator_overrides_seed() -> None:
    labels = torch.arange(60) % 6
    embeddings = torch.randn(60, 4, generator=torch.Generator().manual_seed(0))
    a = n_way_one_shot_accuracy(embeddings, labels, n_way=3, trials=100, generator=torch.Generator().manual_seed(9))
    b = n_way_one_shot_accuracy(embeddings, labels, n_way=3, trials=100, seed=9)
    c = n_way_one_shot_accuracy(embeddings, labels, n_way=3, trials=100, seed=10)
    assert a == b and a != c


def test_one_shot_bad_input() -> None:
    labels = _labels()
    embeddings = torch.randn(len(labels), 4)
    with pytest.raises(ValueError, match=r"n_way must be at most the number of classes with >= 2 samples \(6\), got 7"):
        n_way_one_shot_accuracy(embeddings, labels, n_way=7)
    with pytest.raises(ValueError, match="n_way must be a positive int"):
        n_way_one_shot_accuracy(embeddings, labels, n_way=0)
    with pytest.raises(ValueError, match="trials must be a positive int"):
        n_way_one_shot_accuracy(embeddings, labels, trials=0)
    with pytest.raises(ValueError, match="labels must have one entry per row of embeddings"):
        n_way_one_shot_accuracy(embeddings, labels[:-1])
    with pytest.raises(TypeError, match="embeddings must be a floating-point"):
        n_way_one_shot_accuracy(embeddings.long(), labels)
    with pytest.raises(ValueError, match="distance must be one of"):
        n_way_one_shot_accuracy(embeddings, labels, distance="l1")
