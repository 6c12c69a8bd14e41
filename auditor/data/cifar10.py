"""CIFAR-10 from the project's shared data folder (``cifar10.zip``, JPEG members).

Licence: CIFAR-10 (Krizhevsky, 2009) is a freely redistributed research data set; anything the
project ships that derives from it (sample models, the evaluation subset) says so in docs/zoo.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from auditor.errors import DataError

from .locate import data_file
from .zipimages import load_zip_split

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_FILE = "cifar10.zip"


def load_cifar10(split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 of the 'train' or 'test' split."""
    if split not in ("train", "test"):
        raise DataError(f"CIFAR-10 has splits 'train' and 'test', not {split!r}")
    path = data_file(CIFAR10_FILE, data_dir)
    x, y, names = load_zip_split(path, split, list(CIFAR10_CLASSES))
    if tuple(names) != CIFAR10_CLASSES:
        raise DataError(f"{path}: class folders {names} are not CIFAR-10's ten classes")
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: images have shape {x.shape[1:]}, expected 32x32 RGB")
    expected = 50000 if split == "train" else 10000
    if len(x) != expected:
        raise DataError(f"{path}: the {split} split has {len(x)} images, expected {expected}")
    return x, y
