"""The README's API tour runs as written (on the CPU, at small sizes): every name, argument and shape it shows is real.

The tour leaves its inputs to the reader (``images_uint8``, ``labels``, ...); they are defined here. The only edits to
its text are the ones in ``EDITS``, each of which must still match exactly once, so a README change that breaks the
tour, or that these edits no longer fit, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import lightly_siamese_ext as lse

README = Path(__file__).resolve().parents[1] / "README.md"
IMAGES = 24  # retrieval_metrics' default Recall@16 needs more than 16 embeddings
CLASSES = 4
BATCH = 8
# (README text, what runs instead): the CPU, and batches the few test images fill (seconds, not minutes).
EDITS = (
    ('batch_size=512, device="cuda"', f'batch_size={BATCH}, device="cpu"'),
    ("PKSampler(labels, p=16, k=8)", "PKSampler(labels, p=4, k=4)"),
)


def _api_tour() -> str:
    text = README.read_text()
    section = text[text.index("## API tour"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no python block under '## API tour'"
    code = match.group(1)
    for old, new in EDITS:
        assert code.count(old) == 1, f"README API tour no longer contains {old!r} exactly once"
        code = code.replace(old, new)
    return code


class _ImageDataset(TensorDataset):
    """(image, target) items with a ``targets`` list, as torchvision's datasets have."""

    @property
    def targets(self) -> list:
        return self.tensors[1].tolist()


def _inputs() -> dict:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(IMAGES) % CLASSES
    images = torch.randint(0, 256, (IMAGES, 3, 32, 32), dtype=torch.uint8, generator=generator)
    features = F.normalize(torch.randn(400, 32, generator=generator), dim=1)  # the kNN's k=200 needs the bank
    feature_labels = torch.arange(400) % CLASSES
    return {
        "images_uint8": images,
        "labels": labels,
        "same": (torch.arange(BATCH) % 2).float(),
        "embeddings": torch.randn(IMAGES, 128, generator=generator),
        "torchvision_or_lightly_dataset": _ImageDataset(images, labels),
        "data_dir": None,  # the embedded digits (the tour does not train on them)
        "query": features[:100], "query_labels": feature_labels[:100], "bank": features[100:],
        "bank_labels": feature_labels[100:], "train_feats": features[:300], "train_labels": feature_labels[:300],
        "test_feats": features[300:], "test_labels": feature_labels[300:],
    }


def test_readme_api_tour_runs_and_its_results_have_the_shapes_it_states() -> None:
    torch.manual_seed(0)
    namespace = _inputs()
    exec(compile(_api_tour(), str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    assert namespace["backbone"](torch.randn(2, 3, 32, 32)).shape == (2, 512)  # "(B, 512) features on 32x32 input"
    assert namespace["dim"] == namespace["encoder"](torch.randn(2, 3, 32, 32)).shape[1]  # "with its real width"
    e0, e1 = namespace["e0"], namespace["e1"]
    assert e0.shape == e1.shape == (BATCH, 128)
    assert namespace["splits"].embedded and namespace["splits"].train.images.dtype == torch.uint8
    assert namespace["features"].shape == (IMAGES, 512)  # the loader's epoch, shuffled: the same labels, in its order
    assert sorted(namespace["targets"].tolist()) == sorted(namespace["labels"].tolist())
    assert torch.isfinite(namespace["loss"]) and namespace["loss"].ndim == 0
    pairs = namespace["pairs"]
    (x0, x1), y, names = pairs[0]
    assert x0.shape == (3, 32, 32) and y in (0, 1)
    batch = next(iter(namespace["batches"]))  # P x K: 4 classes x 4 samples
    assert len(batch) == 4 * 4 and len(set(namespace["labels"][batch].tolist())) == 4
    (anchor, positive, negative), label, _ = namespace["triplets"][0]
    assert anchor.shape == (3, 32, 32) and label == namespace["labels"][0]
    assert namespace["predicted"].shape == (100, 10) and namespace["monitor"].num_samples == IMAGES
    for name in lse.__all__:  # the public API is what the tour uses
        assert name == "__version__" or f"lse.{name}" in _api_tour(), name
