"""load_cifar10_folder unpickles only what the CIFAR-10 python format holds and checks the labels on load."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch

from lightly_siamese_ext.data import load_cifar10_folder, load_image_source

RNG = np.random.default_rng(0)


class Python2Pickler(pickle._Pickler):  # type: ignore[name-defined] # the pure-Python pickler can be taught opcodes
    """Pickles as CIFAR-10's Python 2 cPickle did (protocol 2): str and bytes as 8-bit strings (BINSTRING), numpy's
    functions under numpy 1's module names (``numpy.core.multiarray``)."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_string(self, value: Any) -> None:
        data = value.encode("latin1") if isinstance(value, str) else value
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(value)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string

    def save_global(self, obj: Any, name: Any = None) -> None:
        module, qualname = obj.__module__.replace("numpy._core", "numpy.core"), name or obj.__qualname__
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)

    dispatch[type] = save_global


def python2_pickle(value: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(value)
    return buffer.getvalue()


def write_cifar(folder: Path, batches: Dict[str, Dict[Any, Any]], dumps=pickle.dumps,
                label_names: Any = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(dumps(batch))
    names = label_names if label_names is not None else [f"class{i}" for i in range(10)]
    (folder / "batches.meta").write_bytes(dumps({"label_names": names, "num_vis": 3072}))


def real_format_batches(keys: type = str, rows: int = 4) -> Dict[str, Dict[Any, Any]]:
    """The six batches as CIFAR-10 ships them: data uint8 (N, 3072), labels a list, batch_label, filenames."""
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        fields = {"data": RNG.integers(0, 256, (rows, 3072), dtype=np.uint8),
                  "labels": [int(v) for v in RNG.integers(0, 10, rows)],
                  "batch_label": f"{name} of 6", "filenames": [f"img_{i}.png" for i in range(rows)]}
        batches[name] = {(k.encode() if keys is bytes else k): v for k, v in fields.items()}
    return batches


@pytest.mark.parametrize("dumps, keys", [
    (python2_pickle, str),  # what the cifar-10-python.tar.gz files are
    (lambda value: pickle.dumps(value, protocol=2), bytes),  # Python 3, protocol 2: bytes through _codecs.encode
    (lambda value: pickle.dumps(value, protocol=4), str),
    (lambda value: pickle.dumps(value, protocol=5), bytes),  # numpy's _frombuffer
])
def test_real_format_batches_load(tmp_path: Path, dumps: Any, keys: type) -> None:
    batches = real_format_batches(keys)
    write_cifar(tmp_path / "cifar-10-batches-py", batches, dumps)
    train = load_cifar10_folder(tmp_path)
    expected_rows = np.concatenate([b[keys("data") if keys is str else b"data"] for n, b in batches.items()
                                    if n != "test_batch"])
    assert torch.equal(train.images.flatten(1), torch.from_numpy(expected_rows))
    expected_labels: List[int] = sum((b[keys("labels") if keys is str else b"labels"] for n, b in batches.items()
                                      if n != "test_batch"), [])
    assert train.labels.tolist() == expected_labels and train.labels.dtype == torch.long
    assert train.classes == [f"class{i}" for i in range(10)]
    assert load_cifar10_folder(tmp_path, train=False).images.shape == (4, 3, 32, 32)


class WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return os.system, (f"touch {self.marker}",)


class ExecsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("payload, refused", [(WritesMarker, r"(posix|nt)\.system"), (ExecsCode, r"builtins\.exec")])
@pytest.mark.parametrize("where", ["data_batch_2", "batches.meta"])
def test_a_pickle_that_runs_code_is_refused_and_the_code_never_runs(
    tmp_path: Path, payload: Any, refused: str, where: str
) -> None:
    marker = tmp_path / "marker"
    folder = tmp_path / "data" / "cifar-10-batches-py"
    write_cifar(folder, real_format_batches())
    hostile = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "batch_label": payload(marker)}
    if where == "batches.meta":
        hostile = {"label_names": [f"c{i}" for i in range(10)], "extra": payload(marker)}
    (folder / where).write_bytes(pickle.dumps(hostile))
    with pytest.raises(ValueError, match=rf"cannot read CIFAR-10 file .*{where}: .*refused .*{refused}"):
        load_cifar10_folder(folder)
    with pytest.raises(ValueError, match=where):
        load_image_source(tmp_path / "data")  # the recipes' way in
    assert not marker.exists()


@pytest.mark.parametrize("labels, message", [
    ([1, 2, 3], r"3 labels for 4 images"),
    ([1, 2, 3, 4, 5], r"5 labels for 4 images"),
    ([0, 1, 12, 3], r"label 12 \(row 2\) is outside \[0, 10\)"),
    ([0, -1, 2, 3], r"label -1 \(row 1\) is outside \[0, 10\)"),
    ([0, 1.5, 2, 3], r"labels must be a list of ints"),
    ("oops", r"labels must be a list of ints"),
])
def test_labels_are_checked_when_loaded(tmp_path: Path, labels: Any, message: str) -> None:
    batches = real_format_batches()
    batches["data_batch_3"]["labels"] = labels
    write_cifar(tmp_path, batches)
    with pytest.raises(ValueError, match=rf"data_batch_3: {message}"):
        load_cifar10_folder(tmp_path)


def test_labels_are_checked_against_the_classes_of_batches_meta(tmp_path: Path) -> None:
    batches = real_format_batches()
    for batch in batches.values():
        batch["labels"] = [0, 1, 2, 3]
    write_cifar(tmp_path, batches, label_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"data_batch_1: label 3 \(row 3\) is outside \[0, 3\)"):
        load_cifar10_folder(tmp_path)


@pytest.mark.parametrize("batch, message", [
    ([1, 2, 3], r"expected a dict \(the CIFAR-10 python format\), got list"),
    ({"labels": [0]}, r"missing \['data'\]"),
    ({"data": np.zeros((2, 100), np.uint8), "labels": [0, 0]}, r"\(N, 3072\) uint8 rows, got shape \(2, 100\)"),
    ({"data": np.full((1, 3072), 300, np.int64), "labels": [0]}, r"uint8 pixels 0\.\.255, got int64"),
    ({"data": np.zeros((1, 3072), np.float32), "labels": [0]}, r"uint8 pixels 0\.\.255, got float32"),
])
def test_batches_that_are_not_the_format_are_refused_naming_the_file(tmp_path: Path, batch: Any, message: str) -> None:
    batches: Dict[str, Any] = real_format_batches()
    batches["data_batch_4"] = batch
    write_cifar(tmp_path, batches)
    with pytest.raises(ValueError, match=rf"data_batch_4: .*{message}"):
        load_cifar10_folder(tmp_path)


def test_damaged_batches_are_a_value_error_naming_the_file(tmp_path: Path) -> None:
    write_cifar(tmp_path, real_format_batches())
    (tmp_path / "data_batch_5").write_bytes(pickle.dumps(real_format_batches()["data_batch_5"])[:-40])
    with pytest.raises(ValueError, match=r"cannot read CIFAR-10 file .*data_batch_5"):
        load_cifar10_folder(tmp_path)
    (tmp_path / "data_batch_5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot read CIFAR-10 file .*data_batch_5"):
        load_cifar10_folder(tmp_path)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="the OS has no symbolic links")
def test_batch_files_may_be_links(tmp_path: Path) -> None:
    write_cifar(tmp_path / "store", real_format_batches())
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    try:
        for stored in (tmp_path / "store").iterdir():
            os.symlink(stored, folder / stored.name)
    except (OSError, NotImplementedError) as error:
        pytest.skip(f"cannot create symbolic links here: {error}")
    assert load_cifar10_folder(tmp_path).images.shape == (20, 3, 32, 32)
