import pytest
import torch
from _loss_testing import as_set, distance_table, normalised_batch, triplets

from lightly_siamese_ext.distances import pairwise_distances
from lightly_siamese_ext.losses import mine_batch_all, mine_batch_hard, mine_semi_hard, mining


def _batch(batch_size=12, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch_size,), generator=generator)
    return x, labels, pairwise_distances(x)


def test_batch_hard_returns_the_farthest_positive_and_closest_negative() -> None:
    x, labels, distances = _batch()
    anchor, positive, negative = mine_batch_hard(distances, labels)
    assert anchor.dtype == positive.dtype == negative.dtype == torch.long
    expected = triplets(labels, distance_table(x, "euclidean"), "batch_hard", 0)
    assert as_set((anchor, positive, negative)) == set(expected)
    assert torch.equal(anchor, anchor.sort().values)


def test_batch_hard_skips_anchors_without_a_positive_or_a_negative() -> None:
    distances = torch.rand(4, 4)
    anchor, _, _ = mine_batch_hard(distances, torch.tensor([0, 0, 1, 2]))
    assert anchor.tolist() == [0, 1]
    assert all(t.numel() == 0 for t in mine_batch_hard(distances, torch.zeros(4, dtype=torch.long)))


def test_semi_hard_and_batch_all_return_exactly_the_defined_triplets() -> None:
    x, labels, distances = _batch(seed=1)
    table = distance_table(x, "euclidean")
    semi = mine_semi_hard(distances, labels, margin=0.7)
    every = mine_batch_all(labels)
    assert as_set(semi) == set(triplets(labels, table, "semi_hard", 0.7))
    assert list(zip(*(t.tolist() for t in every))) == triplets(labels, table, "batch_all", 0.0)  # sorted too
    assert len(semi[0]) > 0


def test_chunked_enumeration_gives_the_same_triplets(monkeypatch) -> None:
    _, labels, distances = _batch(batch_size=20, seed=2)
    expected_all, expected_semi = mine_batch_all(labels), mine_semi_hard(distances, labels, 0.7)
    monkeypatch.setattr(mining, "CHUNK_ELEMENTS", 20)  # chunks of B / 2 = 10 positive pairs
    chunked = (mine_batch_all(labels), mine_semi_hard(distances, labels, 0.7))
    for got, expected in zip(chunked, (expected_all, expected_semi)):
        assert all(torch.equal(g, e) for g, e in zip(got, expected))


def test_no_triplets_gives_empty_index_tensors() -> None:
    for labels in (torch.arange(5), torch.zeros(5, dtype=torch.long)):
        for found in (mine_batch_all(labels), mine_semi_hard(torch.rand(5, 5), labels, 0.5)):
            assert [t.shape for t in found] == [(0,)] * 3 and found[0].dtype == torch.long


def test_compact_labels_keeps_equality_for_large_ids() -> None:
    labels = torch.tensor([2**40 + 1, 5, 2**40, 5, 2**40 + 1])
    codes = mining.compact_labels(labels)
    assert codes.tolist() == [2, 0, 1, 0, 2]
    for equal in (True, False):
        assert mining.label_indicator(labels, torch.float32, equal).tolist() == [
            [float((a == b) == equal) for b in labels.tolist()] for a in labels.tolist()
        ]


@pytest.mark.parametrize(
    "labels",
    [
        torch.tensor([3, -1, 3, 7, -1, 3, 2**40]),
        torch.arange(4),
        torch.zeros(5, dtype=torch.long),
        torch.zeros(0, dtype=torch.long),
    ],
)
def test_positive_pairs_and_class_sizes_match_brute_force(labels) -> None:
    n = len(labels)
    anchor, positive = mining.positive_pairs(labels)
    pairs = list(zip(anchor.tolist(), positive.tolist()))
    expected = [(a, p) for a in range(n) for p in range(n) if a != p and labels[a] == labels[p]]
    assert sorted(pairs) == expected  # each pair exactly once
    assert mining.class_sizes(labels).tolist() == [int((labels == label).sum()) for label in labels]


pml_miners = pytest.importorskip("pytorch_metric_learning.miners")


def test_semi_hard_matches_pml_semihard_miner() -> None:
    x, labels = normalised_batch(batch_size=48, dim=8, seed=3)
    ours = as_set(mine_semi_hard(pairwise_distances(x), labels, 0.2))
    theirs = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")(x, labels)
    # PML's window is d(a,n) - d(a,p) in (0, margin]: the same up to ties at the upper edge, which cost 0.
    assert ours <= as_set(theirs) and len(as_set(theirs) - ours) <= 2 and len(ours) > 100


def test_bad_inputs_raise_value_errors_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"distances must be a square \(B, B\) matrix"):
        mine_batch_hard(torch.rand(3, 4), torch.arange(3))
    with pytest.raises(ValueError, match=r"labels must have one entry per row of distances \(3\), got 4"):
        mine_semi_hard(torch.rand(3, 3), torch.arange(4), 0.2)
    with pytest.raises(ValueError, match="margin"):
        mine_semi_hard(torch.rand(3, 3), torch.arange(3), -0.2)
    with pytest.raises(ValueError, match="labels.*1-D"):
        mine_batch_all(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="margin must be > 0 for semi_hard"):  # an empty window, not 0 triplets
        mine_semi_hard(torch.rand(3, 3), torch.arange(3), 0.0)
    with_inf = torch.rand(4, 4)
    with_inf[0, 1] = float("inf")
    with pytest.raises(ValueError, match="distances must be finite"):  # not a silently empty batch
        mine_batch_hard(with_inf, torch.tensor([0, 0, 1, 1]))
