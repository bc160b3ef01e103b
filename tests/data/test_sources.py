import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from lightly_siamese_ext.data import (
    ArrayImageDataset,
    holdout_split,
    load_digits_arrays,
    load_image_source,
    load_train_test,
    subset,
)


def test_holdout_split_takes_the_last_samples_of_every_class() -> None:
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 1, 2, 0])
    train, held = holdout_split(labels, per_class=2)
    expected_held = []
    for c in range(3):
        expected_held += [i for i in range(len(labels)) if labels[i] == c][-2:]
    assert held.tolist() == sorted(expected_held)
    assert sorted(train.tolist() + held.tolist()) == list(range(len(labels)))
    with pytest.raises(ValueError, match="per_class"):
        holdout_split(labels, per_class=3)  # class 1 and 2 have 3 samples: nothing left to train on
    with pytest.raises(ValueError, match="labels"):
        holdout_split(labels.float(), per_class=1)


def test_digits_are_uint8_rgb_and_match_sklearn() -> None:
    from sklearn.datasets import load_digits

    arrays = load_digits_arrays(size=16)
    assert arrays.images.shape == (1797, 3, 16, 16) and arrays.images.dtype == torch.uint8
    assert torch.equal(arrays.labels, torch.from_numpy(load_digits().target).long())
    assert torch.equal(arrays.images[:, 0], arrays.images[:, 2])  # grey
    native = load_digits_arrays(size=8)
    expected = np.round(load_digits().images / 16.0 * 255.0)
    np.testing.assert_allclose(native.images[:, 0].numpy(), expected, atol=1)
    with pytest.raises(ValueError, match="size"):
        load_digits_arrays(size=4)


def test_no_data_dir_falls_back_to_embedded_and_says_so() -> None:
    source = load_image_source(None, embedded_size=16)
    assert source.embedded and source.test is None and "EMBEDDED" in source.description


def _write_folder(root, classes=("cat", "dog"), per_class=3, size=8) -> None:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_image_folder_with_train_and_test_subfolders(tmp_path) -> None:
    _write_folder(tmp_path / "data" / "train")
    _write_folder(tmp_path / "data" / "test", per_class=2)
    source = load_image_source(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert not source.embedded
    assert source.train.images.shape == (6, 3, 8, 8) and source.test.images.shape == (4, 3, 8, 8)
    assert source.train.classes == ["cat", "dog"] and source.train.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_flat_image_folder_has_no_test_split(tmp_path) -> None:
    _write_folder(tmp_path / "flat")
    source = load_image_source(tmp_path / "flat", cache_dir=tmp_path / "cache")
    assert source.test is None and len(source.train.labels) == 6


def test_cifar10_python_folder(tmp_path) -> None:
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 3)]:
        batch = {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    source = load_image_source(tmp_path / "cifar")
    assert source.train.images.shape == (20, 3, 32, 32) and source.test.images.shape == (3, 3, 32, 32)
    assert "CIFAR-10" in source.description


def test_data_dir_that_is_not_a_dataset_is_an_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither"):
        load_image_source(tmp_path / "empty")


def test_a_cache_dir_that_is_a_file_is_named_before_decoding(tmp_path, monkeypatch) -> None:
    _write_folder(tmp_path / "flat")
    (tmp_path / "cache").write_text("not a folder")
    decoded = []
    monkeypatch.setattr("lightly_siamese_ext.data.image_folder.decode_all", lambda *a: decoded.append(a))
    with pytest.raises(NotADirectoryError, match="cache_dir .*cache is a file"):
        load_image_source(tmp_path / "flat", cache_dir=tmp_path / "cache")
    assert decoded == []  # refused before a whole dataset is decoded for nothing
    assert load_image_source(None, cache_dir=tmp_path / "cache").embedded  # the digits need no cache


def test_load_train_test_names_the_holdout_argument(tmp_path) -> None:
    _write_folder(tmp_path / "flat")
    with pytest.raises(ValueError, match="^holdout_per_class=3 would hold out whole classes"):
        load_train_test(tmp_path / "flat", cache_dir=tmp_path / "cache", holdout_per_class=3)
    with pytest.raises(ValueError, match="^embedded_holdout_per_class must be a positive int"):
        load_train_test(None, embedded_holdout_per_class=0)
    split = load_train_test(tmp_path / "flat", cache_dir=tmp_path / "cache", holdout_per_class=1)
    assert split.train.labels.tolist() == [0, 0, 1, 1] and split.test.labels.tolist() == [0, 1]


def test_subset_and_array_image_dataset() -> None:
    arrays = load_digits_arrays(size=8)
    small = subset(arrays, torch.tensor([3, 1]))
    assert torch.equal(small.images[0], arrays.images[3]) and small.labels.tolist() == arrays.labels[[3, 1]].tolist()
    dataset = ArrayImageDataset(small.images, small.labels)
    image, label = dataset[0]
    assert isinstance(image, Image.Image) and image.size == (8, 8) and label == int(arrays.labels[3])
    np.testing.assert_array_equal(np.asarray(image), arrays.images[3].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="images"):
        ArrayImageDataset(small.images.float(), small.labels)
