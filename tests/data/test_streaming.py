"""Streamed images (DataLoader workers decode, the device augments): the same images, order, shards and split as the
resident path, and views from the same distributions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from lightly.data import LightlyDataset
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from fake_distributed import fake_world
from lightly_siamese_ext import CIFAR10_NORMALIZE, BatchedSimSiamTransform, GPUResidentLoader
from lightly_siamese_ext.data import (
    ImageArrays,
    StreamingImageDataset,
    load_image_folder,
    load_train_test,
    stream_train_test,
    streaming_loader,
)


def colour_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 smooth colour fields with per-image colour casts: every augmentation (crop scale,
    flips, jitter, grayscale) changes their statistics."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 2 * np.pi, size)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        field = np.zeros((size, size, 3))
        for _ in range(3):
            fy, fx = rng.integers(1, 4, 2)
            field += rng.uniform(0.3, 1.0, 3) * np.cos(fy * yy + fx * xx + rng.uniform(0, 2 * np.pi))[..., None]
        field = 128 + 40 * field + rng.uniform(-50, 50, 3)
        images[i] = np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8)
    return images


def write_folder(root: Path, images: np.ndarray, classes: int = 2, suffix: str = "png") -> None:
    """An ImageFolder: image i in class folder i % classes (lossless PNG unless told otherwise)."""
    for i, image in enumerate(images):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.{suffix}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("streaming") / "images"
    write_folder(root, colour_images(64))
    return root


def test_image_folder_and_lightly_dataset_stream_the_decoded_images_in_order(folder: Path) -> None:
    resident = load_image_folder(folder)
    for source in (ImageFolder(str(folder)), LightlyDataset(str(folder))):
        dataset = StreamingImageDataset(source)
        assert dataset._files is not None  # their files are decoded here, not by their PIL loader
        assert len(dataset) == 64 and dataset.image_size == (16, 16) and dataset.classes == ["class0", "class1"]
        assert torch.equal(dataset.labels, resident.labels)
        for index in (0, 1, 37, 63):
            image, label, identity = dataset[index]
            assert image.dtype == torch.uint8 and torch.equal(image, resident.images[index])
            assert (label, identity) == (int(resident.labels[index]), index)


def test_any_dataset_of_pil_arrays_tensors_or_paths_streams_rgb(folder: Path) -> None:
    resident = load_image_folder(folder)
    pil = ImageFolder(str(folder))  # with a transform it is read through its own __getitem__
    as_tensor = ImageFolder(str(folder), transform=v2.PILToTensor())
    assert StreamingImageDataset(as_tensor)._files is None
    paths = [(path, label) for path, label in pil.samples]
    arrays = [(np.asarray(Image.open(path)), label) for path, label in pil.samples]
    grey = [(Image.open(path).convert("L"), label) for path, label in pil.samples]
    for source in (as_tensor, paths, arrays, ImageArrays(resident.images, resident.labels, ["a", "b"])):
        dataset = StreamingImageDataset(source)
        assert torch.equal(dataset.labels, resident.labels)
        assert torch.equal(torch.stack([dataset[i][0] for i in range(4)]), resident.images[:4])
    image = StreamingImageDataset(grey)[5][0]
    assert image.shape == (3, 16, 16) and torch.equal(image[0], image[2])
    with pytest.raises(TypeError, match="item 0"):
        StreamingImageDataset([(np.zeros((4, 4, 3), dtype=np.float32), 0)])


def test_size_resizes_the_shorter_side_and_centre_crops(tmp_path: Path) -> None:
    wide = np.random.default_rng(1).integers(0, 256, (20, 40, 3), dtype=np.uint8)
    write_folder(tmp_path / "f", np.stack([wide, wide[::-1]]), classes=1)
    dataset = StreamingImageDataset(ImageFolder(str(tmp_path / "f")), size=10)
    expected = v2.CenterCrop(10)(v2.Resize(10, antialias=True)(torch.from_numpy(wide).permute(2, 0, 1)))
    assert dataset.image_size == (10, 10) and torch.equal(dataset[0][0], expected)


def test_a_large_jpeg_is_decoded_at_a_reduced_size_that_still_covers_size(tmp_path: Path) -> None:
    big = np.kron(colour_images(1, size=32)[0], np.ones((8, 8, 1), dtype=np.uint8))  # 256 x 256
    write_folder(tmp_path / "f", big[None], classes=1, suffix="jpg")
    dataset = StreamingImageDataset(ImageFolder(str(tmp_path / "f")), size=48)
    listed = dataset._files[0]
    assert tuple(dataset[0][0].shape) == (3, 48, 48)
    from lightly_siamese_ext.data._decoding import decode_listed

    assert decode_listed(listed, 48).shape == (64, 64, 3)  # 1/4 scale: the largest reduction >= 48
    assert decode_listed(listed).shape == (256, 256, 3)


def test_images_of_other_sizes_are_refused_without_size(tmp_path: Path) -> None:
    images = colour_images(40)
    write_folder(tmp_path / "f", images, classes=1)
    Image.fromarray(np.zeros((12, 16, 3), dtype=np.uint8)).save(tmp_path / "f" / "class0" / "0039.png")
    with pytest.raises(ValueError, match="image 39 is 16x12 .*, image 0 is 16x16: pass size="):
        StreamingImageDataset(ImageFolder(str(tmp_path / "f")))  # found in the file headers, before any epoch
    Image.fromarray(np.zeros((12, 16, 3), dtype=np.uint8)).save(tmp_path / "f" / "class0" / "0001.png")
    (tmp_path / "f" / "class0" / "0039.png").unlink()
    dataset = StreamingImageDataset(ImageFolder(str(tmp_path / "f")))  # image 1 is not among the 16 compared
    with pytest.raises(ValueError, match="image 1 is 16x12 .*, image 0 is 16x16: pass size="):
        dataset[1]
    assert StreamingImageDataset(ImageFolder(str(tmp_path / "f")), size=8)[1][0].shape == (3, 8, 8)


def test_loader_shards_like_the_resident_loader_and_reshuffles_per_epoch(folder: Path) -> None:
    dataset = StreamingImageDataset(ImageFolder(str(folder)))
    resident = load_image_folder(folder)
    seen: Dict[int, List[int]] = {}
    for rank in range(3):
        loader = streaming_loader(dataset, 5, seed=7, num_replicas=3, rank=rank, drop_last=True,
                                  num_workers=1 if rank == 0 else 0)
        reference = GPUResidentLoader(resident.images, torch.arange(64), 5, seed=7, num_replicas=3, rank=rank,
                                      drop_last=True)
        orders = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            reference.set_epoch(epoch)
            batches = list(loader)
            assert all(images.shape == (5, 3, 16, 16) and images.dtype == torch.uint8 for images, _, _ in batches)
            ids = torch.cat([index for _, _, index in batches])
            assert torch.equal(ids, torch.cat([index for _, index in reference]))  # the same order, epoch by epoch
            images = torch.cat([images for images, _, _ in batches])
            assert torch.equal(images, resident.images[ids])
            assert torch.equal(torch.cat([labels for _, labels, _ in batches]), resident.labels[ids])
            orders.append(ids.tolist())
        assert orders[0] != orders[1]
        seen[rank] = orders[0]
    everything = sum(seen.values(), [])
    assert len(everything) == len(set(everything)) == 3 * 20  # disjoint shares; 64 // 3 // 5 batches of 5 each


def test_stream_train_test_is_load_train_tests_split(tmp_path: Path) -> None:
    images = colour_images(40)
    write_folder(tmp_path / "flat", images, classes=4)
    write_folder(tmp_path / "split" / "train", images[:24], classes=4)
    write_folder(tmp_path / "split" / "val", images[24:], classes=4)
    for root, holdout in ((tmp_path / "flat", 3), (tmp_path / "split", 500)):
        resident = load_train_test(root, holdout_per_class=holdout, cache_dir=tmp_path / "cache")
        streamed = stream_train_test(root, holdout_per_class=holdout)
        assert streamed.train.source is not None and streamed.train._files is not None  # read from the files
        assert not streamed.embedded and "read from its files" in streamed.description
        for ours, theirs in ((streamed.train, resident.train), (streamed.test, resident.test)):
            assert torch.equal(ours.labels, theirs.labels) and ours.classes == theirs.classes
            assert torch.equal(torch.stack([ours[i][0] for i in range(len(ours))]), theirs.images)
    embedded = stream_train_test(None, embedded_size=16)
    assert embedded.embedded and isinstance(embedded.train.source, ImageArrays) and len(embedded.test) == 300


# ------------------------------------------------------------------------------------ same view distributions
VIEW_STATISTICS = ("mean R", "mean G", "mean B", "std R", "std G", "std B", "sharpness")


def view_statistics(views: torch.Tensor) -> torch.Tensor:
    """(V, 7) per view: the mean and std of every channel (colour jitter, grayscale, crop position) and the mean
    absolute horizontal difference of neighbouring pixels (crop scale: a smaller crop is upsampled more, smoother)."""
    flat = views.flatten(start_dim=2)
    sharpness = (views[..., 1:] - views[..., :-1]).abs().mean(dim=(1, 2, 3))
    return torch.cat([flat.mean(dim=2), flat.std(dim=2), sharpness[:, None]], dim=1)


def per_image_statistics(batches, augment: BatchedSimSiamTransform, n: int, epochs: int, seed: int) -> torch.Tensor:
    """(n, 7): every image's view statistics averaged over its 2 x ``epochs`` views."""
    total, count = torch.zeros(n, len(VIEW_STATISTICS), dtype=torch.float64), torch.zeros(n)
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(seed + epoch)
        for images, ids in batches(epoch):
            for view in augment(images, generator):
                total.index_add_(0, ids, view_statistics(view).double())
                count.index_add_(0, ids, torch.ones(len(ids)))
    return total / count[:, None]


