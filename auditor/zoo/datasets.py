"""The data sets zoo models are trained on, with what training and export need to know of each.

Only ``auditor zoo build`` reads them; the audit path never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from auditor.errors import AuditorError

from .arch import CIFAR10_MEAN, CIFAR10_STD
from .manifest import DATA_LICENCE

Loader = Callable[[str, "str | Path | None"], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ZooDataset:
    """One training domain: classes, image shape, normalization and the augmentation it tolerates."""

    name: str
    classes: tuple[str, ...]
    shape: tuple[int, int, int]  # (channels, height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flips keep the label (natural images), not for digits
    pad: int  # random-crop padding
    licence: str
    loader: Loader

    def load(self, split: str, data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.loader(split, data_dir)


def _cifar10(split: str, data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    from auditor.data.cifar10 import load_cifar10

    return load_cifar10(split, data_dir)


def _mnist(split: str, data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    from auditor.data.mnist import load_mnist

    return load_mnist(split, data_dir)


def _datasets() -> dict[str, ZooDataset]:
    from auditor.data.cifar10 import CIFAR10_CLASSES
    from auditor.data.mnist import MNIST_CLASSES

    return {
        "cifar10": ZooDataset("cifar10", tuple(CIFAR10_CLASSES), (3, 32, 32), CIFAR10_MEAN, CIFAR10_STD, True, 4,
                              DATA_LICENCE["cifar10"], _cifar10),
        "mnist": ZooDataset("mnist", tuple(MNIST_CLASSES), (1, 28, 28), (0.1307,), (0.3081,), False, 2,
                            DATA_LICENCE["mnist"], _mnist),
    }


def get_dataset(name: str) -> ZooDataset:
    known = _datasets()
    if name not in known:
        raise AuditorError(f"no zoo data set {name!r}; known: {', '.join(known)}")
    return known[name]
