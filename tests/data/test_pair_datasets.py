from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch
from lightly.data import LightlyDataset, MultiViewCollate
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from torchvision.datasets import ImageFolder

from lightly_siamese_ext.data import PairDataset, TripletDataset, read_targets


class Labelled(Dataset):
    """Item i is (tensor([i]), targets[i]): the image tells which sample was loaded. Counts loads."""

    def __init__(self, targets, expose_targets: bool = True) -> None:
        self._targets = list(targets)
        if expose_targets:
            self.targets = self._targets
        self.loads = 0

    def __len__(self) -> int:
        return len(self._targets)

    def __getitem__(self, index: int):
        self.loads += 1
        return torch.tensor([index]), self._targets[index]


TARGETS = [0] * 6 + [1] * 10 + [2] * 4 + [5] * 20  # 40 samples, 4 classes of different sizes


def partner_of(item) -> int:
    return int(item[0][1])


def test_pairs_have_correct_labels_and_exact_positive_fraction() -> None:
    data = Labelled(TARGETS)
    pairs = PairDataset(data, positive_fraction=0.3, seed=1)
    assert len(pairs) == len(TARGETS)
    labels = []
    for i in range(len(pairs)):
        (x0, x1), y, names = pairs[i]
        j = int(x1)
        assert int(x0) == i and j != i
        assert y == int(TARGETS[i] == TARGETS[j])
        assert names == (str(i), str(j))
        labels.append(y)
    assert sum(labels) == round(0.3 * len(TARGETS))


def test_pairs_read_targets_without_loading_items() -> None:
    data = Labelled(TARGETS)
    PairDataset(data)
    TripletDataset(data)
    read_targets(Subset(data, [3, 10, 30]))
    assert data.loads == 0
    assert read_targets(Subset(data, [3, 10, 30])).tolist() == [0, 1, 5]


def test_targets_fall_back_to_loading_items_with_a_warning(caplog) -> None:
    data = Labelled(TARGETS, expose_targets=False)
    with caplog.at_level(logging.WARNING):
        assert read_targets(data).tolist() == TARGETS
    assert data.loads == len(TARGETS) and "decodes every image" in caplog.text


def test_pairs_are_deterministic_per_seed_and_resampled_per_epoch() -> None:
    def partners(seed: int, epoch: int):
        pairs = PairDataset(Labelled(TARGETS), seed=seed)
        pairs.set_epoch(epoch)
        return [partner_of(pairs[i]) for i in range(len(pairs))]

    assert partners(0, 0) == partners(0, 0)
    assert partners(0, 0) != partners(0, 1)
    assert partners(0, 0) != partners(1, 0)
    pairs = PairDataset(Labelled(TARGETS))
    first = pairs.partners()[0].clone()
    pairs.set_epoch(3)
    pairs.set_epoch(0)
    assert torch.equal(pairs.partners()[0], first)


def test_negatives_are_uniform_over_other_classes_samples() -> None:
    # Anchors of class 0 must draw negatives from classes 1, 2, 5 in proportion 10 : 4 : 20.
    pairs = PairDataset(Labelled(TARGETS), positive_fraction=0.0)
    counts: Counter = Counter()
    for epoch in range(300):
        pairs.set_epoch(epoch)
        partner, is_positive = pairs.partners()
        assert not is_positive.any()
        counts.update(TARGETS[j] for j in partner[:6].tolist())
    n = sum(counts.values())  # 1800 draws; binomial tolerance of 4 standard deviations
    for label, size in ((1, 10), (2, 4), (5, 20)):
        p = size / 34
        assert abs(counts[label] / n - p) < 4 * (p * (1 - p) / n) ** 0.5
    assert 0 not in counts


