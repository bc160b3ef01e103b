"""Images streamed to the training device: DataLoader workers decode and resize them to fixed-size uint8 tensors
(no per-sample augmentation), and whole batches are augmented where they train (``BatchedSimSiamTransform``).

The path for datasets too large to keep resident (an ImageFolder of ImageNet size): only the batches in flight are
in memory. :class:`StreamingImageDataset` wraps a torchvision ``ImageFolder``, a Lightly ``LightlyDataset``, any
dataset of ``(image, label, ...)`` items, or this package's in-memory :class:`~lightly_siamese_ext.data.ImageArrays`;
:func:`streaming_loader` batches it for one DDP rank; :func:`stream_train_test` is
:func:`~lightly_siamese_ext.data.load_train_test`'s split with an ImageFolder read from its files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import DatasetFolder
from torchvision.datasets.folder import default_loader
from torchvision.transforms.v2 import functional as TF

from lightly_siamese_ext._validation import check_int, check_positions, check_positive_int
from lightly_siamese_ext.data._decoding import as_rgb8, decode_listed, pillow_pixels
from lightly_siamese_ext.data._files import ListedImage, list_image_folder
from lightly_siamese_ext.data._sharding import LazyDistributedSampler
from lightly_siamese_ext.data.arrays import ImageArrays
from lightly_siamese_ext.data.sources import holdout_split, image_folder_layout, is_cifar10_folder, load_train_test
from lightly_siamese_ext.data.targets import read_targets

__all__ = ["StreamingImageDataset", "StreamingSplit", "stream_train_test", "streaming_loader"]

PathLike = Union[str, "os.PathLike[str]"]
#: One item: image (3, S, S) uint8, class label, index in the dataset (the sample's identity, in the place of
#: lightly's filename).
Item = Tuple[Tensor, int, int]


@dataclass(frozen=True)
class ListedFolder:
    """An ImageFolder listed by this package's rules (hidden entries, links and non-regular files: see
    :mod:`lightly_siamese_ext.data.image_folder`), its images decoded only when read: what
    :func:`stream_train_test` streams from."""

    classes: List[str]
    images: List[ListedImage]

    @classmethod
    def of(cls, root: PathLike) -> "ListedFolder":
        return cls(*list_image_folder(Path(root)))

    @property
    def targets(self) -> List[int]:
        return [image.label for image in self.images]

    def __len__(self) -> int:
        return len(self.images)


class StreamingImageDataset(Dataset):
    """``(image (3, S, S) uint8, label, index)`` for every image of ``source``, decoded when the item is read.

    ``source`` is one of:

    - a :class:`ListedFolder`, a torchvision ``ImageFolder`` / ``DatasetFolder`` or Lightly's ``LightlyDataset`` of
      a folder: with their default loader and no transform, the files are decoded here, as
      :func:`~lightly_siamese_ext.data.load_image_folder` decodes them (every mode to 8-bit RGB without clipping;
      with ``size``, JPEGs are decoded at the smallest power-of-two reduction that stays >= ``size``, which is what
      makes large images cheap); otherwise their own ``__getitem__`` is called;
    - any map-style dataset of ``(image, label, ...)`` items, the image a PIL image, a file path, an (H, W, 3) uint8
      array or a (3, H, W) uint8 tensor (a 1-channel image is repeated to RGB);
    - :class:`~lightly_siamese_ext.data.ImageArrays` (images (N, 3, H, W) uint8 in memory): no decoding.

    Args:
        source: see above.
        size: side S of the square output. None keeps each image's own size, which must then be the same for all
            (16 images spread over the dataset are compared here, from their file headers where there are files, and
            every item is checked against the first when read; a ValueError names the odd one). Otherwise an image
            that is not
            already S x S is resized so that its shorter side is S (antialiased bilinear, torchvision's
            ``Resize(S)``) and centre-cropped to S x S (``CenterCrop(S)``): random crops are then drawn from that
            central square.
        indices: the items of ``source`` this dataset serves (default: all), e.g. a training split.

    Attributes:
        labels: (N,) long, read without decoding where ``source`` keeps them (``targets``;
            :func:`~lightly_siamese_ext.data.read_targets`).
        classes: class names when ``source`` has them, else None.
        image_size: (H, W) of every item.
    """

    def __init__(self, source: Any, size: Optional[int] = None, indices: Optional[Tensor] = None) -> None:
        self.source = source
        self.size = None if size is None else check_positive_int(size, "size")
        arrays = source if isinstance(source, ImageArrays) else None
        if arrays is not None and (arrays.images.dtype != torch.uint8 or arrays.images.ndim != 4):
            raise ValueError(f"ImageArrays images must be uint8 (N, C, H, W), got {arrays.images.dtype} "
                             f"{tuple(arrays.images.shape)}")
        total = len(source.labels if arrays is not None else source)
        self.indices = torch.arange(total) if indices is None else check_positions(indices, "indices")
        if len(self.indices) == 0:
            raise ValueError("a StreamingImageDataset needs at least one image, got none")
        if int(self.indices.min()) < 0 or int(self.indices.max()) >= total:
            raise ValueError(f"indices must be in [0, {total}), got values from {int(self.indices.min())} to "
                             f"{int(self.indices.max())}")
        all_labels = arrays.labels if arrays is not None else read_targets(source)
        self.labels = all_labels[self.indices]
        self.classes: Optional[List[str]] = (list(arrays.classes) if arrays is not None
                                             else getattr(_folder_of(source) or source, "classes", None))
        self._files = _files_to_decode(source)
        self.image_size: Tuple[int, int] = (self.size, self.size) if self.size is not None else self._stored_size(0)
        if self.size is None and arrays is None:  # a folder of mixed sizes fails here, not in a worker mid-epoch
            for position in np.linspace(0, len(self) - 1, num=min(16, len(self))).round().astype(int).tolist():
                if self._stored_size(position) != self.image_size:
                    height, width = self._stored_size(position)
                    raise ValueError(f"images differ in size: image {position} is {width}x{height} (WxH), image 0 "
                                     f"is {self.image_size[1]}x{self.image_size[0]}: pass size= to resize them to "
                                     "one size")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Item:
        image, label = self._read(int(self.indices[index]))
        if self.size is not None and tuple(image.shape[-2:]) != self.image_size:
            image = TF.center_crop(TF.resize(image, self.size, antialias=True), [self.size, self.size])
        elif tuple(image.shape[-2:]) != self.image_size:
            raise ValueError(f"images differ in size: image {index} is {image.shape[-1]}x{image.shape[-2]} (WxH), "
                             f"image 0 is {self.image_size[1]}x{self.image_size[0]}: pass size= to resize them to "
                             "one size")
        return image, label, index

    def subset(self, indices: Tensor) -> "StreamingImageDataset":
        """The items ``indices`` (positions in this dataset) as a dataset of their own, over the same source."""
        indices = check_positions(indices, "indices")
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= len(self)):
            raise ValueError(f"indices must be in [0, {len(self)})")
        return StreamingImageDataset(self.source, self.size, self.indices[indices])

    def _stored_size(self, index: int) -> Tuple[int, int]:
        """(H, W) of item ``index`` as stored: from the file's header when there is a file."""
        source_index = int(self.indices[index])
        if self._files is not None:
            listed = self._files[source_index]
            try:
                with Image.open(listed.real or listed.path) as image:
                    return image.height, image.width
            except (OSError, ValueError, SyntaxError) as error:
                raise ValueError(f"cannot decode image file {listed.path}: {error}") from error
        return tuple(self._read(source_index)[0].shape[-2:])  # type: ignore[return-value]

    def _read(self, source_index: int) -> Tuple[Tensor, int]:
        """(image (3, H, W) uint8 at its stored size, label) of item ``source_index`` of the source."""
        if isinstance(self.source, ImageArrays):
            return self.source.images[source_index], int(self.source.labels[source_index])
        if self._files is not None:
            listed = self._files[source_index]
            return _chw(decode_listed(listed, self.size)), listed.label
        item = self.source[source_index]
        return _as_uint8_chw(item[0], source_index), int(item[1])


