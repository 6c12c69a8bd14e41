"""Reports of ``scan`` and ``audit``: report.json (schema ``auditor.report/1``, see
``schema/report.schema.json``), report.md, report.html (self-contained), report.sarif (SARIF
2.1.0) and summary.md (for CI job summaries)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .html import render_html
from .markdown import render_markdown
from .files import Staging
from .sarif import render_sarif
from .schema import SCHEMA_PATH, report_schema, validate_report
from .summary import render_summary

__all__ = ["SCHEMA_PATH", "render_html", "render_markdown", "render_sarif", "render_summary", "report_schema",
           "validate_report", "write_reports", "write_combined", "combined_paths", "Staging"]


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str, ensure_ascii=False) + "\n"


def write_reports(report: dict[str, Any], folder: str | Path, sarif_base: Path | None = None,
                  staging: Staging | None = None) -> dict[str, Path]:
    """report.json, report.md, report.html, report.sarif and summary.md into ``folder``.

    ``sarif_base``: the folder SARIF locations are relative to (a repository root; default the
    current directory), so that code-scanning dashboards find the model file. ``staging``: the
    caller's, when these files are to appear together with others (images, a model); by default
    they appear together, or none of them."""
    if staging is None:
        with Staging() as own:
            return write_reports(report, folder, sarif_base, own)
    folder = Path(folder)
    base = sarif_base if sarif_base is not None else Path.cwd()
    paths = {"json": folder / "report.json", "markdown": folder / "report.md", "html": folder / "report.html",
             "sarif": folder / "report.sarif", "summary": folder / "summary.md"}
    staging.write_text(paths["markdown"], render_markdown(report))
    staging.write_text(paths["html"], render_html(report, folder, staging.located))
    staging.write_text(paths["sarif"], _dump(render_sarif([report], base)))
    staging.write_text(paths["summary"], render_summary([report]))
    staging.write_text(paths["json"], _dump(report))  # last: its presence marks a complete report folder
    return paths


def combined_paths(folder: str | Path) -> dict[str, Path]:
    """Where ``write_combined`` writes (checked up front by ``scan`` for existing files)."""
    folder = Path(folder)
    return {"sarif": folder / "report.sarif", "summary": folder / "summary.md"}


def write_combined(reports: list[dict[str, Any]], folder: str | Path, sarif_base: Path | None = None) -> dict[str, Path]:
    """report.sarif and summary.md over several models (``auditor scan A.onnx B.onnx``), both or neither."""
    base = sarif_base if sarif_base is not None else Path.cwd()
    paths = combined_paths(folder)
    with Staging() as staging:
        staging.write_text(paths["sarif"], _dump(render_sarif(reports, base)))
        staging.write_text(paths["summary"], render_summary(reports))
    return paths