def test_triplets_are_anchor_positive_negative() -> None:
    triplets = TripletDataset(Labelled(TARGETS), seed=3)
    for i in range(len(triplets)):
        (a, p, n), label, names = triplets[i]
        a, p, n = int(a), int(p), int(n)
        assert a == i and p != i and label == TARGETS[i]
        assert TARGETS[p] == TARGETS[i] and TARGETS[n] != TARGETS[i]
        assert names == (str(a), str(p), str(n))


def test_positives_cover_the_whole_class_except_the_anchor() -> None:
    triplets = TripletDataset(Labelled(TARGETS))
    seen = set()
    for epoch in range(200):
        triplets.set_epoch(epoch)
        seen.add(int(triplets.triplets()[0][16]))  # anchor 16, class 2 = samples 16..19
    assert seen == {17, 18, 19}


def test_pairs_collate_with_default_collate_and_lightly_multiview_collate() -> None:
    class Images(Labelled):
        def __getitem__(self, index: int):
            return torch.full((3, 4, 4), float(index)), self._targets[index]

    pairs = PairDataset(Images(TARGETS), transform=lambda x: x + 0.5)
    views, labels, names = next(iter(DataLoader(pairs, batch_size=5, collate_fn=default_collate)))
    assert [v.shape for v in views] == [torch.Size([5, 3, 4, 4])] * 2
    assert labels.shape == (5,) and len(names) == 2 and len(names[0]) == 5
    assert torch.all(views[0][:, 0, 0, 0] == torch.arange(5) + 0.5)

    views, labels, names = next(iter(DataLoader(pairs, batch_size=5, collate_fn=MultiViewCollate())))
    assert [v.shape for v in views] == [torch.Size([5, 3, 4, 4])] * 2
    assert labels.dtype == torch.long and labels.tolist() == [pairs[i][1] for i in range(5)]
    assert names[0] == ("0", names[0][1])

    triplets = TripletDataset(Images(TARGETS))
    views, labels, names = next(iter(DataLoader(triplets, batch_size=5, collate_fn=MultiViewCollate())))
    assert len(views) == 3 and labels.tolist() == TARGETS[:5] and len(names[0]) == 3


def test_lightly_dataset_filenames_become_the_names() -> None:
    data = Labelled(TARGETS)
    lightly_data = LightlyDataset.from_torch_dataset(data, index_to_filename=lambda _, i: f"img_{i}.png")
    pairs = PairDataset(lightly_data, seed=2)
    assert data.loads == 0  # targets read through LightlyDataset.dataset
    (x0, x1), _, names = pairs[7]
    assert names == ("img_7.png", f"img_{int(x1)}.png")


def test_imagefolder_paths_become_the_names(tmp_path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.new("RGB", (4, 4), color=(60 * i, 0, 0)).save(tmp_path / label / f"{i}.png")
    folder = ImageFolder(str(tmp_path))
    pairs = PairDataset(folder, positive_fraction=1.0, transform=lambda image: image.size)
    (x0, x1), y, (name0, name1) = pairs[0]
    assert x0 == x1 == (4, 4) and y == 1
    assert name0 == str(tmp_path / "a" / "0.png") and name1 == str(tmp_path / "a" / "1.png")


def test_single_sample_class_or_single_class_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="class 9 has 1"):
        PairDataset(Labelled([0, 0, 1, 1, 9]))
    with pytest.raises(ValueError, match="class 9 has 1"):
        TripletDataset(Labelled([0, 0, 1, 1, 9]))
    PairDataset(Labelled([0, 0, 1, 1, 9]), positive_fraction=0.0)  # no positives needed
    with pytest.raises(ValueError, match="at least 2 classes"):
        PairDataset(Labelled([4, 4, 4]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        TripletDataset(Labelled([4, 4, 4]))
    PairDataset(Labelled([4, 4, 4]), positive_fraction=1.0)  # no negatives needed
    with pytest.raises(ValueError, match="positive_fraction"):
        PairDataset(Labelled(TARGETS), positive_fraction=1.5)
    with pytest.raises(IndexError):
        PairDataset(Labelled(TARGETS))[40]
