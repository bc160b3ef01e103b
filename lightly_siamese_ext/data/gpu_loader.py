"""A loader that keeps the whole dataset on the device and serves shuffled batches by indexing."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from lightly_siamese_ext._validation import check_positive_int
from lightly_siamese_ext.data._sharding import LazyDistributedSampler
from lightly_siamese_ext.data.arrays import PathLike, images_from_numpy
from lightly_siamese_ext.data.cifar10 import load_cifar10_folder
from lightly_siamese_ext.data.image_folder import load_image_folder
from lightly_siamese_ext.data.targets import as_labels

__all__ = ["GPUResidentLoader"]


class GPUResidentLoader:
    """Holds a dataset as one uint8 (N, C, H, W) tensor on ``device`` and yields (images, labels) batches.

    No workers, no decoding, no image copies after construction (only each epoch's
    index permutation goes to the device): a batch is an ``index_select`` on the
    device. CIFAR-10's 50,000 training images take 146 MiB. Pair it with
    :class:`~lightly_siamese_ext.transforms.BatchedSimSiamTransform` (``transform=``)
    to augment on the device as well.

    Shuffling and sharding are ``torch.utils.data.DistributedSampler``'s: the order of
    epoch ``e`` comes from ``seed + e`` (call ``set_epoch``), each of ``num_replicas``
    ranks gets a disjoint share of the same permutation. With ``drop_last`` the tail
    that does not fill a whole share (across ranks) or a whole batch is dropped;
    without it, shares are padded by repeating samples and the last batch may be
    smaller.

    Args:
        images: (N, C, H, W) uint8 tensor.
        labels: (N,) integer labels.
        batch_size: images per batch (per rank).
        device: where the data lives; default: ``images``' device.
        shuffle: draw a new order every epoch.
        drop_last: see above.
        seed: base seed of the order.
        num_replicas, rank: DDP sharding; default ``lightly.utils.dist.world_size()`` and ``rank()``, read when
            an epoch starts (and by ``len()``), so that a loader built before ``init_process_group`` shards too.
        transform: applied to each uint8 image batch, e.g. ``BatchedSimSiamTransform``.
        classes: class names, kept as ``self.classes`` (the builders fill it in).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Union[Tensor, Sequence[int], np.ndarray],
        batch_size: int,
        device: Optional[Union[torch.device, str]] = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        transform: Optional[Callable[[Tensor], Any]] = None,
        classes: Optional[List[str]] = None,
    ) -> None:
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (0..255), got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"images must be a non-empty 4-D tensor (N, C, H, W), got shape {tuple(images.shape)}")
        labels = as_labels(labels, "labels", length=images.shape[0])
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.classes = classes
        self.sampler = LazyDistributedSampler(
            range(len(self.images)),
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )

    @classmethod
    def from_numpy(
        cls,
        images: np.ndarray,
        labels: Union[np.ndarray, Sequence[int]],
        batch_size: int,
        layout: str = "NHWC",
        **kwargs: Any,
    ) -> "GPUResidentLoader":
        """From uint8 numpy images in ``layout`` "NHWC" (e.g. ``torchvision.datasets.CIFAR10(...).data``) or "NCHW"."""
        tensor, label_tensor = images_from_numpy(images, labels, layout)
        return cls(tensor, label_tensor, batch_size, **kwargs)

    @classmethod
    def from_image_folder(
        cls,
        root: PathLike,
        batch_size: int,
        cache_dir: Optional[PathLike] = None,
        num_threads: Optional[int] = None,
        **kwargs: Any,
    ) -> "GPUResidentLoader":
        """From an ImageFolder directory, decoded once (and cached as .npy under ``cache_dir`` if given)."""
        arrays = load_image_folder(root, cache_dir=cache_dir, num_threads=num_threads)
        return cls(arrays.images, arrays.labels, batch_size, classes=arrays.classes, **kwargs)

    @classmethod
    def from_cifar10_folder(
        cls, root: PathLike, batch_size: int, train: bool = True, **kwargs: Any
    ) -> "GPUResidentLoader":
        """From torchvision's CIFAR-10 python folder (``root`` holds ``cifar-10-batches-py``)."""
        arrays = load_cifar10_folder(root, train=train)
        return cls(arrays.images, arrays.labels, batch_size, classes=arrays.classes, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration use the order of ``epoch``."""
        self.sampler.set_epoch(epoch)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        return len(self.sampler)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[Tuple[Any, Tensor]]:
        order = torch.tensor(list(self.sampler), dtype=torch.long).to(self.device, non_blocking=True)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images.index_select(0, index)
            labels = self.labels.index_select(0, index)
            yield (self.transform(images) if self.transform is not None else images), labels
