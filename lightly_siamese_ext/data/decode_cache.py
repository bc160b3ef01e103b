"""The ImageFolder decode cache: decoded images as .npy files keyed so that a stale cache is never read, checked on
load, rebuilt when damaged, and skipped (with a warning) where it cannot be written."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from lightly_siamese_ext._atomic import write_atomically
from lightly_siamese_ext.data._files import ListedImage, lstat_or_error, path_prefix, read_regular_file

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 2  # bump when the cache layout or the decoding changes: old caches then stop matching
# Files changed this shortly before a listing may change again within the same timestamp tick (a jiffy on Linux,
# up to 2 s on FAT) without their ctime moving: the cache records their content hash and checks it on every read.
RACY_NS = 3_000_000_000


class CacheEntry(NamedTuple):
    images: Path
    labels: Path
    manifest: Path


def _file_identity(info: os.stat_result) -> str:
    """What the cache key holds of a file's stat: any change of its content changes one of these."""
    return f"{info.st_size}\0{info.st_mtime_ns}\0{info.st_ctime_ns}\0{info.st_ino}"


def relative_path(root: Path, path: str) -> str:
    return path[len(path_prefix(root)):]


def cache_entry(
    root: Path, images: List[ListedImage], cache_dir: Path, listed_at: int
) -> Tuple[CacheEntry, List[ListedImage]]:
    """The cache files for this listing, and the images with ``racy`` set on those changed just before it."""
    cut = len(path_prefix(root))
    racy_since = listed_at - RACY_NS
    lines = [f"format={_CACHE_FORMAT}\n"]
    marked = list(images)
    for i, image in enumerate(images):
        info = image.target_stat or lstat_or_error(image.path)
        lines.append(f"{image.path[cut:]}\0{image.label}\0{_file_identity(info)}\n")
        if info.st_ctime_ns >= racy_since:
            marked[i] = image._replace(racy=True)
    stem = f"{root.name or 'images'}-{hashlib.sha256(''.join(lines).encode()).hexdigest()[:20]}"
    return CacheEntry(cache_dir / f"{stem}.images.npy", cache_dir / f"{stem}.labels.npy",
                       cache_dir / f"{stem}.json"), marked




class _DamagedCache(Exception):
    """The cache files exist but cannot be what the manifest says."""


def read_cache(
    cache: CacheEntry, root: Path, images: List[ListedImage], labels: Tensor, classes: List[str]
) -> Optional[Tensor]:
    """The cached (N, 3, H, W) images, or None to decode: when there is no cache yet, when it is damaged (a logged
    warning), or when a racy file's content changed (logged)."""
    if not os.path.lexists(cache.manifest):
        return None
    try:
        manifest, pixels = _load_checked_cache(cache, labels, classes)
    except (_DamagedCache, OSError, ValueError, EOFError) as error:
        logger.warning("the decode cache %s is damaged or unreadable (%s): decoding again and rewriting it",
                       cache.manifest, error)
        return None
    changed = _changed_racy_files(root, manifest["verify"], images)
    if changed:
        logger.info("%s changed since it was cached (within its timestamp tick): decoding again", changed)
        return None
    _forget_settled_files(cache, manifest, root, images)
    return pixels


def _forget_settled_files(cache: CacheEntry, manifest: Dict[str, Any], root: Path, images: List[ListedImage]) -> None:
    """Drops from the manifest the files just verified that are no longer racy: their content is what the cache
    holds and any later change moves their ctime, so the key alone tells from now on (best effort: the check
    simply runs again next time if the manifest cannot be rewritten)."""
    racy_now = {relative_path(root, image.path) for image in images if image.racy}
    still_racy = {relative: digest for relative, digest in manifest["verify"].items() if relative in racy_now}
    if len(still_racy) == len(manifest["verify"]):
        return
    try:
        text = json.dumps({**manifest, "verify": still_racy}).encode("utf-8")
        write_atomically(cache.manifest, lambda handle: handle.write(text))
    except OSError as error:
        logger.debug("cannot update the decode cache manifest %s: %s", cache.manifest, error)


def _load_checked_cache(cache: CacheEntry, labels: Tensor, classes: List[str]) -> Tuple[Dict[str, Any], Tensor]:
    manifest = json.loads(cache.manifest.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != _CACHE_FORMAT:
        raise _DamagedCache(f"manifest is not of cache format {_CACHE_FORMAT}")
    shape, verify = manifest.get("shape"), manifest.get("verify")
    if manifest.get("classes") != classes or not isinstance(verify, dict) or not isinstance(shape, list):
        raise _DamagedCache("manifest does not describe this folder")
    pixels = np.load(cache.images, allow_pickle=False)
    if pixels.dtype != np.uint8 or list(pixels.shape) != shape or len(pixels) != len(labels):
        raise _DamagedCache(f"images are {pixels.dtype} {pixels.shape}, the manifest says uint8 {shape}")
    if hashlib.sha256(pixels.data).hexdigest() != manifest.get("sha256"):
        raise _DamagedCache("images do not match their checksum")
    cached_labels = np.load(cache.labels, allow_pickle=False)
    if not np.array_equal(cached_labels, labels.numpy()):
        raise _DamagedCache("labels differ from the folder's")
    return manifest, torch.from_numpy(pixels)


def _changed_racy_files(root: Path, verify: Dict[str, str], images: List[ListedImage]) -> Optional[str]:
    """The first file whose content hash differs from the one the cache recorded for it (or that cannot be read
    any more), else None."""
    by_relative = {relative_path(root, image.path): image for image in images}
    for relative, recorded in verify.items():
        image = by_relative.get(relative)
        if image is None:
            return relative
        try:
            data = read_regular_file(image.real or image.path, shown=image.path)
        except (ValueError, OSError):
            return image.path  # decoding it again names the problem
        if hashlib.sha256(data).hexdigest() != recorded:
            return image.path
    return None


def write_cache(
    cache: CacheEntry, images: Tensor, labels: Tensor, root: Path, classes: List[str], verify: Dict[str, str]
) -> None:
    """Writes the cache files (each to a temporary name, then renamed; the manifest last, marking the cache
    complete); a folder that cannot be written is a logged warning."""
    pixels = images.numpy()
    manifest = {"format": _CACHE_FORMAT, "root": str(root.resolve()), "classes": classes,
                "shape": list(pixels.shape), "sha256": hashlib.sha256(pixels.data).hexdigest(), "verify": verify}
    try:
        cache.images.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache.images, lambda handle: np.save(handle, pixels))
        write_atomically(cache.labels, lambda handle: np.save(handle, labels.numpy()))
        write_atomically(cache.manifest, lambda handle: handle.write(json.dumps(manifest).encode("utf-8")))
    except OSError as error:
        logger.warning("cannot write the decode cache in %s (%s: %s): the images are loaded without it",
                       cache.images.parent, type(error).__name__, error.strerror or error)