def paired_z_scores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """z of the mean per-image difference of every statistic: images are the independent units (the views of an
    image are correlated), so the standard error is std(d) / sqrt(n) over the n images."""
    d = a - b
    return d.mean(dim=0) / (d.std(dim=0) / math.sqrt(len(d)))


def test_streamed_views_follow_the_resident_pipelines_distributions(tmp_path: Path) -> None:
    # 512 images, 8 views each per pipeline, independent random streams (other seeds): each statistic's mean
    # per-image difference must be within 4.5 standard errors of 0. Under equal distributions a |z| > 4.5 has
    # probability 7e-6 per statistic (5e-5 for all 7): a failure is a real difference, not bad luck. The same check
    # detects a pipeline whose crops are drawn otherwise (min_scale 0.5 instead of 0.2).
    n, epochs = 512, 4
    images = colour_images(n, size=16, seed=3)
    write_folder(tmp_path / "f", images, classes=4)
    resident = load_image_folder(tmp_path / "f")
    loader = GPUResidentLoader(resident.images, torch.arange(n), 128, seed=0, num_replicas=1, rank=0)
    stream = streaming_loader(StreamingImageDataset(ImageFolder(str(tmp_path / "f"))), 128, seed=1,
                              num_replicas=1, rank=0, num_workers=1)

    def resident_batches(epoch: int):
        loader.set_epoch(epoch)
        return iter(loader)

    def streamed_batches(epoch: int):
        stream.sampler.set_epoch(epoch)
        return ((images, ids) for images, _, ids in stream)

    augment = BatchedSimSiamTransform(input_size=12, gaussian_blur=0.0, normalize=CIFAR10_NORMALIZE)
    ours = per_image_statistics(streamed_batches, augment, n, epochs, seed=100)
    theirs = per_image_statistics(resident_batches, augment, n, epochs, seed=200)
    z = paired_z_scores(ours, theirs)
    assert bool((z.abs() < 4.5).all()), dict(zip(VIEW_STATISTICS, z.tolist()))

    other_crops = BatchedSimSiamTransform(input_size=12, gaussian_blur=0.0, normalize=CIFAR10_NORMALIZE,
                                          min_scale=0.5)
    z_other = paired_z_scores(per_image_statistics(resident_batches, other_crops, n, epochs, seed=300), theirs)
    assert float(z_other.abs().max()) > 4.5, dict(zip(VIEW_STATISTICS, z_other.tolist()))


