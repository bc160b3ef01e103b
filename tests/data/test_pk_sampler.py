from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightly_siamese_ext.data import PKSampler

# 6 classes x 8 samples, shuffled so that class blocks are not contiguous in the index space.
LABELS = torch.arange(6).repeat_interleave(8)[torch.randperm(48, generator=torch.Generator().manual_seed(0))]


def check_pk_structure(batch, labels, p: int, k: int, distinct: bool = True) -> None:
    counts = Counter(labels[batch].tolist())
    assert len(batch) == p * k and len(counts) == p and set(counts.values()) == {k}
    if distinct:
        assert len(set(batch)) == len(batch)


def test_batches_hold_p_classes_with_k_distinct_samples_and_len_is_exact() -> None:
    sampler = PKSampler(LABELS, p=3, k=4, num_replicas=1, rank=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 48 // 12
    for batch in batches:
        check_pk_structure(batch, LABELS, 3, 4)
    # 4 batches x 3 classes = 2 passes over the 6 classes: every sample used exactly once.
    assert sorted(i for batch in batches for i in batch) == list(range(48))


def test_classes_are_balanced_over_an_epoch() -> None:
    labels = torch.arange(10).repeat_interleave(30)
    sampler = PKSampler(labels, p=4, k=2, num_replicas=1, rank=0, batches_per_epoch=50)
    uses = Counter(label for batch in sampler for label in set(labels[batch].tolist()))
    # Passes of 8 of the 10 classes: after 25 passes each class has 20 +- 5 uses.
    assert sum(uses.values()) == 200 and max(uses.values()) - min(uses.values()) <= 10


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_get_disjoint_batches_of_the_same_permutation(world_size: int) -> None:
    samplers = [PKSampler(LABELS, p=3, k=4, seed=5, num_replicas=world_size, rank=r) for r in range(world_size)]
    per_rank = [list(s) for s in samplers]
    assert all(len(batches) == len(s) == max(1, 48 // (12 * world_size)) for batches, s in zip(per_rank, samplers))
    global_batches = samplers[0].global_batches().tolist()
    for rank, batches in enumerate(per_rank):
        assert batches == global_batches[rank::world_size]
        for batch in batches:
            check_pk_structure(batch, LABELS, 3, 4)
    used = [i for batches in per_rank for batch in batches for i in batch]
    assert len(used) == len(set(used))  # no sample on two ranks


def test_deterministic_per_seed_and_epoch() -> None:
    def batches(seed: int, epoch: int):
        sampler = PKSampler(LABELS, p=2, k=3, seed=seed, num_replicas=1, rank=0)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert batches(0, 0) == batches(0, 0)
    assert batches(0, 0) != batches(0, 1)
    assert batches(0, 0) != batches(1, 0)


def test_small_classes_are_sampled_with_replacement_evenly() -> None:
    labels = torch.tensor([0, 0] + [1] * 10 + [2] * 10)
    sampler = PKSampler(labels, p=3, k=4, num_replicas=1, rank=0, batches_per_epoch=3)
    for batch in sampler:
        check_pk_structure(batch, labels, 3, 4, distinct=False)
        small = Counter(i for i in batch if labels[i] == 0)
        assert small == Counter({0: 2, 1: 2})  # cycles through both samples
        assert len({i for i in batch if labels[i] != 0}) == 8  # the larger classes stay distinct


def test_works_as_a_dataloader_batch_sampler() -> None:
    data = TensorDataset(torch.arange(48), LABELS)
    loader = DataLoader(data, batch_sampler=PKSampler(LABELS, p=2, k=4, num_replicas=1, rank=0))
    for index, labels in loader:
        assert torch.equal(labels, LABELS[index]) and len(labels.unique()) == 2


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="p=7 classes per batch.*6 classes"):
        PKSampler(LABELS, p=7, k=1)
    with pytest.raises(ValueError, match="larger than the data"):
        PKSampler(LABELS, p=6, k=9)
    with pytest.raises(ValueError, match="k must be a positive int"):
        PKSampler(LABELS, p=2, k=0)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(LABELS, p=2, k=2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="labels"):
        PKSampler(torch.rand(48), p=2, k=2)
