"""Class-balanced batches for metric-learning losses: P classes x K samples each."""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DistributedSampler

from lightly_siamese_ext._validation import check_positive_int, check_rank_sampler
from lightly_siamese_ext.data._lightning import record_init_arguments
from lightly_siamese_ext.data._sharding import LazyDistributedSampler
from lightly_siamese_ext.data.targets import ClassIndex, as_labels

__all__ = ["PKSampler"]


def draw_chunks(
    members: Tensor, group_sizes: Tensor, chunk: int, chunks_needed: Tensor, generator: torch.Generator
) -> Tensor:
    """``chunks_needed[g]`` chunks of ``chunk`` members from each group ``g``, without a loop over groups.

    ``members`` lists each group's members contiguously, group after group. A group
    is consumed in passes, each a fresh shuffle of its members cut to a multiple of
    ``chunk``, so a chunk never straddles two passes and holds distinct members when
    the group has at least ``chunk`` of them. A smaller group fills its chunks by
    cycling through reshuffled copies (sampling with replacement). Work and memory
    are O(total drawn + number of members).

    Returns:
        (sum(chunks_needed), chunk) long tensor: group 0's chunks first, in draw order.
    """
    group_sizes, chunks_needed = group_sizes.long(), chunks_needed.long()
    num_groups = len(group_sizes)
    pass_length = torch.where(group_sizes >= chunk, group_sizes // chunk * chunk, group_sizes)
    passes = torch.where(chunks_needed > 0, (chunks_needed * chunk + pass_length - 1) // pass_length, 0)
    group_start = torch.cumsum(group_sizes, 0) - group_sizes

    # One block per pass, holding all of its group's members, shuffled inside the block.
    pass_group = torch.repeat_interleave(torch.arange(num_groups), passes)
    block_sizes = group_sizes[pass_group]
    block_of = torch.repeat_interleave(torch.arange(len(pass_group)), block_sizes)
    position = torch.arange(len(block_of)) - (torch.cumsum(block_sizes, 0) - block_sizes)[block_of]
    shuffle = torch.argsort(block_of.double() + torch.rand(len(block_of), generator=generator, dtype=torch.float64))
    shuffled = members[group_start[pass_group[block_of]] + position][shuffle]
    stream = shuffled[position < pass_length[pass_group[block_of]]]  # each group's passes, back to back

    stream_start = torch.cumsum(passes * pass_length, 0) - passes * pass_length
    chunk_group = torch.repeat_interleave(torch.arange(num_groups), chunks_needed)
    chunk_number = torch.arange(len(chunk_group)) - (torch.cumsum(chunks_needed, 0) - chunks_needed)[chunk_group]
    first = stream_start[chunk_group] + chunk_number * chunk
    return stream[first.unsqueeze(1) + torch.arange(chunk)]


class PKSampler(BatchSampler):
    """Batch sampler: every batch holds P distinct classes with K samples each.

    Pass it as ``DataLoader(dataset, batch_sampler=PKSampler(labels, p, k))``; it works with the default
    PyTorch Lightning ``Trainer`` under DDP too (see ``sampler``).

    Classes are drawn in passes over a shuffled class list, so over an epoch every
    class appears (almost) equally often; a class's samples are drawn in passes over
    its shuffled samples, so none repeats before all have been used. A class with
    fewer than K samples fills its K slots by cycling through reshuffled copies of
    its samples, i.e. with replacement.

    Under DDP every rank draws the same global sequence of batches from
    ``seed + epoch`` and takes every ``num_replicas``-th one from ``rank`` on: the
    ranks' batches are disjoint and each rank yields the same number of them. The
    rank and world size are read when an epoch starts (and by ``len()``), not at
    construction, so a sampler built before ``init_process_group`` shards too.

    Args:
        labels: (N,) class label of every item of the dataset (see ``read_targets``).
        p: classes per batch.
        k: samples per class per batch.
        seed: batches of epoch ``e`` are drawn from ``seed + e``.
        num_replicas, rank: as in ``DistributedSampler``; default to
            ``lightly.utils.dist.world_size()`` and ``rank()`` when used.
        batches_per_epoch: batches per rank and epoch; default
            ``max(1, N // (P * K * num_replicas))``, about one pass over the data.
        sampler: a ``DistributedSampler`` over the same N items that tells this
            sampler its rank, world size and epoch; its own order is not used. It
            is what Lightning passes when it re-creates the batch sampler around
            the DistributedSampler it injects (``use_distributed_sampler=True``):
            the batches are then the same as with ``use_distributed_sampler=False``.
            Default: a lazily resolved one built from ``num_replicas`` and ``rank``.
    """

    def __init__(
        self,
        labels: Union[Tensor, Sequence[int], np.ndarray],
        p: int,
        k: int,
        seed: int = 0,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        batches_per_epoch: Optional[int] = None,
        sampler: Optional[DistributedSampler] = None,
    ) -> None:
        arguments = dict(labels=labels, p=p, k=k, seed=seed, num_replicas=num_replicas, rank=rank,
                         batches_per_epoch=batches_per_epoch, sampler=sampler)
        self.p = check_positive_int(p, "p")
        self.k = check_positive_int(k, "k")
        self.index = ClassIndex(as_labels(labels, "labels").cpu())
        if self.index.num_classes < self.p:
            raise ValueError(f"p={self.p} classes per batch, but the labels hold only {self.index.num_classes} classes")
        if self.p * self.k > len(self.index):
            raise ValueError(
                f"a batch of p x k = {self.p} x {self.k} = {self.p * self.k} samples is larger than the data "
                f"({len(self.index)} samples)"
            )
        self.seed = int(seed)
        if sampler is None:
            # Only its rank, world size and epoch are used: no shuffling of its own.
            sampler = LazyDistributedSampler(range(len(self.index)), num_replicas, rank, shuffle=False, seed=self.seed)
        else:
            check_rank_sampler(sampler, len(self.index), num_replicas, rank)
        super().__init__(sampler, batch_size=self.p * self.k, drop_last=True)
        self._batches_per_epoch = None if batches_per_epoch is None else check_positive_int(
            batches_per_epoch, "batches_per_epoch"
        )
        record_init_arguments(self, arguments)

    @property
    def num_replicas(self) -> int:
        return self.sampler.num_replicas  # type: ignore[attr-defined]

    @property
    def rank(self) -> int:
        return self.sampler.rank  # type: ignore[attr-defined]

    @property
    def epoch(self) -> int:
        return self.sampler.epoch  # type: ignore[attr-defined]

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration draw the batches of ``epoch``. (Lightning calls the ``set_epoch`` of
        ``batch_sampler.sampler``, which is where the epoch is kept.)"""
        self.sampler.set_epoch(int(epoch))  # type: ignore[attr-defined]

    @property
    def batches_per_epoch(self) -> int:
        """Batches per rank and epoch."""
        if self._batches_per_epoch is not None:
            return self._batches_per_epoch
        return max(1, len(self.index) // (self.p * self.k * self.num_replicas))

    def __len__(self) -> int:
        return self.batches_per_epoch

    def global_batches(self) -> Tensor:
        """All ranks' batches of this epoch, (batches_per_epoch * num_replicas, P * K) item indices."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        num_batches = self.batches_per_epoch * self.num_replicas
        index = self.index
        classes = draw_chunks(
            torch.arange(index.num_classes),
            torch.tensor([index.num_classes]),
            self.p,
            torch.tensor([num_batches]),
            generator,
        ).flatten()  # (num_batches * P,) class positions, P distinct ones per batch
        uses = torch.bincount(classes, minlength=index.num_classes)
        chunks = draw_chunks(index.order, index.counts, self.k, uses, generator)  # grouped by class
        # The j-th slot (in batch order) that asks for class c takes class c's j-th chunk.
        by_class = torch.argsort(classes, stable=True)
        chunk_of_slot = torch.empty_like(classes)
        chunk_of_slot[by_class] = torch.arange(len(classes))
        return chunks[chunk_of_slot].view(num_batches, self.p * self.k)

    def __iter__(self) -> Iterator[List[int]]:
        num_replicas, rank = self.num_replicas, self.rank
        batches = self.global_batches()[rank::num_replicas]
        for batch in batches.tolist():
            yield batch
