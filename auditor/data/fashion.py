"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (the original IDX files, gzipped).

Install with ``apt-get update && apt-get install -y dataset-fashion-mnist``; the files land in
``/usr/share/datasets/fashion-mnist``. ``$AUDITOR_FASHION_DIR`` or an explicit folder overrides that.
Licence: Fashion-MNIST (Zalando Research) is released under the MIT licence.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from auditor.errors import DataError

ENV_FASHION_DIR = "AUDITOR_FASHION_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES: tuple[str, ...] = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_INSTALL_HINT = ("install Debian's package (apt-get update && apt-get install -y dataset-fashion-mnist), "
                 f"or set ${ENV_FASHION_DIR} to a folder with the IDX files")


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally .gz) as a numpy array, checking magic number, dtype and size."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: not a readable (gzipped) IDX file ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: bad IDX magic number (not an IDX file)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise DataError(f"{path}: unknown IDX element type 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX body has {len(raw) - header} bytes, the header {shape} needs {expected} (truncated?)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def fashion_dir(explicit: str | Path | None = None) -> Path:
    folder = Path(explicit or os.environ.get(ENV_FASHION_DIR) or DEBIAN_DIR)
    if not folder.is_dir():
        raise DataError(f"Fashion-MNIST folder {folder} does not exist: {_INSTALL_HINT}")
    return folder


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: {stem}(.gz) is missing: {_INSTALL_HINT}")


def load_fashion_mnist(split: str = "train", folder: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28, 1) uint8 and labels (N,) int64."""
    if split not in _FILES:
        raise DataError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}")
    root = fashion_dir(folder)
    images = read_idx(_find(root, _FILES[split][0]))
    labels = read_idx(_find(root, _FILES[split][1]))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{root}: {split} images have shape {images.shape} and type {images.dtype}, expected (N, 28, 28) uint8")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{root}: {len(labels)} {split} labels for {len(images)} images")
    if labels.max() > 9:
        raise DataError(f"{root}: label {labels.max()} out of range 0..9")
    return np.ascontiguousarray(images[..., None]), labels.astype(np.int64)
