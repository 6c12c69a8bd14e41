"""Ray mode: each model is one Ray task with declared resources, on an existing cluster or a local one.

Ray is an optional extra (``pip install 'auditor[ray]'``); this module imports it only when Ray mode is
asked for. Ray's own task retries are off (``max_retries=0``): the coordinator retries a task whose
worker or node died, with the same bound and the same record as local mode, so that both modes report
failures alike.

Workers read the models and write their reports themselves, so on a cluster of several machines the
models and the output folder must be at the same path on every node (a shared file system), and
auditor must be installed on every node.
"""

from __future__ import annotations

import math
import os
from typing import Any

from auditor.errors import AuditorError

from .worker import Task, Worker, run_task


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise AuditorError("Ray mode needs Ray: pip install 'auditor[ray]' (or pip install 'ray>=2.9'), "
                           "or use --workers N for local worker processes") from exc
    return ray


class RayBackend:
    """Submits tasks to Ray and reports each finished one with its record, or with the reason Ray gave
    for losing it (worker crashed, node died, out of memory, cancelled after the timeout)."""

    def __init__(self, address: str | None = None, cpus_per_task: float = 1, gpus_per_task: float = 0,
                 memory_mb: int | None = None, local_cpus: int | None = None, worker: Worker = run_task) -> None:
        ray = _import_ray()
        self.ray = ray
        self.owned = False
        if not ray.is_initialized():
            if address in (None, "", "local") and os.environ.get("RAY_ADDRESS"):
                ray.init(log_to_driver=False, configure_logging=False)  # the cluster RAY_ADDRESS names
            elif address in (None, "", "local"):
                ray.init(num_cpus=local_cpus, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            self.owned = True
        resources: dict[str, Any] = {"num_cpus": cpus_per_task, "num_gpus": gpus_per_task, "max_retries": 0}
        if memory_mb:
            resources["memory"] = int(memory_mb) * 1024 * 1024
        self.remote = ray.remote(worker).options(**resources)
        self.resources = resources
        self.slots = self._slots(cpus_per_task, gpus_per_task)
        self.running: dict[Any, Task] = {}
        self.killed: dict[str, str] = {}

    def _slots(self, cpus: float, gpus: float) -> int:
        """How many tasks to keep in flight: as many as the cluster can run at once. Keeping no more than
        that in flight makes a task's time in flight its running time, which the per-model timeout reads."""
        total = self.ray.cluster_resources()
        fits = [total.get("CPU", 1) / cpus] if cpus > 0 else []
        if gpus > 0:
            fits.append(total.get("GPU", 0) / gpus)
        if not fits:
            return max(1, int(total.get("CPU", 1)))
        slots = int(math.floor(min(fits) + 1e-9))
        if slots < 1:
            raise AuditorError(f"the Ray cluster has {total.get('CPU', 0):g} CPU(s) and {total.get('GPU', 0):g} GPU(s); "
                               f"a task asks for {cpus:g} CPU(s) and {gpus:g} GPU(s)")
        return slots

    def describe(self) -> str:
        total = self.ray.cluster_resources()
        nodes = len([n for n in self.ray.nodes() if n.get("Alive")])
        return (f"Ray, {nodes} node(s), {total.get('CPU', 0):g} CPU(s), {total.get('GPU', 0):g} GPU(s); "
                f"{self.resources['num_cpus']:g} CPU(s) and {self.resources['num_gpus']:g} GPU(s) per task, "
                f"{self.slots} at a time")

    def submit(self, task: Task) -> None:
        self.running[self.remote.remote(task)] = task

    def poll(self, timeout: float) -> list[tuple[Task, dict[str, Any] | None, str | None]]:
        if not self.running:
            return []
        refs = list(self.running)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return []
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        finished = []
        for ref in ready:
            task = self.running.pop(ref)
            try:
                record = self.ray.get(ref)
                reason = None
            except self.ray.exceptions.RayError as exc:  # worker or node lost, OOM, cancelled, ...
                record = None
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                reason = self.killed.pop(task.key, f"{type(exc).__name__}: {first}".rstrip(": "))
            finished.append((task, record, reason))
        return finished

    def kill(self, task: Task, reason: str) -> None:
        for ref, running in self.running.items():
            if running.key == task.key:
                self.killed[task.key] = reason
                self.ray.cancel(ref, force=True)

    def close(self) -> None:
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running.clear()
        if self.owned:
            self.ray.shutdown()
