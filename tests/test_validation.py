"""The one home of the input checks keeps one rule: the wrong kind of value is a TypeError, a value of the right
kind that is out of range (or of the wrong length or shape) a ValueError; both name the argument."""

import numpy as np
import pytest
import torch

from lightly_siamese_ext._validation import (check_choice, check_ks, check_labels, check_normalize, check_per_sample,
                                             check_positions, check_range)
from lightly_siamese_ext.data.targets import as_labels

CASES = [
    (lambda: check_range("0.2, 1.0", "scale"), TypeError, "scale must be a \\(min, max\\) pair, got str"),
    (lambda: check_range((0.2, 0.5, 1.0), "scale"), ValueError, "scale must be a \\(min, max\\) pair, got 3 values"),
    (lambda: check_range((1.0, 0.2), "scale"), ValueError, "min <= max"),
    (lambda: check_choice(1, "miner", ("all", "hard")), TypeError, "miner must be one of .* \\(a str\\), got int"),
    (lambda: check_choice("soft", "miner", ("all", "hard")), ValueError, "miner must be one of .*got 'soft'"),
    (lambda: check_ks(5, "topk"), TypeError, "topk must be a non-empty sequence of positive ints, got int"),
    (lambda: check_ks("15", "topk"), TypeError, "topk must be a non-empty sequence"),
    (lambda: check_ks([], "topk"), ValueError, "topk must be a non-empty sequence of positive ints, got an empty"),
    (lambda: check_ks([1, 0], "topk"), ValueError, "every entry of topk"),
    (lambda: check_per_sample([0.5] * 4, "angle", 4), TypeError, "angle must be a torch.Tensor"),
    (lambda: check_per_sample(torch.zeros(3), "angle", 4), ValueError, "angle must be a tensor of shape \\(4,\\)"),
    (lambda: check_normalize((0.5, 0.2)), TypeError, "normalize must be None or a dict"),
    (lambda: check_normalize({"mean": [0.5] * 3}), ValueError, "got keys \\['mean'\\]"),
    (lambda: check_normalize({"mean": "0.5", "std": [0.2] * 3}), TypeError, "normalize\\['mean'\\] must be a sequence"),
    (lambda: check_labels([0, 1], "labels"), TypeError, "labels must be a torch.Tensor"),
    (lambda: check_labels(torch.zeros(2), "labels"), TypeError, "labels must hold integer class ids"),
    (lambda: check_labels(torch.zeros(2, 1, dtype=torch.long), "labels"), ValueError, "labels must be a 1-D tensor"),
    (lambda: check_positions(torch.tensor([True, False]), "indices"), TypeError, "mask.nonzero"),
    (lambda: check_positions(torch.tensor([0.0, 1.0]), "indices"), TypeError, "indices must hold integer positions"),
    (lambda: check_positions(torch.zeros(2, 2, dtype=torch.long)), ValueError, "indices must be a 1-D tensor"),
    (lambda: check_positions([True, False]), TypeError, "mask.nonzero"),
    (lambda: check_positions(["a"]), TypeError, "indices must hold integer positions, got an array of dtype <U1"),
    (lambda: check_positions(3), TypeError, "indices must be integer positions \\(K,\\)"),
]


@pytest.mark.parametrize("call, error, message", CASES)
def test_a_wrong_kind_is_a_type_error_and_a_wrong_value_a_value_error(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()


def test_the_accepted_values_come_back_normalised() -> None:
    assert check_range([0.2, 1], "scale") == (0.2, 1.0)
    assert check_choice("semihard", "miner", ("semi_hard",), aliases={"semihard": "semi_hard"}) == "semi_hard"
    assert check_ks([5, 1], "topk") == (5, 1)
    assert check_normalize({"mean": (0, 0, 0), "std": [1, 1, 1]}) == {"mean": [0.0] * 3, "std": [1.0] * 3}
    assert check_positions(torch.tensor([3, 1], dtype=torch.int32)).dtype == torch.long
    for positions in ([3, 1], (3, 1), np.array([3, 1], dtype=np.int16)):
        assert torch.equal(check_positions(positions), torch.tensor([3, 1]))


@pytest.mark.parametrize("values, expected", [
    ([0, 2, 1], [0, 2, 1]), (np.array([0, 2, 1], dtype=np.int16), [0, 2, 1]), (torch.tensor([0, 2, 1]), [0, 2, 1]),
    (torch.tensor([False, True]), [0, 1]), ([False, True], [0, 1]),
])
def test_dataset_labels_are_the_labels_the_losses_and_the_evaluation_accept(values, expected) -> None:
    # as_labels (dataset targets) converts, then checks as check_labels does: what one accepts, the other does.
    labels = as_labels(values, "targets")
    assert labels.dtype == torch.long and labels.tolist() == expected
    assert check_labels(torch.as_tensor(np.asarray(values)), "targets").tolist() == expected


@pytest.mark.parametrize("values, error, message", [
    ([0.0, 1.0], TypeError, "targets must hold integer class ids, got dtype torch.float64"),
    (["cat", "dog"], TypeError, "targets must be numbers \\(integer class ids\\), got an array of dtype <U3"),
    ([[0, 1]], ValueError, "targets must be a 1-D tensor"),
])
def test_dataset_labels_are_refused_as_the_losses_refuse_them(values, error, message) -> None:
    with pytest.raises(error, match=message):
        as_labels(values, "targets")
    with pytest.raises(ValueError, match="targets must have one entry per image \\(3\\), got 2"):
        as_labels([0, 1], "targets", length=3)
