"""summary.md: a few lines for a CI job summary (``$GITHUB_STEP_SUMMARY``), one row per model.

The path and class names come from the model's author: they go through ``escape.markdown``, so that a
crafted name cannot forge the heading that states the verdict, a table row or a link."""

from __future__ import annotations

from typing import Any

from .escape import markdown as md

ICONS = {"clean": "✅", "suspicious": "⚠️", "backdoored": "❌"}


def _targets(report: dict[str, Any], verdict: dict[str, Any]) -> str:
    names = report.get("spec", {}).get("class_names") or []
    parts = [f"{md(t)} ({md(names[t], 80)})" if isinstance(t, int) and 0 <= t < len(names) else md(t)
             for t in verdict.get("suspected_targets", [])]
    return ", ".join(parts) or "—"


def _shipped_verdict(report: dict[str, Any]) -> str:
    verdict = report.get("verdict") or {}
    if report.get("command") == "audit" and verdict.get("purified") is not None:
        return verdict["purified"]
    return verdict.get("verdict", "clean")


def summary_row(report: dict[str, Any]) -> str:
    verdict = report.get("verdict") or {}
    v = verdict.get("verdict", "n/a")
    cells = [md(report["input"]["path"]), f"{ICONS.get(v, '')} **{md(v)}**", f"{verdict.get('score', 0):.2f}",
             _targets(report, verdict)]
    if report.get("command") == "audit":
        purified = verdict.get("purified")
        state = "passes" if verdict.get("purified_passes") else "FAILS"
        cells.append("—" if purified is None else f"{ICONS.get(purified, '')} {md(purified)} ({state})")
        cells.append(md((report.get("purification") or {}).get("status", "—")))
    cells.append(f"{report.get('timings', {}).get('total', 0):.0f} s")
    return "| " + " | ".join(cells) + " |"


def render_summary(reports: list[dict[str, Any]], title: str = "auditor") -> str:
    """A short Markdown table: verdict, score, suspected targets, (re-scan), time."""
    audit = any(r.get("command") == "audit" for r in reports)
    head = ["model", "verdict", "score", "suspected target(s)"]
    if audit:
        head += ["purified model", "purification"]
    head.append("time")
    # an audit's headline is the model it would ship: the purified one
    worst = max((_shipped_verdict(r) for r in reports), key=("clean", "suspicious", "backdoored").index, default="clean")
    lines = [f"### {md(title)}: {ICONS[worst]} {worst}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [summary_row(r) for r in reports]
    lines += ["", "Score: the voting detectors' largest anomaly index over the classes, on reach's scale (flagged "
              f"above {_threshold(reports)}). A small patch that sends most samples into one class flags a model "
              "whatever its score; each model's report.html gives the reasons.", ""]
    return "\n".join(lines)


def _threshold(reports: list[dict[str, Any]]) -> str:
    for r in reports:
        t = (r.get("verdict") or {}).get("thresholds", {}).get("threshold")
        if t is not None:
            return f"{t:g}"
    return "2"
