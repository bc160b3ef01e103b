"""The README's "Coming from ..." tables run as written and say what happens.

pytorch-metric-learning: the python block runs, then every code cell of the table: the PML and the
lightly_siamese_ext column are evaluated on the same batch and compared with the last column ("equal", the values
"PML x, ours y", or a TypeError). Lightly's SimSiam example: both code columns run row after row, Lightly's in a
namespace with the example's own ``SimSiam`` module, on a folder of PNGs; the only edits are ``EDITS``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
# (README text, what runs instead): the CPU and small batches. Each must still occur in the table's code.
EDITS = (
    ('accelerator="gpu"', 'accelerator="cpu"'),
    ('device="cuda"', 'device="cpu"'),
    ("batch_size=256", "batch_size=4"),
    ("num_workers=8", "num_workers=0"),
)


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"### {title}")
    end = min(i for i in (text.find("\n## ", start), text.find("\n### ", start + 1), len(text)) if i != -1)
    return text[start:end]


def _rows(section: str) -> list:
    """The table's body rows, each a list of cells."""
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def _code(cell: str) -> list:
    return re.findall(r"`([^`]+)`", cell)


def test_pytorch_metric_learning_table_runs_and_its_claims_hold() -> None:
    pytest.importorskip("pytorch_metric_learning")
    section = _section("Coming from pytorch-metric-learning")
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    rows = _rows(section)
    assert len(rows) >= 9
    for what, pml_cell, ours_cell, claim in rows:
        (pml_code,), (ours_code,) = _code(pml_cell), _code(ours_cell)
        pml = eval(pml_code, namespace)  # noqa: S307
        if "TypeError" in claim:
            with pytest.raises(TypeError, match=re.escape(_code(claim)[0])):
                eval(ours_code, namespace)  # noqa: S307
            continue
        ours = eval(ours_code, namespace)  # noqa: S307
        if claim == "equal":
            torch.testing.assert_close(ours, pml, rtol=1e-5, atol=1e-6, msg=what)
        else:
            stated = re.fullmatch(r"PML ([\d.]+), ours ([\d.]+)", claim)
            assert stated, f"unreadable claim {claim!r}"
            assert (f"{float(pml):.3f}", f"{float(ours):.3f}") == stated.groups(), what


class _LightlyExampleSimSiam(torch.nn.Module):
    """The model of Lightly's examples/pytorch/simsiam.py."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

        super().__init__()
        self.backbone = backbone
        self.projection_head = SimSiamProjectionHead(512, 512, 128)
        self.prediction_head = SimSiamPredictionHead(128, 64, 128)

    def forward(self, x: torch.Tensor):
        f = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(f)
        p = self.prediction_head(z)
        return z.detach(), p


def _namespace(tmp_path: Path) -> dict:
    import pytorch_lightning as pl
    import torchvision
    from lightly.data import LightlyDataset
    from lightly.loss import NegativeCosineSimilarity
    from lightly.transforms import SimSiamTransform
    from torch import nn
    from torch.utils.data import DataLoader

    import lightly_siamese_ext as lse

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    return {
        "torch": torch, "nn": nn, "torchvision": torchvision, "pl": pl, "lse": lse, "DataLoader": DataLoader,
        "LightlyDataset": LightlyDataset, "NegativeCosineSimilarity": NegativeCosineSimilarity,
        "SimSiamTransform": SimSiamTransform, "input_dir": str(tmp_path),
        "images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), "labels": torch.arange(8) % 2,
    }


@pytest.mark.filterwarnings("ignore:Starting from v1.9.0")  # Lightning on its default logger
def test_lightly_simsiam_example_table_runs_line_by_line_on_both_sides(tmp_path: Path) -> None:
    rows = _rows(_section("Coming from Lightly's SimSiam example"))
    code = [(_code(lightly_cell), _code(ours_cell)) for lightly_cell, ours_cell, _ in rows]
    every_line = " ".join(line for pair in code for side in pair for line in side)
    for old, _ in EDITS:
        assert old in every_line, f"the table no longer contains {old!r}"
    torch.manual_seed(0)
    lightly = {**_namespace(tmp_path), "SimSiam": _LightlyExampleSimSiam}
    ours = _namespace(tmp_path)
    for lightly_lines, ours_lines in code:
        for namespace, lines in ((lightly, lightly_lines), (ours, ours_lines)):
            for line in lines:
                for old, new in EDITS:
                    line = line.replace(old, new)
                exec(line, namespace)  # noqa: S102 - the README's own code
    assert torch.isfinite(lightly["loss"]) and lightly["z0"].shape == (4, 128)
    (view0, view1), _, filename = ours["dataset"][0]  # our transform inside Lightly's dataset
    assert view0.shape == view1.shape == (3, 32, 32) and filename == "0.png"
    assert ours["x0"].shape == (4, 3, 32, 32) and ours["z0"].shape == ours["p0"].shape == (4, 2048)
    assert ours["z0"].grad_fn is None and ours["p0"].requires_grad
    criterion = ours["criterion"]
    lightly_loss = 0.5 * (criterion(ours["z0"], ours["p1"]) + criterion(ours["z1"], ours["p0"]))
    torch.testing.assert_close(ours["loss"], lightly_loss)  # "the same value"
    assert ours["trainer"].world_size == 2


def test_the_architecture_table_names_every_module_and_only_modules_that_exist() -> None:
    # Its first column: a path, then file names in the same folder (`a/b.py`, `c.py`), or a folder (`a/`).
    root = README.parent
    text = README.read_text()
    start = text.index("## Architecture")
    table = text[start:text.find("\n## ", start + 1) if text.find("\n## ", start + 1) != -1 else len(text)]
    named, folders = set(), set()
    for row in _rows(table):
        paths = _code(row[0])
        folder = Path(paths[0]).parent if paths and not paths[0].endswith("/") else None
        for path in paths:
            if path.endswith("/"):
                folders.add(path.rstrip("/"))
                continue
            full = Path(path) if "/" in path else folder / path
            if "*" in path:
                continue  # recipes/*.py: every script
            assert (root / full).is_file(), f"the Architecture table names {full}, which does not exist"
            named.add(full.as_posix())
    modules = [p.relative_to(root).as_posix() for base in ("lightly_siamese_ext", "recipes")
               for p in sorted((root / base).rglob("*.py"))]
    unnamed = [m for m in modules if m not in named and not m.endswith("__init__.py")
               and not (m.startswith("recipes/") and not Path(m).name.startswith("_"))  # the scripts: recipes/*.py
               and not any(m.startswith(f + "/") for f in folders)]
    assert unnamed == [], f"modules missing from the README's Architecture table: {unnamed}"
