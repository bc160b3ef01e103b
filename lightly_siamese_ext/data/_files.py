"""Which files of an ImageFolder are images, and how each is read: the rules of
:mod:`lightly_siamese_ext.data.image_folder` (hidden entries, links, non-regular files), in one place."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Tuple

from torchvision.datasets.folder import IMG_EXTENSIONS

from lightly_siamese_ext.data.arrays import PathLike

logger = logging.getLogger(__name__)

# Non-blocking: opening a FIFO that slipped in after the listing returns at once instead of waiting for a writer.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


class ListedImage(NamedTuple):
    """One image of an ImageFolder: ``path`` as listed (named in messages and in the cache key), ``real`` the file to
    read for a link (its target's real path; None for a regular file), ``target_stat`` that target's stat, and
    ``racy`` whether it changed so recently that the cache must record its content hash."""

    path: str
    label: int
    real: Optional[str] = None
    target_stat: Optional[os.stat_result] = None
    racy: bool = False


def visible_entries(folder: PathLike) -> List[os.DirEntry]:
    """The entries of ``folder`` whose names do not start with ".": the one place hidden files and folders are left
    out (``.ipynb_checkpoints``, ``.DS_Store``, ``.git``), for :func:`load_image_folder` and the data source
    detection alike. Unsorted."""
    try:
        with os.scandir(folder) as entries:
            return [entry for entry in entries if not entry.name.startswith(".")]
    except OSError as error:
        raise ValueError(f"cannot list the folder {folder}: {error.strerror or error}") from error


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(os.path.join(real_root, ""))


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _skip_folder_link(entry: os.DirEntry, root: Path, real_root: str) -> None:
    """A link to a folder is never followed: skipped with a warning inside the root, a ValueError outside it."""
    target = os.path.realpath(entry.path)
    if not _inside(target, real_root):
        raise ValueError(
            f"{entry.path} is a link to the folder {target}, outside the image folder {root}: nothing outside it is "
            "read; move or copy the images inside, or load their real folder"
        )
    logger.warning(
        "%s is a link to the folder %s: links to folders are not followed (no image is read twice and no link "
        "loop is walked); the images inside %s are read where they really are", entry.path, target, root,
    )


def _class_folders(root: Path, real_root: str) -> List[str]:
    """torchvision's classes: the sorted names of the root's (visible, real) folders."""
    classes = []
    for entry in visible_entries(root):
        if entry.is_symlink():
            if entry.is_dir():
                _skip_folder_link(entry, root, real_root)
        elif entry.is_dir(follow_symlinks=False):
            classes.append(entry.name)
    if not classes:
        raise FileNotFoundError(f"found no class folder (<class>/<image>) in the image folder {root}")
    return sorted(classes)


def _files_under(folder: str) -> Iterator[Tuple[str, os.DirEntry]]:
    """(parent folder, entry) for every visible entry below ``folder`` that is not a real folder; real folders are
    descended into, links are yielded (never followed)."""
    pending = [folder]
    while pending:
        current = pending.pop()
        for entry in visible_entries(current):
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            else:
                yield current, entry


def _linked_image(entry: os.DirEntry, label: int, root: Path, real_root: str) -> Optional[ListedImage]:
    """The image a link names, None for a link to skip; a ValueError for one that leaves the root or is broken."""
    if entry.is_dir():
        _skip_folder_link(entry, root, real_root)
        return None
    if not _is_image_name(entry.name):
        return None
    target = os.path.realpath(entry.path)
    if not _inside(target, real_root):
        raise ValueError(
            f"{entry.path} is a link to {target}, outside the image folder {root}: nothing outside it is read; "
            "move or copy the image inside"
        )
    try:
        target_stat = os.stat(target)
    except OSError as error:
        raise ValueError(f"{entry.path} is a broken link (to {target}): {error.strerror or error}") from error
    if not stat.S_ISREG(target_stat.st_mode):
        raise ValueError(f"{entry.path} links to {target}, a {_kind(target_stat.st_mode)}, not a regular image file")
    return ListedImage(entry.path, label, target, target_stat)


def _listed_image(entry: os.DirEntry, label: int, root: Path, real_root: str) -> Optional[ListedImage]:
    """The image ``entry`` is, None if it is none (its name is not an image's); a ValueError if it looks like one
    but is not a regular file."""
    if entry.is_symlink():
        return _linked_image(entry, label, root, real_root)
    if not _is_image_name(entry.name):
        return None
    if entry.is_file(follow_symlinks=False):
        return ListedImage(entry.path, label)
    mode = entry.stat(follow_symlinks=False).st_mode
    raise ValueError(f"{entry.path} is a {_kind(mode)}, not a regular image file: remove it or rename it")


def list_image_folder(root: Path) -> Tuple[List[str], List[ListedImage]]:
    """The classes and images of an ImageFolder, in torchvision's order: classes sorted, then within a class the
    files sorted by (folder path, name), as ``make_dataset``'s ``sorted(os.walk(...))`` gives them."""
    real_root = os.path.realpath(root)
    classes = _class_folders(root, real_root)
    images: List[ListedImage] = []
    empty = []
    for label, name in enumerate(classes):
        found = []
        for parent, entry in _files_under(os.path.join(str(root), name)):
            image = _listed_image(entry, label, root, real_root)
            if image is not None:
                found.append((parent, entry.name, image))
        if not found:
            empty.append(name)
        images.extend(image for _, _, image in sorted(found, key=lambda item: item[:2]))
    if empty:
        raise FileNotFoundError(
            f"found no image files for the classes {', '.join(empty)} in {root} "
            f"(supported extensions: {', '.join(IMG_EXTENSIONS)})"
        )
    return classes, _read_each_file_once(images, root, real_root)


def _read_each_file_once(images: List[ListedImage], root: Path, real_root: str) -> List[ListedImage]:
    """``images`` without the links whose target is read already: as a regular file of the folder (which keeps the
    label of the class it really lies in), or through an earlier link."""
    if all(image.real is None for image in images):
        return images
    prefix = path_prefix(root)
    taken = {os.path.join(real_root, image.path[len(prefix):]) for image in images if image.real is None}
    kept, skipped = [], []
    for image in images:
        if image.real is not None:
            if image.real in taken:
                skipped.append(image.path)
                continue
            taken.add(image.real)
        kept.append(image)
    if skipped:
        logger.warning(
            "skipped %d links in %s to images that are read already (each real file is read once): %s%s",
            len(skipped), root, ", ".join(skipped[:3]), ", ..." if len(skipped) > 3 else "",
        )
    return kept


def path_prefix(root: Path) -> str:
    """``root`` as the prefix of its listed paths (with the separator), to cut relative paths off them."""
    return os.path.join(str(root), "")


def lstat_or_error(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as error:
        raise ValueError(f"cannot read image file {path}: {error.strerror or error}") from error


def read_regular_file(
    path: str, what: str = "image file", shown: Optional[str] = None, follow_link: bool = False
) -> bytes:
    """The bytes of the regular file ``path`` (``shown`` in messages), opened non-blocking and, unless
    ``follow_link``, without following a final link: a FIFO, a device or a link swapped in after the listing is a
    ValueError, never a wait."""
    shown = shown or path
    try:
        descriptor = os.open(path, _OPEN_FLAGS | (0 if follow_link else _NO_FOLLOW))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{what} not found: {shown}") from error
    except OSError as error:
        raise ValueError(f"cannot read {what} {shown}: {error.strerror or error}") from error
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{shown} is a {_kind(info.st_mode)}, not a regular {what}")
        return _read_to_end(descriptor, info.st_size)
    except OSError as error:
        raise ValueError(f"cannot read {what} {shown}: {error.strerror or error}") from error
    finally:
        os.close(descriptor)


def _read_to_end(descriptor: int, size: int) -> bytes:
    first = os.read(descriptor, size + 1)  # one read holds the whole file when its size is as stat said
    if len(first) == size:
        return first
    parts = [first]
    while True:
        part = os.read(descriptor, 1 << 20)
        if not part:
            return b"".join(parts)
        parts.append(part)
