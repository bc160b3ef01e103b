"""An ImageFolder directory (``root/<class>/<image>``) decoded once into one uint8 (N, 3, H, W) tensor, optionally
cached as .npy (:mod:`lightly_siamese_ext.data.decode_cache`).

What counts as an image of an ImageFolder (:func:`load_image_folder`):

* Hidden files and folders (names starting with ".": ``.ipynb_checkpoints``, ``.DS_Store``, ``.git``) are ignored
  everywhere, by one function (``_files.visible_entries``) that :mod:`lightly_siamese_ext.data.sources` uses too.
* Files whose names do not end in one of torchvision's ``IMG_EXTENSIONS`` (any case) are ignored, as torchvision does.
* Nothing outside the root is read and every real file is read at most once. Links to folders are never followed
  (so no link loop is walked and no image is read twice under two labels): one pointing inside the root is skipped
  with a logged warning (the images there are read where they really are), one leaving the root is a
  ``ValueError``. A link to an image file inside the root is read once, by its real path: when that file is read
  anyway (it lies in a class folder itself) or an earlier link already read it, the link is skipped with a
  warning. A link to a file outside the root, or a broken link, is a ``ValueError``.
* Anything else named like an image that is not a readable regular file (a FIFO, a socket, a device, an unreadable
  file) is a ``ValueError`` naming it, found before anything is decoded; files are opened non-blocking, so nothing
  can hang the loader. A folder named like an image is a folder: its images belong to its class, as in torchvision.

Every refusal is a ``ValueError`` (``FileNotFoundError`` / ``NotADirectoryError`` for missing paths) whose one-line
message names the path and what was expected.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import torch

from lightly_siamese_ext.data._decoding import decode_all
from lightly_siamese_ext.data._files import list_image_folder
from lightly_siamese_ext.data.arrays import ImageArrays, PathLike
from lightly_siamese_ext._validation import check_folder_path
from lightly_siamese_ext.data.decode_cache import cache_entry, read_cache, relative_path, write_cache

__all__ = ["load_image_folder"]

logger = logging.getLogger(__name__)


def load_image_folder(
    root: PathLike, cache_dir: Optional[PathLike] = None, num_threads: Optional[int] = None
) -> ImageArrays:
    """Decodes every image of an ImageFolder directory (``root/<class>/<image>``) into one tensor.

    Classes and their indices are torchvision's ``ImageFolder``'s (sorted folder names), images in its order, with
    the rules of this module's docstring for hidden files, links and files that are not regular images. Images are
    decoded to RGB by Pillow on ``num_threads`` threads (Pillow releases the GIL while decoding) and must all have
    the same size. Modes other than RGB are converted without clipping: 16-bit grey keeps its high byte (``>> 8``),
    float images are taken as 0..1, alpha is dropped (``_decoding.as_rgb8``). A file that cannot be read or decoded,
    and a possible decompression bomb (more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels), raise ``ValueError``
    naming it.

    With ``cache_dir``, the result is stored there as ``.npy`` files keyed by a hash of every image's relative path,
    label, size, modification time, status-change time (ctime) and inode: later calls load it instead of decoding,
    and any change of a file makes a new key, so a stale cache is never read. The ctime and inode catch what the
    modification time alone misses (``os.utime``, ``rsync -t`` or ``cp -p`` putting an old mtime back): the kernel
    sets them on every change and no one can set them back. A file changed so recently (3 s) that a next change
    could fall in the same timestamp tick has its content hash recorded and checked when the cache is read, until
    a read finds it settled.
    The cache's own files are checked (format, shape, labels and a sha256 of the pixels): damaged, truncated or
    unreadable ones are rebuilt with a logged warning; a cache folder that cannot be written (permissions, full
    disk) gives a logged warning and the images are returned uncached, leaving no partial file behind.
    """
    root = _existing_folder(root)
    check_folder_path(cache_dir, "cache_dir")  # before decoding, not when the cache is written
    listed_at = time.time_ns()
    classes, images = list_image_folder(root)
    labels = torch.tensor([image.label for image in images], dtype=torch.long)
    cache = None
    if cache_dir is not None:
        cache, images = cache_entry(root, images, Path(cache_dir), listed_at)
        cached = read_cache(cache, root, images, labels, classes)
        if cached is not None:
            logger.info("loaded the decoded images of %s from the cache %s", root, cache.images)
            return ImageArrays(cached, labels, classes)
    pixels, hashes = decode_all(images, num_threads)
    if cache is not None:
        verify = {relative_path(root, image.path): digest for image, digest in zip(images, hashes) if digest is not None}
        write_cache(cache, pixels, labels, root, classes, verify)
    return ImageArrays(pixels, labels, classes)


def _existing_folder(root: PathLike) -> Path:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {root} is a file, not a folder")
    return root
