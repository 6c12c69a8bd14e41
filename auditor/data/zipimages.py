"""Decode a zip of JPEG files laid out as ``<split>/<class>/<file>.jpg`` into uint8 arrays.

Decoding 60,000 small JPEGs takes a while on two cores, so the arrays are cached (keyed by the
zip's size and mtime) as an uncompressed ``.npz`` outside the repo.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from auditor.errors import DataError

from .locate import cache_dir


def load_zip_split(zip_path: Path, split: str, classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, H, W, 3) uint8, labels (N,) int64 and the sorted class folder names of one split."""
    stat = zip_path.stat()
    cache = cache_dir() / f"{zip_path.stem}-{split}-{stat.st_size}-{int(stat.st_mtime)}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            return data["x"], data["y"], [str(c) for c in data["classes"]]
    from PIL import Image

    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{zip_path} is not a readable zip file ({exc})") from exc
    with archive:
        members = sorted(
            n for n in archive.namelist()
            if n.startswith(split + "/") and n.lower().endswith((".jpg", ".jpeg", ".png"))
        )
        if not members:
            raise DataError(f"{zip_path} has no images under '{split}/'")
        names = classes or sorted({m.split("/")[1] for m in members})
        index = {c: i for i, c in enumerate(names)}
        images, labels = [], []
        for member in members:
            label = member.split("/")[1]
            if label not in index:
                continue
            try:
                with Image.open(io.BytesIO(archive.read(member))) as img:
                    images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
            except Exception as exc:
                raise DataError(f"{zip_path}: member {member} is not a readable image ({exc})") from exc
            labels.append(index[label])
    x = np.stack(images)
    y = np.asarray(labels, dtype=np.int64)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # per process: two runs may decode at once
    np.savez(tmp, x=x, y=y, classes=np.asarray(names))
    tmp.replace(cache)
    return x, y, names
