from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, TensorDataset

from fake_distributed import fake_world
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
    with pytest.raises(TypeError, match="labels must hold integer class ids, got dtype torch.float32"):
        PKSampler(torch.rand(48), p=2, k=2)  # as the losses and the evaluation refuse float labels
    with pytest.raises(TypeError, match="labels must be numbers"):
        PKSampler(["cat", "dog"] * 24, p=2, k=2)


def test_rank_and_world_size_are_read_when_an_epoch_starts_not_when_built(monkeypatch) -> None:
    sampler = PKSampler(LABELS, p=3, k=4, seed=5)  # built before the process group exists: a world of one
    assert len(sampler) == 4
    for rank in range(2):
        fake_world(monkeypatch, 2, rank)
        explicit = PKSampler(LABELS, p=3, k=4, seed=5, num_replicas=2, rank=rank)
        assert len(sampler) == len(explicit) == 2 and sampler.rank == rank
        assert list(sampler) == list(explicit)
        sampler.set_epoch(3)
        explicit.set_epoch(3)
        assert list(sampler) == list(explicit)
        sampler.set_epoch(0)


def test_it_is_a_batch_sampler_keeping_its_epoch_where_lightning_sets_it() -> None:
    sampler = PKSampler(LABELS, p=3, k=4, num_replicas=1, rank=0)
    assert isinstance(sampler, BatchSampler) and sampler.batch_size == 12 and sampler.drop_last
    epoch_0 = list(sampler)
    sampler.sampler.set_epoch(1)  # Lightning calls set_epoch on batch_sampler.sampler, not on the batch sampler
    assert sampler.epoch == 1 and list(sampler) != epoch_0
    sampler.set_epoch(0)
    assert sampler.sampler.epoch == 0 and list(sampler) == epoch_0


@pytest.mark.parametrize("inside_hook", [False, True], ids=["built_at_module_level", "built_in_a_dataloader_hook"])
def test_lightning_re_creates_it_around_its_distributed_sampler(inside_hook: bool) -> None:
    """What Trainer(use_distributed_sampler=True) does to a DataLoader under DDP: it injects a DistributedSampler
    and re-creates the batch sampler around it. The batches stay PKSampler's, sharded by the injected rank."""
    pl_data = pytest.importorskip("pytorch_lightning.utilities.data", reason="needs pytorch-lightning 2.x")
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from pytorch_lightning.trainer.states import RunningStage

    data = TensorDataset(torch.arange(48), LABELS)
    if inside_hook:  # Lightning records the arguments itself while it calls train_dataloader()
        with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
            loader = DataLoader(data, batch_sampler=PKSampler(LABELS, p=3, k=4, seed=5))
    else:
        loader = DataLoader(data, batch_sampler=PKSampler(LABELS, p=3, k=4, seed=5))
    for rank in range(2):
        injected = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=0)
        recreated = pl_data._update_dataloader(loader, injected, mode=RunningStage.TRAINING)
        assert isinstance(recreated.batch_sampler, PKSampler) and recreated.batch_sampler.sampler is injected
        explicit = PKSampler(LABELS, p=3, k=4, seed=5, num_replicas=2, rank=rank)
        assert [index.tolist() for index, _ in recreated] == list(explicit)
        injected.set_epoch(2)
        explicit.set_epoch(2)
        assert [index.tolist() for index, _ in recreated] == list(explicit)


def test_a_sampler_that_cannot_tell_the_rank_is_a_clear_error() -> None:
    data = TensorDataset(torch.arange(48))
    with pytest.raises(TypeError, match="sampler must be a torch.utils.data.DistributedSampler.*RandomSampler"):
        PKSampler(LABELS, p=2, k=2, sampler=RandomSampler(data))
    with pytest.raises(ValueError, match="num_replicas and rank must be None when a sampler is given"):
        PKSampler(LABELS, p=2, k=2, num_replicas=2, rank=0, sampler=DistributedSampler(data, 2, 0))
    with pytest.raises(ValueError, match="sampler must cover the 48 labelled items.*over 40 items"):
        PKSampler(LABELS, p=2, k=2, sampler=DistributedSampler(TensorDataset(torch.arange(40)), 2, 0))
