"""The fleet's output folder: one result per model, keyed so that a rerun knows what is done.

Layout::

    OUT/
      index.json  summary.md  report.sarif      the merged result (rewritten at the end of each run)
      models/<key>/                             a model's normal report (and, for audit, its purified model)
      models/<key>/fleet.json                   written last: its presence means the folder is complete
      failed/<key>.json                         the last failure of a model, with the reason

The key is a hash of the model file's sha256, the tool's version (auditor and torch, which change the
figures) and the job's configuration: a rerun with the same models and settings finds every finished
model and skips it; a changed file, tool or setting gives a new key and is redone. Moving or renaming a
file does not change its key.

Nothing half-written counts: the report files appear together (the pipeline's own staging), and
``fleet.json`` is written under a temporary name and renamed into place after them. A folder without it
(a worker killed mid-write) is removed before the model's next attempt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from converters import sha256_file

INDEX, SUMMARY, SARIF = "index.json", "summary.md", "report.sarif"
RECORD = "fleet.json"
KEY_LENGTH = 16  # hex characters: 64 bits, far from colliding in any registry


def tool_version() -> dict[str, str]:
    """What the figures depend on besides the model and the settings."""
    import torch

    from auditor import __version__

    return {"auditor": __version__, "torch": torch.__version__}


def config_digest(config: dict[str, Any]) -> str:
    """A stable hash of a JSON-able configuration (keys sorted, so dict order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def result_key(model_sha256: str, version: dict[str, str], config: dict[str, Any]) -> str:
    """The name of a model's result: sha256 of the model, the tool's version and the configuration."""
    body = json.dumps({"model": model_sha256, "tool": version, "config": config_digest(config)}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:KEY_LENGTH]


def model_sha256(path: Path) -> str:
    return sha256_file(path)


def write_json_atomic(path: Path, value: Any) -> Path:
    """Write under a temporary name in the same folder, then rename: a reader (or a rerun after a
    crash) sees the old file or the new one, never a truncated one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


LOCK = ".fleet.lock"


class Store:
    """The output folder of a fleet run, shared by the coordinator and the workers (on a cluster it must be
    the same path on every node: a shared file system)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def model_dir(self, key: str) -> Path:
        return self.root / "models" / key

    def failure_path(self, key: str) -> Path:
        return self.root / "failed" / f"{key}.json"

    def done(self, key: str) -> dict[str, Any] | None:
        """The finished record of ``key``, or None when the model has to be (re)done."""
        path = self.model_dir(key) / RECORD
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if record.get("key") != key or record.get("status") != "done":
            return None
        return record

    def failure(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.failure_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def prepare(self, key: str) -> Path:
        """An empty folder for a new attempt at ``key``: what an earlier attempt left (a worker killed before
        its record was written) is removed, so the attempt starts from nothing."""
        folder = self.model_dir(key)
        if folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        return folder

    def finish(self, key: str, record: dict[str, Any]) -> None:
        """Mark ``key`` done (its report is already in place) and forget any earlier failure."""
        write_json_atomic(self.model_dir(key) / RECORD, record)
        try:
            self.failure_path(key).unlink()
        except FileNotFoundError:
            pass

    def fail(self, key: str, record: dict[str, Any]) -> None:
        """Record why ``key`` failed, and remove whatever its attempts left in its folder."""
        folder = self.model_dir(key)
        if folder.exists() and self.done(key) is None:
            shutil.rmtree(folder, ignore_errors=True)
        write_json_atomic(self.failure_path(key), record)

    def clean_partial(self, keys: set[str]) -> None:
        """Remove folders of ``keys`` that hold no record (left by a run that was killed)."""
        for key in keys:
            folder = self.model_dir(key)
            if folder.exists() and self.done(key) is None:
                shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One coordinator per output folder: a second run on the same folder would start the same models
        and clear each other's attempts. An advisory lock (``flock``) that the system releases when the
        process ends, however it ends, so a killed run leaves no stale lock behind."""
        import fcntl

        from auditor.errors import AuditorError

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise AuditorError(f"{self.root} is in use by another fleet run; wait for it or choose another "
                                   "output folder") from exc
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
