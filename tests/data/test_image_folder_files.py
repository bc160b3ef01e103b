"""What load_image_folder reads: torchvision's classes and order, no hidden entries, no link followed out of the
root or round a loop, each real file once, and anything that is not a regular image refused by name, never
waited on."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import ImageFolder

import lightly_siamese_ext.data._decoding as decoding_module
import lightly_siamese_ext.data.image_folder as image_folder_module
from lightly_siamese_ext.data._files import ListedImage
from lightly_siamese_ext.data import ImageArrays, load_image_folder, load_image_source

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink"), reason="the OS has no symbolic links")
not_as_root = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                                 reason="root reads files whatever their permissions")


def write_image(path: Path, value: int) -> None:
    """A 4 x 4 PNG whose every pixel is ``value``: the loaded tensor then says which file went where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(path)


def write_folder(root: Path) -> Dict[str, int]:
    """cat/0..2.png and dog/0..2.png with values 10..15; returns relative path -> value."""
    values = {}
    for c, name in enumerate(["cat", "dog"]):
        for i in range(3):
            values[f"{name}/{i}.png"] = 10 + 3 * c + i
            write_image(root / name / f"{i}.png", values[f"{name}/{i}.png"])
    return values


def pixel_values(arrays: ImageArrays) -> List[int]:
    return arrays.images[:, 0, 0, 0].tolist()


def symlink(link: Path, target: str) -> None:
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError) as error:  # Windows without the privilege
        pytest.skip(f"cannot create symbolic links here: {error}")


def test_order_and_labels_are_torchvisions(tmp_path: Path) -> None:
    root = tmp_path / "root"
    names = ["b/2.png", "b/10.PNG", "b/a/x.jpeg", "b/a b/y.png", "b/a-b/z.bmp", "b/a/x/deep.png", "a/only.JPG",
             "c d/1.tif", "c d/sub/0.png"]
    for value, name in enumerate(names, start=1):
        write_image(root / name, value * 10)
    (root / "b" / "notes.txt").write_text("not an image")
    arrays = load_image_folder(root, num_threads=2)
    reference = ImageFolder(str(root))
    value_of = {str(root / name): value * 10 for value, name in enumerate(names, start=1)}
    assert arrays.classes == reference.classes and arrays.labels.tolist() == reference.targets
    assert pixel_values(arrays) == [pytest.approx(value_of[path], abs=2) for path, _ in reference.samples]


def test_hidden_folders_and_files_are_ignored_everywhere_alike(tmp_path: Path) -> None:
    root = tmp_path / "root"
    values = write_folder(root)
    write_image(root / ".ipynb_checkpoints" / "0-checkpoint.png", 99)
    write_image(root / "cat" / ".ipynb_checkpoints" / "0-checkpoint.png", 99)
    write_image(root / "dog" / ".hidden.png", 99)
    arrays = load_image_folder(root)
    assert arrays.classes == ["cat", "dog"] and pixel_values(arrays) == sorted(values.values())
    source = load_image_source(root, cache_dir=tmp_path / "cache")
    assert source.train.classes == ["cat", "dog"]

    only_hidden = tmp_path / "only_hidden"
    write_image(only_hidden / ".git" / "x.png", 1)
    with pytest.raises(FileNotFoundError, match="no class folder"):
        load_image_folder(only_hidden)
    with pytest.raises(FileNotFoundError, match="neither"):
        load_image_source(only_hidden)


@needs_symlinks
@pytest.mark.parametrize("link, target", [
    ("cat/loop", ".."),  # torchvision walked it 40 levels deep: 6 images became 6 + 40 x 6, all "cat"
    ("cat/again", "."),  # read cat's images twice, then 40 times
    ("kitten", "cat"),  # a class folder that is a link: not a second class with the same images
])
def test_folder_links_are_not_followed_so_no_image_is_read_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, link: str, target: str
) -> None:
    root = tmp_path / "root"
    values = write_folder(root)
    symlink(root / link, target)
    with caplog.at_level(logging.WARNING, logger="lightly_siamese_ext.data"):
        arrays = load_image_folder(root)
    assert arrays.classes == ["cat", "dog"] and arrays.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert pixel_values(arrays) == sorted(values.values())
    assert any(f"{link} is a link to the folder" in r.getMessage() and "not followed" in r.getMessage()
               for r in caplog.records)


