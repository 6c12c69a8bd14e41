"""The user-facing evaluation formats: an ``.npz`` with ``x``/``y``, or a folder of class subfolders.

Both load to uint8 NHWC images and int64 labels, validated so that a wrong file fails with a
message naming the problem instead of producing a meaningless accuracy.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from auditor.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")


def validate_arrays(x: np.ndarray, y: np.ndarray, source: str, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, dtype and label range; (N,H,W) grey images become (N,H,W,1)."""
    if x.dtype != np.uint8:
        raise DataError(f"{source}: x has dtype {x.dtype}; expected uint8 pixel values 0..255")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{source}: x has shape {x.shape}; expected (N, H, W, C) with C = 1 or 3")
    if y.ndim != 1:
        raise DataError(f"{source}: y has shape {y.shape}; expected (N,) labels")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{source}: y has dtype {y.dtype}; expected integer class labels")
    if len(x) != len(y):
        raise DataError(f"{source}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{source}: no images")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise DataError(f"{source}: negative label {int(y.min())}")
    if num_classes is not None and y.max() >= num_classes:
        raise DataError(f"{source}: label {int(y.max())} is out of range for {num_classes} classes")
    return np.ascontiguousarray(x), y


def load_npz(path: str | Path, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N,H,W,C) uint8 and ``y`` (N,) from an ``.npz`` (no pickled objects allowed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        raise DataError(f"{path}: not a readable .npz file (corrupt, or not a numpy .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)}; an evaluation .npz needs x (N,H,W,C uint8) "
                                f"and y (N,) (found: {', '.join(data.files) or 'nothing'})")
            x, y = np.asarray(data["x"]), np.asarray(data["y"])
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(f"{path}: holds pickled objects or unreadable arrays ({exc}); save plain numeric arrays") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file (corrupt or truncated: {exc})") from exc
    return validate_arrays(x, y, str(path), num_classes)


def load_image_folder(path: str | Path, class_names: list[str] | None = None,
                      size: tuple[int, int] | None = None, channels: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One subfolder per class (sorted names = labels unless ``class_names`` gives the order).

    Images are converted to RGB (or L for ``channels=1``); every image must have the same size,
    or ``size`` (H, W) if given, so that nothing is silently resized.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class subfolders; expected <folder>/<class name>/<image files>")
    names = list(class_names) if class_names else folders
    unknown = [f for f in folders if f not in names]
    if unknown:
        raise DataError(f"{root}: subfolder(s) {', '.join(unknown)} are not among the class names {names}")
    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    for folder in folders:
        files = sorted(p for p in (root / folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            try:
                with Image.open(file) as img:
                    arr = np.asarray(img.convert(mode), dtype=np.uint8)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise DataError(f"{file}: not a readable image ({exc})") from exc
            if arr.ndim == 2:
                arr = arr[..., None]
            expected = size or (images[0].shape[:2] if images else arr.shape[:2])
            if arr.shape[:2] != tuple(expected):
                raise DataError(f"{file}: is {arr.shape[0]}x{arr.shape[1]}, expected {expected[0]}x{expected[1]} "
                                "like the other images (resize the data set first)")
            images.append(arr)
            labels.append(names.index(folder))
    if not images:
        raise DataError(f"{root}: the class subfolders hold no image files ({', '.join(IMAGE_SUFFIXES)})")
    x, y = validate_arrays(np.stack(images), np.asarray(labels, dtype=np.int64), str(root), len(names))
    return x, y, names


def load_eval_data(path: str | Path, expect_shape: tuple[int, int, int] | None = None,
                   class_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """An ``.npz`` file or an image folder, checked against the model's (H, W, C) if given."""
    path = Path(path)
    if path.is_dir():
        size = expect_shape[:2] if expect_shape else None
        x, y, names = load_image_folder(path, class_names, size=size, channels=expect_shape[2] if expect_shape else None)
    elif path.suffix.lower() == ".npz" or path.is_file():
        x, y = load_npz(path)
        names = None
    else:
        raise DataError(f"{path}: no such file or folder")
    if expect_shape is not None and tuple(x.shape[1:]) != tuple(expect_shape):
        raise DataError(f"{path}: images are {tuple(x.shape[1:])} (H, W, C) but the model takes {tuple(expect_shape)}")
    return x, y, names
