"""The fleet's one result: index.json, summary.md and report.sarif over every model of the run.

Built from what the store holds, not from what this run computed, so a rerun that skipped every model
writes the same merged result as the run that did the work, and local and Ray mode write the same
result for the same models. The rows follow the input order.

Fleet exit code: 2 when any model could not be processed (after its retries), else 1 when any model's
verdict fails ``--fail-on`` (for ``audit``, the purified model's verdict, as ``auditor audit`` reads
it), else 0.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from auditor.report.escape import markdown as md

from .store import INDEX, SARIF, SUMMARY, Store, write_json_atomic, write_text_atomic

FLEET_SCHEMA = "auditor.fleet/1"
VERDICTS = ("clean", "suspicious", "backdoored")
SLOWEST = 5


def gate_verdict(command: str, verdict: dict[str, Any]) -> str | None:
    """The verdict the exit code reads: the scanned model's, or after an audit the purified model's."""
    if command == "audit":
        return verdict.get("purified")
    return verdict.get("verdict")


def _row(entry: Any, store: Store, command: str, fail_on: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from auditor.detect import fails

    row: dict[str, Any] = {"path": str(entry.item.path), "key": entry.key, "sha256": entry.sha256}
    record = store.done(entry.key) if entry.key else None
    if record is not None:
        folder = store.model_dir(entry.key)
        try:
            report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            record, report = None, None
            entry.error = entry.error or f"its report is unreadable: {exc}"
    if record is None:
        failure = (store.failure(entry.key) if entry.key else None) or {}
        row.update(status="failed", error=entry.error or failure.get("error") or "not processed",
                   attempts=failure.get("attempt"))
        return row, None
    verdict = report.get("verdict") or {}
    gate = gate_verdict(command, verdict)
    row.update(status="done", verdict=verdict.get("verdict"), score=verdict.get("score"),
               suspected_targets=verdict.get("suspected_targets", []),
               report_dir=str(folder.relative_to(store.root)), seconds=record.get("seconds"),
               attempts=record.get("attempt"), gate_verdict=gate,
               fails_gate=bool(gate is not None and fails(gate, fail_on)))
    if command == "audit":
        row.update(purified=verdict.get("purified"), purified_passes=verdict.get("purified_passes"),
                   purification=(report.get("purification") or {}).get("status"))
    return row, report


def _sarif(reports: list[dict[str, Any]], failed: list[dict[str, Any]], base: Path, version: str) -> dict[str, Any]:
    """One SARIF log, one run per model: a finished model's run is the one its own report.sarif holds; a
    model that could not be processed gets a run with no results and an unsuccessful invocation that
    says why (a dashboard must not read it as clean)."""
    from auditor.report.sarif import artifact_uri, render_sarif

    runs = []
    for report in reports:
        run = render_sarif([report], base)["runs"][0]
        run["invocations"] = [{"executionSuccessful": True}]
        runs.append(run)
    template = render_sarif([], base)
    driver = template["runs"][0]["tool"]["driver"]
    driver["version"] = driver["semanticVersion"] = version
    for row in failed:
        run = {"tool": template["runs"][0]["tool"], "artifacts": [{"location": {"uri": artifact_uri(row["path"], base)}}],
               "invocations": [{"executionSuccessful": False, "toolExecutionNotifications": [
                   {"level": "error", "message": {"text": f"{row['path']}: {row['error']}"}}]}],
               "columnKind": "unicodeCodePoints"}
        runs.append(run)
    return {"$schema": template["$schema"], "version": template["version"], "runs": runs}


def _summary(command: str, reports: list[dict[str, Any]], rows: list[dict[str, Any]], counts: dict[str, Any],
             slowest: list[dict[str, Any]], exit_code: int, fail_on: str) -> str:
    from auditor.report.summary import render_summary

    lines = [render_summary(reports, title=f"auditor fleet {command}").rstrip("\n"), ""] if reports else \
        [f"### auditor fleet {command}: no model finished", ""]
    by_verdict = ", ".join(f"{counts['by_verdict'][v]} {v}" for v in VERDICTS)
    lines += [f"**{counts['models']} model(s)**: {counts['done']} done ({by_verdict}), {counts['failed']} failed. "
              f"Exit code {exit_code} under `--fail-on {fail_on}`.", ""]
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["#### Could not be processed", "", "| model | attempts | reason |", "|---|---|---|"]
        lines += [f"| {md(r['path'])} | {r.get('attempts') or '—'} | {md(r['error'], 300)} |" for r in failed]
        lines.append("")
    if slowest:
        lines += ["#### Slowest models", "", "| model | seconds | report |", "|---|---|---|"]
        lines += [f"| {md(r['path'])} | {r['seconds']:.1f} | {md(r['report_dir'])} |" for r in slowest]
        lines.append("")
    return "\n".join(lines) + "\n"


def merge(store: Store, entries: list[Any], command: str, fail_on: str, config: dict[str, Any],
          version: dict[str, str], base: Path | None = None) -> dict[str, Any]:
    """Write index.json, summary.md and report.sarif into the store's root; returns the index."""
    base = base if base is not None else Path.cwd()
    rows, reports, seen = [], [], set()
    for entry in entries:
        row, report = _row(entry, store, command, fail_on)
        rows.append(row)
        if report is not None and entry.key not in seen:  # the same file twice: one report, one SARIF run
            seen.add(entry.key)
            reports.append(report)
    done = [r for r in rows if r["status"] == "done"]
    failed = [r for r in rows if r["status"] == "failed"]
    counts = {"models": len(rows), "done": len(done), "failed": len(failed),
              "by_verdict": {v: sum(1 for r in done if r["verdict"] == v) for v in VERDICTS}}
    if command == "audit":
        counts["by_purified_verdict"] = {v: sum(1 for r in done if r.get("purified") == v) for v in VERDICTS}
    exit_code = 2 if failed else (1 if any(r["fails_gate"] for r in done) else 0)
    slowest = sorted((r for r in done if r.get("seconds") is not None), key=lambda r: -r["seconds"])[:SLOWEST]
    index = {"schema": FLEET_SCHEMA, "tool": version, "command": command, "fail_on": fail_on,
             "config": json.loads(json.dumps(config, default=str)), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "exit_code": exit_code, "counts": counts,
             "slowest": [{"path": r["path"], "seconds": r["seconds"]} for r in slowest], "models": rows}
    write_text_atomic(store.root / SUMMARY, _summary(command, reports, rows, counts, slowest, exit_code, fail_on))
    write_json_atomic(store.root / SARIF, _sarif(reports, failed, base, version["auditor"]))
    write_json_atomic(store.root / INDEX, index)
    return index
