"""One model's work, as a worker process (local mode) or a Ray task runs it.

The worker calls the same library functions as ``auditor scan`` and ``auditor audit``
(``auditor.pipeline.scan`` / ``audit``) and writes the model's normal report into its own folder of the
store; it never re-implements a stage. It returns a small JSON-able record; errors the tool expects (a
model it cannot read or reproduce) come back as a failed record, not an exception, so the coordinator
can tell them from a crash: a crash is retried, a refused model is not (it would be refused again).
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .store import Store


@dataclass(frozen=True)
class Job:
    """What to do to every model: ``scan`` or ``audit``, with the options the single-model command would
    build, and the torch thread count (it changes the figures, so it is part of the result's key)."""

    command: str  # "scan" | "audit"
    options: Any  # auditor.pipeline.ScanOptions | AuditOptions
    threads: int = 1
    # detectors side by side within one model; the fleet already runs models side by side, so by default
    # one (more would put several threads on each core). Not in the key: the figures do not depend on it.
    detector_workers: int = 1

    def for_model(self, spec_overrides: dict[str, Any]) -> Any:
        """The options for one model: the manifest's overrides over the command line's."""
        if not spec_overrides:
            return self.options
        return dataclasses.replace(self.options, spec_overrides={**self.options.spec_overrides, **spec_overrides})

    def config(self, spec_overrides: dict[str, Any]) -> dict[str, Any]:
        """Everything in the job that changes a model's result, as JSON (hashed into its key)."""
        options = self.for_model(spec_overrides)
        limits = options.limits
        return {"command": self.command, "options": options.to_json(), "threads": self.threads,
                "spec_overrides": {k: list(v) if isinstance(v, tuple) else v
                                   for k, v in sorted(options.spec_overrides.items())},
                "limits": dataclasses.asdict(limits) if limits is not None else None}


@dataclass(frozen=True)
class Task:
    """One attempt at one model, sent to a worker (picklable: it crosses a process or a Ray node)."""

    key: str
    path: str
    job: Job
    spec_overrides: dict[str, Any]
    store: str
    attempt: int = 1


_VERDICT_KEYS = ("verdict", "score", "suspected_targets", "purified", "purified_passes")
Worker = Callable[[Task], dict[str, Any]]


def run_task(task: Task) -> dict[str, Any]:
    """Do one model and return its record (``status`` ``done`` or ``failed``). On success the report is in
    ``models/<key>/`` and the record is written beside it, last."""
    import torch
    from converters.errors import ModelError

    from auditor import pipeline

    torch.set_num_threads(task.job.threads)
    store = Store(task.store)
    started = time.perf_counter()
    base = {"key": task.key, "path": task.path, "command": task.job.command, "attempt": task.attempt}
    folder = store.prepare(task.key)
    options = dataclasses.replace(task.job.for_model(task.spec_overrides), overwrite=True)
    options.detection.threads = task.job.threads
    options.detection.workers = task.job.detector_workers
    try:
        if task.job.command == "scan":
            result = pipeline.scan(Path(task.path), folder, options)
            report = result.report
        elif task.job.command == "audit":
            output = folder / f"{Path(task.path).stem}.purified.onnx"
            report = pipeline.audit(Path(task.path), output, folder, options).report
        else:
            raise ValueError(f"unknown fleet command {task.job.command!r}")
    except ModelError as exc:
        return {**base, "status": "failed", "retryable": False, "error": str(exc),
                "seconds": round(time.perf_counter() - started, 3)}
    except Exception as exc:  # a bug or a resource error: reported with its type, not retried (it is deterministic)
        return {**base, "status": "failed", "retryable": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8), "seconds": round(time.perf_counter() - started, 3)}
    verdict = report.get("verdict") or {}
    record = {**base, "status": "done", "sha256": report["input"]["sha256"],
              "verdict": {k: verdict.get(k) for k in _VERDICT_KEYS if k in verdict},
              "seconds": round(time.perf_counter() - started, 3),
              "report_seconds": (report.get("timings") or {}).get("total")}
    store.finish(task.key, record)
    return record
