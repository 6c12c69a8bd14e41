"""The coordinator: which models need work, handing them to a backend, retrying lost workers, progress.

The coordinator does no model work itself (it hashes files and reads records), so it runs happily on a
laptop or a cluster's head node while the workers do the scans. A model is retried only when its worker
was lost (killed, crashed, timed out, its node died): a model the tool refuses or an error in the tool
would fail the same way again, so those are reported at once.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from .inputs import FleetItem
from .merge import merge
from .store import Store, model_sha256, result_key, tool_version
from .worker import Job, Task

Log = Callable[[str], None]


class Backend(Protocol):
    slots: int

    def describe(self) -> str: ...
    def submit(self, task: Task) -> None: ...
    def poll(self, timeout: float) -> list[tuple[Task, dict[str, Any] | None, str | None]]: ...
    def kill(self, task: Task, reason: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class Entry:
    """One input model of the run and what the coordinator knows of it."""

    item: FleetItem
    key: str | None = None
    sha256: str | None = None
    error: str | None = None  # why it cannot even be handed to a worker (unreadable file)


@dataclass
class FleetResult:
    index: dict[str, Any]
    exit_code: int
    processed: int  # models a worker was started for in this run
    skipped: int  # models already done by an earlier run
    retries: int  # attempts started again after a lost worker
    seconds: float
    log: list[str] = field(default_factory=list)


def stderr_log(line: str) -> None:
    """A progress or result line on stderr, through ``escape.console``: it quotes file names and error
    messages, which can carry a newline or a terminal escape sequence."""
    from auditor.report.escape import console

    print(console(line), file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Plain progress lines (no redrawn bar, so a CI log or a batch system's log file stays readable):
    done, failed, remaining, running, the rate of this run and the time left at that rate."""

    def __init__(self, total: int, log: Log, every: float) -> None:
        self.total, self.log, self.every = total, log, every
        self.done = self.failed = 0
        self.started = self.last = time.monotonic()

    def line(self, running: int) -> str:
        elapsed = time.monotonic() - self.started
        finished = self.done + self.failed
        remaining = self.total - finished
        rate = finished / elapsed * 3600 if elapsed > 0 and finished else 0.0
        eta = _clock(remaining / rate * 3600) if rate > 0 else "unknown"
        return (f"[fleet {_clock(elapsed)}] {self.done} done, {self.failed} failed, {remaining} remaining "
                f"({running} running) of {self.total}; {rate:.1f} models/h; ETA {eta}")

    def tick(self, running: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            self.log(self.line(running))


def plan(items: list[FleetItem], job: Job) -> list[Entry]:
    """Each input's key (the hash of its file, the tool's version and the job's configuration)."""
    version = tool_version()
    entries = []
    for item in items:
        try:
            sha = model_sha256(item.path)
        except OSError as exc:
            entries.append(Entry(item, error=f"cannot read the file: {exc.strerror or exc}"))
            continue
        entries.append(Entry(item, result_key(sha, version, job.config(item.spec_overrides)), sha))
    return entries


def run_fleet(items: list[FleetItem], output: str | Path, job: Job, backend: Callable[[], Backend], *,
              fail_on: str, retries: int = 2, timeout: float | None = None, overwrite: bool = False,
              log: Log = stderr_log, progress_every: float = 30.0) -> FleetResult:
    """Process every model of ``items`` that the store at ``output`` does not hold yet, then merge.

    ``backend`` is called only when there is work, so a rerun with nothing left starts no worker (and no
    Ray cluster). ``retries``: how many times a model whose worker was lost is started again.
    ``timeout``: seconds after which a model's worker is killed (then retried like a lost one).
    """
    with Store(output).lock():
        return _run(items, Store(output), job, backend, fail_on=fail_on, retries=retries, timeout=timeout,
                    overwrite=overwrite, log=log, progress_every=progress_every)


def _run(items: list[FleetItem], store: Store, job: Job, backend: Callable[[], Backend], *, fail_on: str,
         retries: int, timeout: float | None, overwrite: bool, log: Log, progress_every: float) -> FleetResult:
    started = time.monotonic()
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        log(line)

    entries = plan(items, job)
    unique: dict[str, Entry] = {}
    for entry in entries:
        if entry.key is not None:
            unique.setdefault(entry.key, entry)
    todo = [e for e in unique.values() if overwrite or store.done(e.key) is None]  # type: ignore[arg-type]
    skipped = len(unique) - len(todo)
    unreadable = sum(1 for e in entries if e.key is None)
    say(f"fleet {job.command}: {len(entries)} model(s), {skipped} already done, {len(todo)} to do"
        + (f", {unreadable} unreadable" if unreadable else "") + f"; results in {store.root}")
    store.clean_partial({e.key for e in todo})  # type: ignore[misc]
    retried = 0
    if todo:
        runner = backend()
        say(f"fleet: {runner.describe()}")
        try:
            retried = _schedule(todo, store, job, runner, retries, timeout, Progress(len(todo), say, progress_every),
                                say)
        finally:
            runner.close()
    index = merge(store, entries, job.command, fail_on, job.config({}), tool_version())
    counts = index["counts"]
    say(f"fleet {job.command}: {counts['done']} done, {counts['failed']} failed of {counts['models']}; "
        f"exit code {index['exit_code']}; summary in {store.root / 'summary.md'}")
    return FleetResult(index=index, exit_code=index["exit_code"], processed=len(todo), skipped=skipped,
                       retries=retried, seconds=time.monotonic() - started, log=lines)


def _schedule(todo: list[Entry], store: Store, job: Job, runner: Backend, retries: int, timeout: float | None,
              progress: Progress, say: Log) -> int:
    """Keep the backend's slots busy until every model is done or failed; returns how many retries ran."""
    pending = deque(Task(key=e.key, path=str(e.item.path), job=job, spec_overrides=e.item.spec_overrides,  # type: ignore[arg-type]
                         store=str(store.root)) for e in todo)
    running: dict[str, tuple[Task, float]] = {}
    retried = 0
    finished: list[Any] = []
    while pending or running:
        while pending and len(running) < runner.slots:
            task = pending.popleft()
            runner.submit(task)
            running[task.key] = (task, time.monotonic())
        if finished:  # after refilling the slots, so that the line counts the models now running
            progress.tick(len(running), force=True)
        finished = runner.poll(timeout=1.0)
        for task, record, reason in finished:
            running.pop(task.key, None)
            if record is not None and record.get("status") == "done":
                progress.done += 1
                verdict = record.get("verdict") or {}
                purified = f", purified model {verdict['purified']}" if verdict.get("purified") else ""
                say(f"fleet: {task.path}: {verdict.get('verdict')}{purified} in {record.get('seconds', 0):.0f} s"
                    + (f" (attempt {task.attempt})" if task.attempt > 1 else ""))
            elif record is not None:
                progress.failed += 1
                store.fail(task.key, record)
                say(f"fleet: {task.path}: failed: {record.get('error')}")
            elif task.attempt <= retries:
                retried += 1
                pending.append(dataclasses.replace(task, attempt=task.attempt + 1))
                say(f"fleet: {task.path}: {reason}; retrying ({task.attempt + 1} of {retries + 1} attempts)")
            else:
                progress.failed += 1
                error = f"{reason} (on each of {task.attempt} attempt(s))"
                store.fail(task.key, {"key": task.key, "path": task.path, "command": job.command, "status": "failed",
                                      "retryable": True, "attempt": task.attempt, "error": error})
                say(f"fleet: {task.path}: failed: {error}")
        if timeout is not None:
            now = time.monotonic()
            for task, since in list(running.values()):
                if now - since > timeout:
                    runner.kill(task, f"killed after the per-model timeout of {timeout:g} s")
                    running[task.key] = (task, float("inf"))  # killed once; its end comes through poll
        progress.tick(len(running))
    if finished:
        progress.tick(0, force=True)
    return retried
