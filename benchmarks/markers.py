"""Generated tables inside hand-written pages: the lines between a BEGIN and an END marker."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def block(text: str, begin: str, end: str) -> str:
    """What stands between the markers (without the newlines next to them)."""
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def write_between(page: Path, begin: str, end: str, table: str) -> None:
    """Replace what stands between the markers in ``page`` with ``table``."""
    text = page.read_text()
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{begin}\n{table}\n{end}{tail}")


def emit(table: str, page: Path | None, begin: str, end: str) -> None:
    """Print ``table``, or put it between the markers of ``page`` when one is given."""
    if page is None:
        print(table)
    else:
        write_between(page, begin, end, table)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a committed JSON-lines file (blank lines skipped)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def head_commit() -> str | None:
    """The repository's HEAD commit (short), recorded beside committed measurements; None outside a checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None