@needs_symlinks
def test_file_links_inside_the_root_are_read_once_by_their_real_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    write_folder(root)
    write_image(root / ".pool" / "extra.png", 50)
    symlink(root / "cat" / "stolen.png", "../dog/0.png")  # dog/0.png is read as dog's, once
    symlink(root / "cat" / "alias.png", "0.png")
    symlink(root / "cat" / "extra.png", "../.pool/extra.png")  # read once, through this first link
    symlink(root / "dog" / "extra.png", "../.pool/extra.png")
    with caplog.at_level(logging.WARNING, logger="lightly_siamese_ext.data"):
        arrays = load_image_folder(root)
    assert pixel_values(arrays) == [10, 11, 12, 50, 13, 14, 15]  # cat/0..2, cat/extra.png, dog/0..2
    assert arrays.labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
    message = " ".join(record.getMessage() for record in caplog.records)
    assert "skipped 3 links" in message and "stolen.png" in message and "alias.png" in message


@needs_symlinks
@pytest.mark.parametrize("link, target", [
    ("cat/outside.png", "{outside}/x.png"),  # a file elsewhere
    ("cat/sub", "{outside}"),  # a folder elsewhere, inside a class
    ("bird", "{outside}"),  # a class folder elsewhere
    ("cat/up.png", "../../outside/x.png"),  # relative, climbing out
])
def test_links_leaving_the_root_are_refused_naming_them(tmp_path: Path, link: str, target: str) -> None:
    root = tmp_path / "root"
    write_folder(root)
    write_image(tmp_path / "outside" / "x.png", 99)
    symlink(root / link, target.format(outside=tmp_path / "outside"))
    refusal = rf"{link} is a link to .*outside the image folder .*nothing outside it is read"
    with pytest.raises(ValueError, match=refusal):
        load_image_folder(root)


@needs_symlinks
def test_a_broken_link_is_refused_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_folder(root)
    symlink(root / "cat" / "gone.png", "missing.png")
    with pytest.raises(ValueError, match=r"cat/gone\.png is a broken link"):
        load_image_folder(root)


def raised_without_waiting(load: Callable[[], object], unblock: Path) -> BaseException:
    """The exception ``load()`` raises; fails the test if it blocks (then unblocks it through the FIFO)."""
    outcome: List[BaseException] = []

    def run() -> None:
        try:
            load()
        except BaseException as error:  # noqa: B902 - handed to the test thread
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():
        os.close(os.open(unblock, os.O_WRONLY | os.O_NONBLOCK))  # a reader waits: give it an end of file
        thread.join(timeout=20)
        pytest.fail(f"loading blocked on the FIFO {unblock}")
    assert outcome, "a FIFO was loaded as an image"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the OS has no FIFOs")
def test_a_fifo_named_like_an_image_is_refused_before_decoding_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    write_folder(root)
    fifo = root / "cat" / "x.jpg"
    os.mkfifo(fifo)
    decoded = []
    with monkeypatch.context() as patch:
        patch.setattr(image_folder_module, "decode_all", lambda *args: decoded.append(args))
        error = raised_without_waiting(lambda: load_image_folder(root, num_threads=1), fifo)
    assert isinstance(error, ValueError) and decoded == []
    assert "cat/x.jpg is a FIFO (named pipe), not a regular image file" in str(error)
    # One that replaces a listed file just before it is read is refused when opened, not waited on either.
    error = raised_without_waiting(lambda: decoding_module._decode(ListedImage(str(fifo), 0)), fifo)
    assert isinstance(error, ValueError) and "x.jpg is a FIFO (named pipe), not a regular image file" in str(error)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="the OS has no Unix sockets")
def test_a_socket_named_like_an_image_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    write_folder(root)
    monkeypatch.chdir(root / "cat")  # a relative name keeps within the length limit of socket paths
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("x.png")
        with pytest.raises(ValueError, match=r"cat/x\.png is a socket, not a regular image file"):
            load_image_folder(root)


def test_a_folder_named_like_an_image_is_a_folder_of_its_class(tmp_path: Path) -> None:
    root = tmp_path / "root"
    values = write_folder(root)
    write_image(root / "cat" / "x.jpg" / "inner.png", 40)
    (root / "dog" / "empty.png").mkdir()
    arrays = load_image_folder(root)
    assert pixel_values(arrays) == [10, 11, 12, 40, 13, 14, 15] and len(values) == 6


@not_as_root
def test_an_unreadable_image_or_folder_is_refused_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_folder(root)
    (root / "dog" / "1.png").chmod(0)
    with pytest.raises(ValueError, match=r"cannot read image file .*dog/1\.png: Permission denied"):
        load_image_folder(root)
    (root / "dog" / "1.png").chmod(0o644)
    (root / "dog").chmod(0)
    try:
        with pytest.raises(ValueError, match=r"cannot list the folder .*dog: Permission denied"):
            load_image_folder(root)
    finally:
        (root / "dog").chmod(0o755)
