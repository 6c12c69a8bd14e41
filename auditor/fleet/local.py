"""Local mode: one worker process per model, at most ``workers`` at a time, from the standard library.

Each model gets a fresh process (the process-per-task pool of ``multiprocessing``): a model that
exhausts memory or crashes takes down its own process only, the coordinator knows exactly which model
it was (``concurrent.futures`` breaks the whole pool and cannot tell), and memory a model held is
returned to the system before the next one starts. The processes come from a ``forkserver`` that has
imported torch and the pipeline once, so a new worker starts in a fraction of a second; the server never
ran torch itself, so forking it is safe with OpenMP.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from .worker import Task, Worker, run_task

# what a scan imports, once in the server rather than in every worker (about 2 s each on a small CPU);
# none of these starts threads at import, so the server stays safe to fork
PRELOAD = ["auditor.fleet.worker", "auditor.pipeline", "auditor.report", "converters.ops", "onnx2torch",
           "onnxruntime", "PIL.Image", "sympy"]


def _context() -> Any:
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


def _child(worker: Worker, task: Task, conn: Connection, memory_mb: int | None) -> None:
    """The worker process: bound its address space (a runaway model then fails with MemoryError in this
    process, not by the kernel's OOM killer picking a process), run the task, send the record."""
    if memory_mb:
        import resource

        limit = int(memory_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    record = worker(task)
    conn.send(record)
    conn.close()


def exit_reason(code: int | None) -> str:
    """How a worker process ended, in words (a negative exit code is the signal that killed it)."""
    if code is None:
        return "worker did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with code {code} before returning a result"


class LocalBackend:
    """Runs tasks in local worker processes; ``poll`` reports each finished task with its record, or with
    the reason its process ended without one (a crash, a kill: the coordinator retries those)."""

    def __init__(self, workers: int, memory_mb: int | None = None, worker: Worker = run_task) -> None:
        self.slots = max(1, int(workers))
        self.memory_mb = memory_mb
        self.worker = worker
        self.ctx = _context()
        self.running: dict[str, tuple[Task, Any, Connection]] = {}
        self.killed: dict[str, str] = {}

    def describe(self) -> str:
        limit = f", {self.memory_mb} MB each" if self.memory_mb else ""
        return f"local, {self.slots} worker process(es){limit}"

    def submit(self, task: Task) -> None:
        reader, writer = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(target=_child, args=(self.worker, task, writer, self.memory_mb),
                                   name=f"auditor-fleet-{task.key}", daemon=True)
        process.start()
        writer.close()  # only the child holds the writing end: its death reads as EOF here
        self.running[task.key] = (task, process, reader)

    def poll(self, timeout: float) -> list[tuple[Task, dict[str, Any] | None, str | None]]:
        """Tasks that finished within ``timeout`` seconds: (task, record, None) or (task, None, reason)."""
        if not self.running:
            time.sleep(min(timeout, 0.05))
            return []
        waitables = [reader for _, _, reader in self.running.values()]
        waitables += [process.sentinel for _, process, _ in self.running.values()]
        wait(waitables, timeout)
        finished = []
        for key, (task, process, reader) in list(self.running.items()):
            record = None
            if reader.poll():
                try:
                    record = reader.recv()
                except (EOFError, OSError):
                    record = None
            elif process.is_alive():
                continue
            process.join(timeout=5)
            if process.is_alive():  # sent its record but hangs on exit: not our problem any more
                process.kill()
                process.join()
            reader.close()
            del self.running[key]
            reason = None if record is not None else self.killed.pop(key, exit_reason(process.exitcode))
            finished.append((task, record, reason))
        return finished

    def kill(self, task: Task, reason: str) -> None:
        entry = self.running.get(task.key)
        if entry is not None:
            self.killed[task.key] = reason
            entry[1].kill()

    def close(self) -> None:
        for key in list(self.running):
            self.kill(self.running[key][0], "the fleet run stopped")
        for _, process, reader in self.running.values():
            process.join(timeout=5)
            reader.close()
        self.running.clear()
