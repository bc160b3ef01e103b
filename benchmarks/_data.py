"""Images for the benchmarks: the shared CIFAR-10 JPEG copy when it is there, random pixels otherwise."""

from __future__ import annotations

import functools
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_CIFAR10 = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cifar10" / "train.tar.gz"


@functools.lru_cache(maxsize=4)
def cifar_images(count: int) -> np.ndarray:
    """(count, 32, 32, 3) uint8: the first ``count`` shared CIFAR-10 JPEGs, or random pixels without them."""
    if not SHARED_CIFAR10.exists():
        return np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    images = []
    with tarfile.open(SHARED_CIFAR10, "r:gz") as archive:
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
