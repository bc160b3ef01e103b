from __future__ import annotations

import math
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from fake_distributed import fake_world
import lightly_siamese_ext.data._decoding as decoding_module
from lightly_siamese_ext.data import GPUResidentLoader, load_cifar10_folder, load_image_folder

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "cifar10" / "train.tar.gz"


def encoded_images(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """NHWC uint8 images whose pixels all equal their index, and labels = index % 3."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 5, 3)).copy()
    return images, np.arange(n) % 3


def test_batches_cover_each_epoch_once_with_matching_labels() -> None:
    images, labels = encoded_images(10)
    loader = GPUResidentLoader.from_numpy(images, labels, batch_size=4, device="cpu", num_replicas=1, rank=0)
    assert loader.images.shape == (10, 3, 4, 5) and loader.images.dtype == torch.uint8
    batches = list(loader)
    assert len(batches) == len(loader) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    index = torch.cat([b[0][:, 0, 0, 0] for b in batches]).long()
    assert sorted(index.tolist()) == list(range(10)) and index.tolist() != list(range(10))  # shuffled
    assert torch.equal(torch.cat([b[1] for b in batches]), index % 3)


def test_drop_last_and_nchw_layout() -> None:
    images, labels = encoded_images(10)
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    loader = GPUResidentLoader.from_numpy(nchw, labels, 4, layout="NCHW", drop_last=True, num_replicas=1, rank=0)
    assert loader.images.shape == (10, 3, 4, 5)
    assert len(loader) == 2 and [len(b[1]) for b in loader] == [4, 4]


def test_order_is_deterministic_per_seed_and_epoch() -> None:
    images, labels = encoded_images(32)

    def order(seed: int, epoch: int) -> list:
        loader = GPUResidentLoader.from_numpy(images, labels, 8, seed=seed, num_replicas=1, rank=0)
        loader.set_epoch(epoch)
        return torch.cat([b[1] for b in loader]).tolist() + torch.cat([b[0][:, 0, 0, 0] for b in loader]).tolist()

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_share_one_permutation_disjointly(world_size: int) -> None:
    images, labels = encoded_images(12)
    seen = []
    for rank in range(world_size):
        loader = GPUResidentLoader.from_numpy(
            images, labels, 2, drop_last=True, seed=4, num_replicas=world_size, rank=rank
        )
        loader.set_epoch(2)
        seen += [int(v) for b in loader for v in b[0][:, 0, 0, 0]]
    assert sorted(seen) == list(range(12))  # 12 splits evenly: every sample once, on one rank


@pytest.mark.parametrize("drop_last", [False, True])
def test_rank_and_world_size_are_read_when_an_epoch_starts_not_when_built(monkeypatch, drop_last: bool) -> None:
    images, labels = encoded_images(11)
    loader = GPUResidentLoader.from_numpy(images, labels, 2, drop_last=drop_last, seed=4)  # no process group yet
    assert len(loader) == (5 if drop_last else 6)
    for rank in range(3):
        fake_world(monkeypatch, 3, rank)
        loader.set_epoch(2)
        # torch's own DistributedSampler, built once the world is known, is the reference (padding, drop_last).
        reference = DistributedSampler(range(11), num_replicas=3, rank=rank, shuffle=True, seed=4, drop_last=drop_last)
        reference.set_epoch(2)
        expected = list(reference)
        batches = len(expected) // 2 if drop_last else math.ceil(len(expected) / 2)
        assert loader.num_samples == len(expected) and len(loader) == batches
        seen = [int(v) for batch, _ in loader for v in batch[:, 0, 0, 0]]
        assert seen == expected[: len(loader) * 2]


def test_transform_is_applied_to_each_batch() -> None:
    images, labels = encoded_images(6)
    loader = GPUResidentLoader.from_numpy(
        images, labels, 3, transform=lambda x: x.float() / 255, num_replicas=1, rank=0
    )
    batch, _ = next(iter(loader))
    assert batch.dtype == torch.float32 and batch.max() <= 1.0


def test_bad_inputs_are_clear_errors() -> None:
    images, labels = encoded_images(6)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    with pytest.raises(TypeError, match="images must be uint8"):
        GPUResidentLoader(tensor.float(), labels, 2)
    with pytest.raises(ValueError, match="images must be a non-empty 4-D"):
        GPUResidentLoader(tensor[0], labels, 2)
    with pytest.raises(ValueError, match=r"labels must have one entry per image \(6\), got 5"):
        GPUResidentLoader(tensor, labels[:5], 2)
    with pytest.raises(ValueError, match="batch_size"):
        GPUResidentLoader(tensor, labels, 0)
    with pytest.raises(ValueError, match="rank"):
        GPUResidentLoader(tensor, labels, 2, num_replicas=2, rank=5)
    with pytest.raises(ValueError, match="layout"):
        GPUResidentLoader.from_numpy(images, labels, 2, layout="HWC")


def write_image_folder(root: Path) -> dict:
    """Two classes of 6 x 7 RGB PNGs (lossless) with distinct pixels; returns path -> array."""
    written = {}
    rng = np.random.default_rng(0)
    for label, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            array = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
            path = root / name / f"{i}.png"
            Image.fromarray(array).save(path)
            written[path] = (array, label)
    return written


def test_image_folder_is_decoded_exactly_in_imagefolder_order(tmp_path: Path) -> None:
    written = write_image_folder(tmp_path / "images")
    arrays = load_image_folder(tmp_path / "images", num_threads=2)
    assert arrays.classes == ["cat", "dog"] and arrays.labels.tolist() == [0, 0, 0, 1, 1, 1]
    for image, (array, _) in zip(arrays.images, [written[p] for p in sorted(written)]):
        assert torch.equal(image, torch.from_numpy(array).permute(2, 0, 1))
    loader = GPUResidentLoader.from_image_folder(tmp_path / "images", 4, num_replicas=1, rank=0)
    assert loader.classes == ["cat", "dog"] and len(loader) == 2


def test_npy_cache_is_reused_and_a_changed_folder_misses_it(tmp_path: Path, monkeypatch) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    written = write_image_folder(root)
    first = load_image_folder(root, cache_dir=cache)
    assert len(list(cache.glob("*.images.npy"))) == 1

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(decoding_module, "_decode", no_decoding)
    cached = load_image_folder(root, cache_dir=cache)
    assert torch.equal(cached.images, first.images) and torch.equal(cached.labels, first.labels)

    monkeypatch.undo()
    changed = sorted(written)[0]
    Image.fromarray(np.zeros((6, 7, 3), dtype=np.uint8)).save(changed)
    fresh = load_image_folder(root, cache_dir=cache)
    assert fresh.images[0].sum() == 0 and len(list(cache.glob("*.images.npy"))) == 2


def test_corrupt_or_mismatched_images_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_image_folder(root)
    (root / "dog" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken.png"):
        load_image_folder(root)
    (root / "dog" / "broken.png").unlink()
    Image.fromarray(np.zeros((9, 9, 3), dtype=np.uint8)).save(root / "dog" / "big.png")
    with pytest.raises(ValueError, match="big.png is 9x9"):
        load_image_folder(root)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere")


def test_cifar10_python_folder_is_read_without_reordering(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    rows = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows[name] = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": rows[name], "labels": [1, 2, 3, 4]}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)

    train = load_cifar10_folder(tmp_path)  # the root torchvision's CIFAR10 takes
    assert train.images.shape == (20, 3, 32, 32) and train.labels.tolist() == [1, 2, 3, 4] * 5
    assert torch.equal(train.images[4].flatten(), torch.from_numpy(rows["data_batch_2"][0]))
    assert train.classes[3] == "class3"
    test = load_cifar10_folder(folder, train=False)
    assert torch.equal(test.images.flatten(1), torch.from_numpy(rows["test_batch"]))
    loader = GPUResidentLoader.from_cifar10_folder(tmp_path, 8, num_replicas=1, rank=0)
    assert len(loader) == 3

    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10_folder(tmp_path)


@pytest.mark.skipif(not SHARED_CIFAR10.exists(), reason="the shared CIFAR-10 copy (../shared) is absent")
def test_shared_cifar10_jpegs_decode(tmp_path: Path) -> None:
    # The first 10 images of the first 2 classes in the archive: a few MB of the stream, not 50,000 files.
    taken: dict = {}
    with tarfile.open(SHARED_CIFAR10, "r:gz") as archive:
        for member in archive:
            if not member.isfile() or not member.name.endswith(".jpg"):
                continue
            label = Path(member.name).parent.name
            if len(taken) == 2 and label not in taken:
                break
            if len(taken.setdefault(label, [])) < 10:
                taken[label].append(member.name)
                archive.extract(member, tmp_path, filter="data")
    root = next(p.parent.parent for p in tmp_path.rglob("*.jpg"))
    arrays = load_image_folder(root)
    assert arrays.images.shape == (20, 3, 32, 32) and arrays.classes == sorted(taken)
    assert arrays.labels.tolist() == [0] * 10 + [1] * 10
    assert 20 < arrays.images.float().mean() < 235  # real photos, not blank
