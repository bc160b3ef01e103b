"""Class labels of a dataset, read without decoding its images where the dataset allows it."""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Subset

from lightly_siamese_ext._validation import check_labels

__all__ = ["ClassIndex", "as_labels", "read_targets"]

logger = logging.getLogger(__name__)

# Attributes under which datasets keep their labels: torchvision (targets; labels for SVHN, STL10).
_TARGET_ATTRIBUTES = ("targets", "labels")


def read_targets(dataset: Dataset) -> Tensor:
    """The class label of every item of ``dataset``, as a (N,) long tensor.

    Reads ``dataset.targets`` / ``dataset.labels`` (torchvision datasets), looks
    through ``Subset``, ``ConcatDataset`` and Lightly's ``LightlyDataset`` (its
    ``.dataset``), and only as a last resort loads every item (``dataset[i][1]``),
    which decodes every image: a warning says so.
    """
    if isinstance(dataset, Subset):
        return read_targets(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    if isinstance(dataset, ConcatDataset):
        return torch.cat([read_targets(part) for part in dataset.datasets])
    for attribute in _TARGET_ATTRIBUTES:
        targets = getattr(dataset, attribute, None)
        if targets is not None and _is_label_sequence(targets, len(dataset)):  # type: ignore[arg-type]
            return as_labels(targets, f"{type(dataset).__name__}.{attribute}")
    inner = getattr(dataset, "dataset", None)  # LightlyDataset and similar wrappers
    if isinstance(inner, Dataset) and len(inner) == len(dataset):  # type: ignore[arg-type]
        return read_targets(inner)
    logger.warning(
        "%s exposes no targets/labels attribute: loading all %d items to read their labels (decodes every image)",
        type(dataset).__name__,
        len(dataset),  # type: ignore[arg-type]
    )
    return as_labels([int(dataset[i][1]) for i in range(len(dataset))], "dataset targets")  # type: ignore[arg-type]


def _is_label_sequence(value: Any, length: int) -> bool:
    return isinstance(value, (Sequence, np.ndarray, Tensor)) and len(value) == length


def as_labels(values: Any, name: str, length: Optional[int] = None) -> Tensor:
    """``values`` (tensor, array or sequence of ints) as (N,) int64 class labels, checked as the losses and the
    evaluation check theirs (:func:`check_labels`): ``length`` of them (one per image) when given."""
    return check_labels(_as_tensor(values, name), name, length, length_of="image")


def _as_tensor(values: Any, name: str) -> Tensor:
    if isinstance(values, Tensor):
        return values
    array = np.asarray(values)
    if array.dtype.kind not in "biufc":  # strings, objects, dates: no class ids
        raise TypeError(f"{name} must be numbers (integer class ids), got an array of dtype {array.dtype}")
    return torch.as_tensor(array)


class ClassIndex:
    """Items grouped by class, built once in O(N log N): no N x N structure.

    Attributes:
        targets: (N,) label of every item.
        order: (N,) item indices sorted by class.
        classes: (C,) the distinct labels, ascending.
        starts, counts: (C,) where each class's block begins in ``order``, and its size.
        class_of: (N,) position of each item's class in ``classes``.
    """

    def __init__(self, targets: Tensor) -> None:
        if targets.ndim != 1 or targets.numel() == 0:
            raise ValueError(f"targets must be a non-empty 1-D tensor of labels, got shape {tuple(targets.shape)}")
        self.targets = targets.long()
        self.order = torch.argsort(self.targets, stable=True)
        self.classes, self.class_of, self.counts = torch.unique(self.targets, return_inverse=True, return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        # Position of each item inside its class block.
        rank = torch.empty_like(self.order)
        rank[self.order] = torch.arange(len(self.order))
        self.rank_in_class = rank - self.starts[self.class_of]

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def other_positive(self, anchors: Tensor, generator: torch.Generator) -> Tensor:
        """For each anchor, a uniformly drawn other item of its class (classes need >= 2 items)."""
        cls = self.class_of[anchors]
        uniform = torch.rand(len(anchors), generator=generator, dtype=torch.float64)
        draw = (uniform * (self.counts[cls] - 1)).long()
        draw += draw >= self.rank_in_class[anchors]  # skip the anchor itself
        return self.order[self.starts[cls] + draw]

    def negative(self, anchors: Tensor, generator: torch.Generator) -> Tensor:
        """For each anchor, a uniformly drawn item of any other class (needs >= 2 classes)."""
        cls = self.class_of[anchors]
        uniform = torch.rand(len(anchors), generator=generator, dtype=torch.float64)
        draw = (uniform * (len(self) - self.counts[cls])).long()
        draw += (draw >= self.starts[cls]) * self.counts[cls]  # jump over the anchor's class block
        return self.order[draw]