def test_streamed_views_equal_the_resident_ones_for_the_same_seed(folder: Path) -> None:
    resident = load_image_folder(folder)
    loader = GPUResidentLoader(resident.images, torch.arange(64), 16, seed=0, num_replicas=1, rank=0)
    stream = streaming_loader(StreamingImageDataset(ImageFolder(str(folder))), 16, seed=0, num_replicas=1, rank=0)
    augment = BatchedSimSiamTransform(input_size=12, gaussian_blur=0.0)
    views: Tuple[List[torch.Tensor], List[torch.Tensor]] = ([], [])
    for out, batches in zip(views, ((b[0] for b in loader), (b[0] for b in stream))):
        generator = torch.Generator().manual_seed(5)
        for images in batches:
            out.extend(augment(images, generator))
    assert len(views[0]) == 8 and all(torch.equal(a, b) for a, b in zip(*views))


def test_a_subset_streams_random_subsets_images(folder: Path) -> None:
    from lightly_siamese_ext.data import random_subset, random_subset_indices

    resident = load_image_folder(folder)
    dataset = StreamingImageDataset(ImageFolder(str(folder))).subset(random_subset_indices(64, 10, seed=3))
    expected = random_subset(resident, 10, seed=3)
    assert len(dataset) == 10 and torch.equal(dataset.labels, expected.labels)
    assert torch.equal(torch.stack([dataset[i][0] for i in range(10)]), expected.images)
    assert [dataset[i][2] for i in range(10)] == list(range(10))  # indices are positions in the subset
    with pytest.raises(ValueError, match="indices must be in"):
        dataset.subset(torch.tensor([10]))


