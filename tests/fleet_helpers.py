"""Worker functions for tests/test_fleet.py that lose their process, as a killed worker or a lost node
does: importable by the worker processes (pickled by reference), unlike functions inside a test."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from auditor.fleet import Store, Task, run_task


def _half_written(task: Task) -> None:
    """What a worker killed mid-write leaves: a folder with part of a report and no record."""
    folder = Store(task.store).prepare(task.key)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text('{"truncated": ')


def crash_once(task: Task) -> dict[str, Any]:
    """The first attempt at each model writes half a report and is killed (SIGKILL, as the OOM killer
    does); later attempts do the real work."""
    marker = Path(task.store).parent / f"crashed-{task.key}"
    if not marker.exists():
        marker.write_text("killed once")
        _half_written(task)
        os.kill(os.getpid(), signal.SIGKILL)
    return run_task(task)


def always_crash(task: Task) -> dict[str, Any]:
    _half_written(task)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def hang(task: Task) -> dict[str, Any]:
    """A worker stuck on a model (a pathological graph, a deadlock): only the per-model timeout ends it."""
    import time

    time.sleep(600)
    raise AssertionError("unreachable")
