"""``manifest.json`` of a zoo folder and its committed evaluation subset.

The manifest is rewritten atomically after each model, so a long sequential build keeps what it
has finished even if it is stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from auditor.errors import DataError

MANIFEST_NAME = "manifest.json"
EVAL_SUBSET_NAME = "cifar10_test_1000.npz"
FORMAT = "auditor-zoo-1"
DATA_LICENCE = {
    "cifar10": "CIFAR-10 (Krizhevsky, 2009), a freely redistributed research data set; models and the evaluation "
               "subset here are derived from it",
    "mnist": "MNIST (LeCun et al., 1998), a freely redistributed research data set; models and the evaluation "
             "subset here are derived from it",
}


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return {"format": FORMAT, "models": []}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise DataError(f"{path} is not a zoo manifest (no 'models' list)")
    return data


def update_manifest(folder: Path, entry: dict[str, Any]) -> Path:
    """Insert or replace one model's entry, keeping the others (under a lock: builds may run in parallel)."""
    import fcntl

    folder = Path(folder)
    from auditor.data.locate import cache_dir

    with open(cache_dir() / "zoo-manifest.lock", "w") as lock:  # outside the folder, so it is never committed
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _update_locked(folder, entry)


def _update_locked(folder: Path, entry: dict[str, Any]) -> Path:
    data = read_manifest(folder)
    models = [m for m in data["models"] if m.get("name") != entry["name"]]
    models.append(entry)
    models.sort(key=lambda m: m["name"])
    data.update({
        "format": FORMAT,
        "data_licence": DATA_LICENCE,
        "eval_subset": {
            "file": EVAL_SUBSET_NAME,
            "description": "a class-balanced sample of the CIFAR-10 test set (seeded), x uint8 (N,32,32,3), y int64",
            "licence": DATA_LICENCE["cifar10"],
        },
        "models": models,
    })
    path = folder / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def find_entry(manifest_path: Path, name: str | None = None, model_file: Path | None = None) -> dict[str, Any]:
    """A model's entry by name, or by the ONNX file it describes."""
    data = read_manifest(Path(manifest_path).parent if Path(manifest_path).name == MANIFEST_NAME else Path(manifest_path))
    for entry in data["models"]:
        if (name and entry.get("name") == name) or (model_file and entry.get("file") == Path(model_file).name):
            return entry
    wanted = name or (model_file.name if model_file else "?")
    raise DataError(f"{manifest_path}: no model entry named {wanted!r}")


def write_eval_subset(folder: Path, x_test: np.ndarray, y_test: np.ndarray, per_class: int = 100, seed: int = 0,
                      dataset: str = "cifar10") -> Path:
    """The class-balanced test subset (created once; an existing file is kept so figures stay comparable)."""
    classes = int(y_test.max()) + 1
    path = Path(folder) / (EVAL_SUBSET_NAME if dataset == "cifar10" else f"{dataset}_test_{per_class * classes}.npz")
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    picks = [np.sort(rng.choice(np.flatnonzero(y_test == c), size=per_class, replace=False))
             for c in range(classes)]
    idx = np.sort(np.concatenate(picks))
    np.savez_compressed(path, x=x_test[idx].astype(np.uint8), y=y_test[idx].astype(np.int64), test_index=idx.astype(np.int64))
    return path
