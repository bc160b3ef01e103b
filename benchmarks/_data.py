"""Images for the benchmarks: a CIFAR-10 JPEG archive when one is there, random pixels otherwise."""

from __future__ import annotations

import functools
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# The shared copy here; on the device machine the copy carried in the ignored .device/ folder (device_session.sh).
CIFAR10_ARCHIVES = (REPO / ".." / "shared" / "datasets" / "cifar10" / "train.tar.gz", REPO / ".device" / "train.tar.gz")


@functools.lru_cache(maxsize=4)
def cifar_images(count: int) -> np.ndarray:
    """(count, 32, 32, 3) uint8: the first ``count`` CIFAR-10 JPEGs of the archive, or random pixels without them."""
    archive_path = next((path for path in CIFAR10_ARCHIVES if path.exists()), None)
    if archive_path is None:
        return np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    images = []
    with tarfile.open(archive_path, "r:gz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".jpg"):
                with Image.open(archive.extractfile(member)) as image:  # type: ignore[arg-type]
                    images.append(np.asarray(image.convert("RGB")))
                if len(images) == count:
                    break
    return np.stack(images)


def tiled(images: np.ndarray, count: int) -> np.ndarray:
    """``images`` repeated to ``count`` rows (a full-size epoch from a sample)."""
    reps = -(-count // len(images))
    return np.concatenate([images] * reps)[:count]
