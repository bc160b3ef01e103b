"""Class-disjoint splits for open-set evaluation: train on some classes, evaluate on classes never seen in training
(the protocol of Siamese one-shot learning and of metric-learning retrieval benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import torch

from lightly_siamese_ext.data.arrays import ImageArrays
from lightly_siamese_ext.data.sources import ImageSource, subset

__all__ = ["OpenSetSplit", "open_set_split", "resolve_classes", "split_classes"]

ClassSpec = Union[int, str]


def resolve_classes(spec: Sequence[ClassSpec], classes: Sequence[str]) -> List[int]:
    """Class indices of ``spec``, whose entries are indices into ``classes`` or class names (``"7"`` is the class
    named "7" when there is one, else index 7). Sorted; duplicates and unknown classes are errors."""
    if isinstance(spec, (str, int)) or len(spec) == 0:
        raise ValueError(f"classes must be a non-empty sequence of class indices or names, got {spec!r}")
    indices = []
    for entry in spec:
        if isinstance(entry, str) and entry in classes:
            indices.append(list(classes).index(entry))
        elif isinstance(entry, int) or (isinstance(entry, str) and entry.strip().lstrip("-").isdigit()):
            index = int(entry)
            if not 0 <= index < len(classes):
                raise ValueError(f"class index {index} is out of range: there are {len(classes)} classes")
            indices.append(index)
        else:
            raise ValueError(f"unknown class {entry!r}; the classes are {list(classes)}")
    if len(set(indices)) != len(indices):
        raise ValueError(f"classes must not repeat a class, got {list(spec)}")
    return sorted(indices)


def split_classes(arrays: ImageArrays, held_out: Sequence[ClassSpec]) -> Tuple[ImageArrays, ImageArrays]:
    """``(seen, unseen)``: the images of every class but ``held_out``, and those of the ``held_out`` classes
    (indices or names, see :func:`resolve_classes`). Labels and class names are kept as they are."""
    held_out_ids = resolve_classes(held_out, arrays.classes)
    is_held_out = torch.isin(arrays.labels, torch.tensor(held_out_ids, device=arrays.labels.device))
    return subset(arrays, (~is_held_out).nonzero().squeeze(1)), subset(arrays, is_held_out.nonzero().squeeze(1))


@dataclass(frozen=True)
class OpenSetSplit:
    """Training images of the seen classes, evaluation images of the held-out classes, and what they are."""

    train: ImageArrays
    test: ImageArrays
    train_classes: List[int]
    test_classes: List[int]
    description: str
    embedded: bool


def open_set_split(source: ImageSource, held_out: Sequence[ClassSpec], min_classes: int = 2) -> OpenSetSplit:
    """Splits ``source`` by class: training uses the training split's images of the other classes; evaluation the
    ``held_out`` classes' images of the test split when ``source`` has one, else of the training split (never seen
    in training either way). Both sides need at least ``min_classes`` classes with 2 or more images."""
    held_out_ids = resolve_classes(held_out, source.train.classes)
    train, unseen_in_train = split_classes(source.train, held_out_ids)
    test = split_classes(source.test, held_out_ids)[1] if source.test is not None else unseen_in_train
    seen_ids = sorted(set(range(len(source.train.classes))) - set(held_out_ids))
    for side, arrays in (("training", train), ("held-out", test)):
        counts = torch.bincount(arrays.labels, minlength=len(source.train.classes))
        usable = int((counts >= 2).sum())
        if usable < min_classes:
            raise ValueError(
                f"the {side} side of the class split needs at least {min_classes} classes with >= 2 images, got "
                f"{usable} (held-out classes {held_out_ids} of {len(source.train.classes)})"
            )
    names = [source.train.classes[i] for i in held_out_ids]
    where = "its test split" if source.test is not None else "the training split (never trained on)"
    description = (f"{source.description}; training on {len(seen_ids)} classes, evaluation on the held-out "
                   f"classes {names} from {where}")
    return OpenSetSplit(train, test, seen_ids, held_out_ids, description, source.embedded)
