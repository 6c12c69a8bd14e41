"""Tiny-ImageNet 32x32: the public, out-of-distribution data the bundled generator is trained on.

The generator must never see the audited models' data (CIFAR-10), so it is trained on this set.
A fixed held-out part (5,000 images, seed 0) is never trained on; the Frechet check compares
generator samples against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .locate import data_file
from .zipimages import load_zip_split

ZIP_NAME = "tinyimagenet32.zip"
HOLDOUT_SIZE = 5000
HOLDOUT_SEED = 0


def load_tinyimagenet(data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All 60,000 images (N, 32, 32, 3) uint8, labels (N,) int64, and the 200 wnids."""
    return load_zip_split(data_file(ZIP_NAME, data_dir), "train")


def holdout_indices(n: int, size: int = HOLDOUT_SIZE, seed: int = HOLDOUT_SEED) -> np.ndarray:
    """Sorted indices of the held-out images; the same for every caller with the same n."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[:size])


def load_tinyimagenet_split(
    split: str, data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``"train"`` (55,000 images for the generator) or ``"holdout"`` (5,000, never trained on)."""
    if split not in ("train", "holdout"):
        raise ValueError(f"split must be 'train' or 'holdout', not {split!r}")
    x, y, _ = load_tinyimagenet(data_dir)
    held = holdout_indices(len(x))
    mask = np.zeros(len(x), dtype=bool)
    mask[held] = True
    keep = mask if split == "holdout" else ~mask
    return x[keep], y[keep]


def class_words(data_dir: str | Path | None = None) -> dict[str, str]:
    """wnid -> human-readable name, from words.txt inside the zip."""
    import zipfile

    with zipfile.ZipFile(data_file(ZIP_NAME, data_dir)) as archive:
        text = archive.read("words.txt").decode("utf-8", errors="replace")
    words = {}
    for line in text.splitlines():
        if "\t" in line:
            wnid, name = line.split("\t", 1)
            words[wnid.strip()] = name.strip()
    return words
