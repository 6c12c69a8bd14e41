"""MNIST from the project's shared data folder (``mnist.npz``: x_train, y_train, x_test, y_test).

Licence: MNIST is a freely redistributed research data set.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from auditor.errors import DataError

from .formats import validate_arrays
from .locate import data_file

MNIST_FILE = "mnist.npz"
MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))


def load_mnist(split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28, 1) uint8 and labels (N,) int64."""
    if split not in ("train", "test"):
        raise DataError(f"MNIST has splits 'train' and 'test', not {split!r}")
    path = data_file(MNIST_FILE, data_dir)
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = (f"x_{split}", f"y_{split}")
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)}; expected x_train, y_train, x_test, y_test")
            x, y = np.asarray(data[keys[0]]), np.asarray(data[keys[1]])
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable MNIST .npz ({exc})") from exc
    x, y = validate_arrays(x, y, str(path), num_classes=10)
    if x.shape[1:] != (28, 28, 1):
        raise DataError(f"{path}: images are {x.shape[1:]}, expected 28x28 grey")
    return x, y
