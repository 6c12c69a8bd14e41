"""Generated tables inside hand-written pages: the lines between a BEGIN and an END marker."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any, Callable


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


def add_render_options(parser: argparse.ArgumentParser, document: str) -> None:
    """``--render DOCUMENT`` (print its table and exit) and ``--write PAGE`` (put it between PAGE's markers)."""
    parser.add_argument("--render", type=Path, help=f"Print the table of {document} and exit.")
    parser.add_argument("--write", type=Path, help="With --render: put the table between the markers of this page.")


def render_if_asked(args: argparse.Namespace, render: Callable[[Any], str], begin: str, end: str) -> bool:
    """Where ``--render`` was given: render the JSON document it names, print it or write it into ``--write``'s
    page, and say so (the script then exits)."""
    if not args.render:
        return False
    emit(render(json.loads(args.render.read_text())).rstrip("\n"), args.write, begin, end)
    return True


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
