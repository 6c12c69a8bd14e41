"""Scans and audits over many models: local worker processes or a Ray cluster, a resumable output
folder keyed by model hash, tool version and configuration, bounded retries of lost workers, and one
merged result (index.json, summary.md, report.sarif) with a fleet exit code. See docs/fleet.md."""

from __future__ import annotations

from .engine import Entry, FleetResult, Progress, run_fleet
from .inputs import FleetItem, collect, read_manifest
from .local import LocalBackend
from .merge import FLEET_SCHEMA, merge
from .store import Store, result_key
from .worker import Job, Task, run_task

__all__ = ["Entry", "FLEET_SCHEMA", "FleetItem", "FleetResult", "Job", "LocalBackend", "Progress", "Store", "Task",
           "collect", "merge", "read_manifest", "result_key", "run_fleet", "run_task"]