def test_a_streamed_folder_follows_the_resident_loaders_rules(tmp_path: Path) -> None:
    # Hidden folders are no class, links to folders are not followed, 16-bit images keep their values: the same
    # images as load_image_folder, whether resident or streamed.
    from lightly_siamese_ext.data import load_image_folder
    from lightly_siamese_ext.data.streaming import ListedFolder

    write_folder(tmp_path / "f", colour_images(6), classes=2)
    (tmp_path / "f" / ".ipynb_checkpoints").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "f" / ".ipynb_checkpoints" / "x.png")
    (tmp_path / "f" / "class0" / "loop").symlink_to("..")
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)
    Image.fromarray(ramp).save(tmp_path / "f" / "class1" / "zz_16bit.png")
    resident = load_image_folder(tmp_path / "f")
    streamed = StreamingImageDataset(ListedFolder.of(tmp_path / "f"))
    assert streamed.classes == resident.classes == ["class0", "class1"]
    assert torch.equal(torch.stack([streamed[i][0] for i in range(len(streamed))]), resident.images)
    assert resident.images[-1, 0].float().mean() == pytest.approx(127.5)  # not clipped at 255


def test_a_loader_built_before_the_process_group_shards_by_the_world_it_runs_in(monkeypatch) -> None:
    # Built at module level, before init_process_group: the ranks must still get disjoint shares when they iterate.
    from torch.utils.data import DistributedSampler

    from lightly_siamese_ext.data import ImageArrays

    arrays = ImageArrays(torch.zeros(10, 3, 4, 4, dtype=torch.uint8), torch.arange(10), ["a"])
    loader = streaming_loader(StreamingImageDataset(arrays), batch_size=2, seed=3)
    seen = []
    for rank in range(2):
        fake_world(monkeypatch, 2, rank)
        loader.sampler.set_epoch(1)
        reference = DistributedSampler(range(10), num_replicas=2, rank=rank, shuffle=True, seed=3)
        reference.set_epoch(1)
        indices = [int(i) for _, _, batch in loader for i in batch]
        assert indices == list(reference)
        seen.append(set(indices))
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(10))
