"""Labelled pairs and triplets over any labelled dataset, in Lightly's (views, labels, filenames) convention."""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightly_siamese_ext._validation import check_probability
from lightly_siamese_ext.data.targets import ClassIndex, read_targets

__all__ = ["PairDataset", "TripletDataset"]


class _EpochResampled(Dataset):
    """Shared plumbing: the class index, per-epoch draws from ``seed + epoch``, item loading."""

    def __init__(self, dataset: Dataset, transform: Optional[Callable[[Any], Any]], seed: int) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset must be a map-style dataset (__getitem__, __len__), got {type(dataset).__name__}")
        self.dataset = dataset
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.index = ClassIndex(read_targets(dataset))
        self._drawn: Optional[Tuple[int, Tuple[Tensor, ...]]] = None

    def set_epoch(self, epoch: int) -> None:
        """Draws new partners for ``epoch`` (call it before each epoch, as with DistributedSampler).

        DataLoader workers get the new epoch when they are started: with
        ``persistent_workers=True`` they keep the epoch they started with.
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def _draws(self) -> Tuple[Tensor, ...]:
        if self._drawn is None or self._drawn[0] != self.epoch:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            self._drawn = (self.epoch, self._draw(generator))
        return self._drawn[1]

    def _draw(self, generator: torch.Generator) -> Tuple[Tensor, ...]:
        raise NotImplementedError

    def _load(self, index: int) -> Tuple[Any, str]:
        """The (transformed) image of item ``index`` and its name."""
        item = self.dataset[index]
        image = item[0]
        if len(item) > 2:
            name = str(item[2])  # LightlyDataset: (image, target, filename)
        else:
            samples = getattr(self.dataset, "samples", None)  # ImageFolder: (path, target) per item
            name = str(samples[index][0]) if samples is not None else str(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, name

    def _wrap_index(self, index: int) -> int:
        """``index`` in [0, len) (negative ones count from the end), or the IndexError a sequence raises."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} items")
        return index % len(self)

    def _require_two_per_class(self) -> None:
        single = self.index.counts < 2
        if single.any():
            label = int(self.index.classes[single.nonzero()[0, 0]])
            raise ValueError(
                f"every class needs at least 2 samples to draw a positive, but class {label} has 1 "
                f"({int(single.sum())} such classes)"
            )

    def _require_two_classes(self) -> None:
        if self.index.num_classes < 2:
            raise ValueError(
                f"negatives need at least 2 classes, got {self.index.num_classes} "
                f"(label {int(self.index.classes[0])})"
            )


class PairDataset(_EpochResampled):
    """Pairs ``(x0, x1)`` with ``y = 1`` for the same class and ``y = 0`` otherwise.

    Item ``i`` pairs sample ``i`` of ``dataset`` with a partner drawn for the epoch:
    exactly ``round(positive_fraction * N)`` items (chosen at random) get an other
    sample of their own class, the rest a sample of another class, uniformly. Labels
    are read once (``read_targets``: no image decoding for torchvision-style
    datasets) and grouped per class, so drawing an epoch is O(N).

    Returns ``((x0, x1), y, (name0, name1))``: Lightly's (views, label, filenames)
    convention, so ``default_collate`` and ``lightly.data.MultiViewCollate`` both
    batch it (names: the dataset's filename if it returns one, else the
    ImageFolder path, else the index).

    Args:
        dataset: map-style dataset returning ``(image, target)`` or ``(image, target, filename)``.
        positive_fraction: fraction of same-class pairs per epoch, in [0, 1].
        transform: applied to each of the two images.
        seed: the pairs of epoch ``e`` are drawn from ``seed + e``. Shuffle the batches with a different seed
            (e.g. a DataLoader generator seeded otherwise): with the same one, the shuffle can line up with the
            positive/negative choice and give batches of only same-class or only different-class pairs.
    """

    def __init__(
        self,
        dataset: Dataset,
        positive_fraction: float = 0.5,
        transform: Optional[Callable[[Any], Any]] = None,
        seed: int = 0,
    ) -> None:
        positive_fraction = check_probability(positive_fraction, "positive_fraction")
        super().__init__(dataset, transform, seed)
        self.positive_fraction = positive_fraction
        self.num_positives = round(self.positive_fraction * len(self))
        if self.num_positives > 0:
            self._require_two_per_class()
        if self.num_positives < len(self):
            self._require_two_classes()

    def _draw(self, generator: torch.Generator) -> Tuple[Tensor, ...]:
        anchors = torch.arange(len(self))
        is_positive = torch.zeros(len(self), dtype=torch.bool)
        is_positive[torch.randperm(len(self), generator=generator)[: self.num_positives]] = True
        partner = torch.empty(len(self), dtype=torch.long)
        if self.num_positives > 0:
            partner[is_positive] = self.index.other_positive(anchors[is_positive], generator)
        if self.num_positives < len(self):
            partner[~is_positive] = self.index.negative(anchors[~is_positive], generator)
        return partner, is_positive

    def partners(self) -> Tuple[Tensor, Tensor]:
        """This epoch's (partner index (N,), is-same-class (N,) bool) for every item."""
        partner, is_positive = self._draws()
        return partner, is_positive

    def __getitem__(self, index: int) -> Tuple[Tuple[Any, Any], int, Tuple[str, str]]:
        index = self._wrap_index(index)
        partner, is_positive = self._draws()
        x0, name0 = self._load(index)
        x1, name1 = self._load(int(partner[index]))
        return (x0, x1), int(is_positive[index]), (name0, name1)


class TripletDataset(_EpochResampled):
    """Triplets ``(anchor, positive, negative)``: item ``i`` anchors on sample ``i``.

    Per epoch, each anchor gets a uniformly drawn other sample of its class and a
    uniformly drawn sample of another class (O(N), no N x N structure). Every class
    needs at least 2 samples and there must be at least 2 classes.

    Returns ``((anchor, positive, negative), label, (name_a, name_p, name_n))`` with
    the anchor's class label: Lightly's (views, label, filenames) convention.

    Args:
        dataset: map-style dataset returning ``(image, target)`` or ``(image, target, filename)``.
        transform: applied to each of the three images.
        seed: the triplets of epoch ``e`` are drawn from ``seed + e``.
    """

    def __init__(
        self, dataset: Dataset, transform: Optional[Callable[[Any], Any]] = None, seed: int = 0
    ) -> None:
        super().__init__(dataset, transform, seed)
        self._require_two_per_class()
        self._require_two_classes()

    def _draw(self, generator: torch.Generator) -> Tuple[Tensor, ...]:
        anchors = torch.arange(len(self))
        return self.index.other_positive(anchors, generator), self.index.negative(anchors, generator)

    def triplets(self) -> Tuple[Tensor, Tensor]:
        """This epoch's (positive index (N,), negative index (N,)) for every anchor."""
        positive, negative = self._draws()
        return positive, negative

    def __getitem__(self, index: int) -> Tuple[Tuple[Any, Any, Any], int, Tuple[str, str, str]]:
        index = self._wrap_index(index)
        positive, negative = self._draws()
        anchor, name_a = self._load(index)
        pos, name_p = self._load(int(positive[index]))
        neg, name_n = self._load(int(negative[index]))
        return (anchor, pos, neg), int(self.index.targets[index]), (name_a, name_p, name_n)
