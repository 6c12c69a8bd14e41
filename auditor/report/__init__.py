"""Reports of ``scan`` and ``audit``: report.json (schema ``auditor.report/1``, see
``schema/report.schema.json``), report.md, report.html (self-contained), report.sarif (SARIF
2.1.0) and summary.md (for CI job summaries)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .html import render_html
from .markdown import render_markdown
from .sarif import render_sarif
from .schema import SCHEMA_PATH, report_schema, validate_report
from .summary import render_summary

__all__ = ["SCHEMA_PATH", "render_html", "render_markdown", "render_sarif", "render_summary", "report_schema",
           "validate_report", "write_reports", "write_combined"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str, ensure_ascii=False) + "\n"


def write_reports(report: dict[str, Any], folder: str | Path, sarif_base: Path | None = None) -> dict[str, Path]:
    """report.json, report.md, report.html, report.sarif and summary.md into ``folder``.

    ``sarif_base``: the folder SARIF locations are relative to (a repository root; default the
    current directory), so that code-scanning dashboards find the model file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = sarif_base if sarif_base is not None else Path.cwd()
    paths = {"json": folder / "report.json", "markdown": folder / "report.md", "html": folder / "report.html",
             "sarif": folder / "report.sarif", "summary": folder / "summary.md"}
    _atomic_write(paths["markdown"], render_markdown(report))
    _atomic_write(paths["html"], render_html(report, folder))
    _atomic_write(paths["sarif"], _dump(render_sarif([report], base)))
    _atomic_write(paths["summary"], render_summary([report]))
    _atomic_write(paths["json"], _dump(report))  # last: its presence marks a complete report folder
    return paths


def write_combined(reports: list[dict[str, Any]], folder: str | Path, sarif_base: Path | None = None) -> dict[str, Path]:
    """report.sarif and summary.md over several models (``auditor scan A.onnx B.onnx``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = sarif_base if sarif_base is not None else Path.cwd()
    paths = {"sarif": folder / "report.sarif", "summary": folder / "summary.md"}
    _atomic_write(paths["sarif"], _dump(render_sarif(reports, base)))
    _atomic_write(paths["summary"], render_summary(reports))
    return paths
