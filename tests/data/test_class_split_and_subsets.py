import pytest
import torch

from lightly_siamese_ext.data import ImageArrays, ImageSource
from lightly_siamese_ext.data.class_split import open_set_split, resolve_classes, split_classes
from lightly_siamese_ext.data.subsets import first_per_class, random_subset

CLASSES = ["cat", "dog", "ship", "truck"]


def _arrays(labels: list) -> ImageArrays:
    n = len(labels)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()  # image i holds i
    return ImageArrays(images, torch.tensor(labels), list(CLASSES))


def test_resolve_classes_takes_names_and_indices() -> None:
    assert resolve_classes(["truck", "1"], CLASSES) == [1, 3]
    assert resolve_classes([2, 0], CLASSES) == [0, 2]
    assert resolve_classes(["7"], [str(d) for d in range(10)]) == [7]  # a name that is also an index
    for bad, match in [(["plane"], "unknown class"), (["4"], "out of range"), (["cat", "0"], "repeat"), ([], "empty")]:
        with pytest.raises(ValueError, match=match):
            resolve_classes(bad, CLASSES)


def test_split_classes_is_disjoint_and_complete() -> None:
    arrays = _arrays([0, 1, 2, 3, 2, 1, 0, 3, 3])
    seen, unseen = split_classes(arrays, ["ship", "truck"])
    assert set(seen.labels.tolist()) == {0, 1} and set(unseen.labels.tolist()) == {2, 3}
    ids = sorted(seen.images[:, 0, 0, 0].tolist() + unseen.images[:, 0, 0, 0].tolist())
    assert ids == list(range(9))  # every image exactly once, with its own label
    assert all(arrays.labels[i] == label for i, label in zip(unseen.images[:, 0, 0, 0].tolist(), unseen.labels))
    assert seen.classes == CLASSES and unseen.classes == CLASSES


def test_open_set_split_evaluates_on_the_test_split_of_the_held_out_classes() -> None:
    train, test = _arrays([0, 0, 1, 1, 2, 2, 3, 3]), _arrays([0, 1, 2, 2, 3, 3])
    with_test = open_set_split(ImageSource(train, test, "toy", embedded=False), ["ship", "truck"])
    assert with_test.train_classes == [0, 1] and with_test.test_classes == [2, 3]
    assert with_test.train.labels.tolist() == [0, 0, 1, 1] and with_test.test.labels.tolist() == [2, 2, 3, 3]
    assert with_test.test.images[:, 0, 0, 0].tolist() == [2, 3, 4, 5]  # the test split's images
    without_test = open_set_split(ImageSource(train, None, "toy", embedded=True), ["ship", "truck"])
    assert without_test.test.images[:, 0, 0, 0].tolist() == [4, 5, 6, 7] and without_test.embedded
    assert "['ship', 'truck']" in without_test.description


def test_open_set_split_needs_two_usable_classes_per_side() -> None:
    source = ImageSource(_arrays([0, 0, 1, 1, 2, 2, 3]), None, "toy", embedded=False)
    with pytest.raises(ValueError, match="training side"):
        open_set_split(source, ["dog", "ship", "truck"])
    with pytest.raises(ValueError, match="held-out side"):
        open_set_split(source, ["ship", "truck"])  # truck has one image: no positive pair


def test_random_subset_is_seeded_sorted_and_without_repeats() -> None:
    arrays = _arrays(list(range(4)) * 5)
    picked = random_subset(arrays, 7, seed=3).images[:, 0, 0, 0]
    assert picked.tolist() == sorted(set(picked.tolist())) and len(picked) == 7
    assert torch.equal(random_subset(arrays, 7, seed=3).images, random_subset(arrays, 7, seed=3).images)
    assert not torch.equal(random_subset(arrays, 7, seed=4).images, random_subset(arrays, 7, seed=3).images)
    with pytest.raises(ValueError, match=r"--subset must be an int in \[1, 20\]"):
        random_subset(arrays, 21, seed=0, name="--subset")


def test_first_per_class_keeps_dataset_order() -> None:
    arrays = _arrays([2, 0, 2, 2, 1, 0, 2])
    kept = first_per_class(arrays, 2)
    assert kept.images[:, 0, 0, 0].tolist() == [0, 1, 2, 4, 5]  # class 2: images 0 and 2; class 1 has only one
    with pytest.raises(ValueError, match="--eval-per-class"):
        first_per_class(arrays, 0, name="--eval-per-class")