def _chw(pixels: np.ndarray) -> Tensor:
    return torch.from_numpy(np.require(pixels, requirements=["C", "W"])).permute(2, 0, 1)  # copies only if needed


def _listed(path: str, label: int = 0) -> ListedImage:
    """A file named by someone else's listing (a torchvision folder's samples, a path item): read where it really
    is."""
    return ListedImage(path, int(label), real=os.path.realpath(path))


def _folder_of(source: Any) -> Optional[DatasetFolder]:
    """The folder dataset behind ``source``: itself, or the ``.dataset`` of a LightlyDataset."""
    for candidate in (source, getattr(source, "dataset", None)):
        if isinstance(candidate, DatasetFolder):
            return candidate
    return None


def _files_to_decode(source: Any) -> Optional[List[ListedImage]]:
    """Every item's file when ``source`` is a folder whose items are its files decoded to RGB and nothing else
    (a :class:`ListedFolder`, or a torchvision folder with its default loader and no transform): those are decoded
    here, at the size needed."""
    if isinstance(source, ListedFolder):
        return source.images
    folder = _folder_of(source)
    if folder is None or getattr(source, "transform", None) is not None or folder.transform is not None:
        return None
    if folder.target_transform is not None:
        return None
    try:
        from lightly.data._image_loaders import default_loader as lightly_default_loader
    except ImportError:  # pragma: no cover - lightly is a dependency
        lightly_default_loader = default_loader
    if folder.loader not in (default_loader, lightly_default_loader):
        return None
    return [_listed(str(path), label) for path, label in folder.samples]


