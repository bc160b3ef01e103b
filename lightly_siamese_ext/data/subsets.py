"""Parts of a dataset a recipe trains or evaluates on: a seeded random subset, or the first images of every class."""

from __future__ import annotations

import torch
from torch import Tensor

from lightly_siamese_ext._validation import check_int, check_positive_int
from lightly_siamese_ext.data.arrays import ImageArrays
from lightly_siamese_ext.data.sources import subset
from lightly_siamese_ext.data.targets import ClassIndex

__all__ = ["first_per_class", "random_subset", "random_subset_indices"]


def random_subset(arrays: ImageArrays, size: int, seed: int, name: str = "size") -> ImageArrays:
    """``size`` images drawn at random without replacement (from ``seed``), kept in dataset order.

    Random rather than the first ``size``: datasets are often sorted by class. ``name`` is what error messages call
    ``size`` (e.g. a command-line flag).
    """
    return subset(arrays, random_subset_indices(len(arrays.labels), size, seed, name))


def random_subset_indices(total: int, size: int, seed: int, name: str = "size") -> Tensor:
    """The (size,) sorted indices :func:`random_subset` keeps of ``total`` images: the same draw for any dataset of
    that length (e.g. ``StreamingImageDataset.subset``)."""
    check_int(size, name, 1, total)  # at most the number of images
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return order[:size].sort().values


def first_per_class(arrays: ImageArrays, count: int, name: str = "count") -> ImageArrays:
    """The first ``count`` images (in dataset order) of every class; all of a class's images when it has fewer.

    ``name`` is what error messages call ``count``.
    """
    check_positive_int(count, name)
    keep = ClassIndex(arrays.labels.cpu()).rank_in_class < count
    return subset(arrays, keep.nonzero().squeeze(1))
