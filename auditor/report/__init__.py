"""Reports of ``audit`` (and later ``scan``): machine-readable JSON and a readable Markdown page."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .markdown import render_markdown

__all__ = ["render_markdown", "write_reports"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(report: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    """report.json and report.md into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "markdown": folder / "report.md"}
    _atomic_write(paths["json"], json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    _atomic_write(paths["markdown"], render_markdown(report))
    return paths