def _as_uint8_chw(image: Any, index: int) -> Tensor:
    if isinstance(image, (str, os.PathLike)):
        return _chw(decode_listed(_listed(str(image))))
    if isinstance(image, Image.Image):
        image = as_rgb8(pillow_pixels(image), image.mode, f"item {index}")
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[:, :, None]
        image = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)  # a writable copy
    if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.ndim != 3:
        kind = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, Tensor) else type(image).__name__
        raise TypeError(f"item {index}: the image must be a PIL image, a path, an (H, W, C) uint8 array or a "
                        f"(C, H, W) uint8 tensor, got {kind}")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    if image.shape[0] != 3:
        raise ValueError(f"item {index}: expected an RGB image (3 channels), got {image.shape[0]} channels")
    return image


def streaming_loader(
    dataset: StreamingImageDataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int = 0,
    num_replicas: Optional[int] = None,
    rank: Optional[int] = None,
    num_workers: int = 0,
    persistent_workers: Optional[bool] = None,
    pin_memory: Optional[bool] = None,
    prefetch_factor: Optional[int] = None,
) -> DataLoader:
    """A DataLoader of this rank's share of ``dataset``: batches ``(images (B, 3, S, S) uint8, labels (B,), indices
    (B,))``, decoded by ``num_workers`` worker processes (0: in this process) and collated in shared memory.

    Shuffling and sharding are ``torch.utils.data.DistributedSampler``'s, as for
    :class:`~lightly_siamese_ext.data.GPUResidentLoader`: the order of epoch ``e`` comes from ``seed + e`` (call
    ``loader.sampler.set_epoch(e)``; Lightning's Trainer does), and each of ``num_replicas`` ranks (default:
    ``lightly.utils.dist.world_size()`` / ``rank()``, read when each epoch starts, so a loader built before the
    process group is still right) gets a disjoint share. Move batches with
    ``images.to(device, non_blocking=True)``: ``pin_memory`` (default: when CUDA is available) makes that copy
    asynchronous. ``persistent_workers`` (default: with workers) keeps the workers between epochs.
    """
    check_positive_int(batch_size, "batch_size")
    check_int(num_workers, "num_workers", 0)
    sampler = LazyDistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                                     drop_last=drop_last)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=num_workers,
        persistent_workers=num_workers > 0 if persistent_workers is None else persistent_workers and num_workers > 0,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )


@dataclass(frozen=True)
class StreamingSplit:
    """A training and an evaluation split as :class:`StreamingImageDataset` (``labels``, ``classes``) and a sentence
    saying what they are: :class:`~lightly_siamese_ext.data.TrainTestSplit`'s fields, streamed."""

    train: StreamingImageDataset
    test: StreamingImageDataset
    description: str
    embedded: bool


def stream_train_test(
    data_dir: Optional[PathLike] = None,
    *,
    size: Optional[int] = None,
    download: bool = False,
    cache_dir: Optional[PathLike] = None,
    holdout_per_class: int = 500,
    embedded_size: int = 32,
    embedded_holdout_per_class: int = 30,
) -> StreamingSplit:
    """:func:`~lightly_siamese_ext.data.load_train_test`'s split (same images, same order, same held-out ones),
    with an ImageFolder ``data_dir`` (``<class>/<image>``, or ``train/<class>/<image>`` with an optional ``test`` or
    ``val`` sibling) read from its files when a batch needs them instead of decoded whole. CIFAR-10's python folder
    and the embedded digits are arrays anyway: those are loaded and served from memory."""
    root = Path(data_dir) if data_dir is not None else None
    if root is None or download or not root.is_dir() or is_cifar10_folder(root):  # arrays anyway, or its error
        split = load_train_test(data_dir, download=download, cache_dir=cache_dir,
                                holdout_per_class=holdout_per_class, embedded_size=embedded_size,
                                embedded_holdout_per_class=embedded_holdout_per_class)
        return StreamingSplit(StreamingImageDataset(split.train, size), StreamingImageDataset(split.test, size),
                              split.description, split.embedded)
    train_dir, test_dir = image_folder_layout(root)
    train = StreamingImageDataset(ListedFolder.of(train_dir), size)
    description = f"ImageFolder {train_dir} ({len(train.classes or [])} classes, read from its files)"
    if test_dir is not None:
        test = StreamingImageDataset(ListedFolder.of(test_dir), size)
        if test.classes != train.classes:
            raise ValueError(f"{test_dir} has classes {test.classes}, but {train_dir} has {train.classes}")
        return StreamingSplit(train, test, f"{description}; evaluation on its test split", False)
    train_idx, test_idx = holdout_split(train.labels, holdout_per_class, "holdout_per_class")
    note = f"evaluation on the last {holdout_per_class} images of every class, held out from training"
    return StreamingSplit(train.subset(train_idx), train.subset(test_idx), f"{description}; {note}", False)
