"""Where the real data lives and where decoded arrays are cached.

The data folder comes from ``--data-dir``, else ``$AUDITOR_DATA_DIR``, else a ``shared/data``
folder next to or above the working directory (the layout of this project's checkouts).
Decoded arrays are cached in ``$AUDITOR_CACHE_DIR`` or ``~/.cache/auditor``, never in the repo.
"""

from __future__ import annotations

import os
from pathlib import Path

from auditor.errors import DataError

ENV_DATA_DIR = "AUDITOR_DATA_DIR"
ENV_CACHE_DIR = "AUDITOR_CACHE_DIR"


def data_dir(explicit: str | Path | None = None) -> Path:
    """The folder holding cifar10.zip, tinyimagenet32.zip and mnist.npz."""
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise DataError(f"data folder {path} does not exist")
        return path
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise DataError(f"${ENV_DATA_DIR} points to {path}, which does not exist")
        return path
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        for candidate in (folder / "shared" / "data", folder.parent / "shared" / "data"):
            if candidate.is_dir():
                return candidate
    raise DataError(
        f"no data folder found: pass --data-dir or set ${ENV_DATA_DIR} to the folder that holds "
        "cifar10.zip, tinyimagenet32.zip and mnist.npz"
    )


def data_file(name: str, explicit_dir: str | Path | None = None) -> Path:
    """A named file inside the data folder, with a message that says where to put it."""
    folder = data_dir(explicit_dir)
    path = folder / name
    if not path.is_file():
        raise DataError(f"{name} is missing from {folder}: put the file there or pass --data-dir")
    return path


def cache_dir() -> Path:
    path = Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "auditor")
    path.mkdir(parents=True, exist_ok=True)
    return path
