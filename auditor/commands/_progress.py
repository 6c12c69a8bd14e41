"""A progress bar on stderr for long library calls that report ``progress(step, total, message)``."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import click

Progress = Callable[..., None]


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Progress]:
    """Yields a callback; the bar is redrawn when the total changes (a new phase starts)."""
    state: dict = {"bar": None, "total": None, "done": 0}

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].render_finish()
            state["bar"] = None

    def update(step: int, total: int, message: str = "") -> None:
        if not enabled:
            return
        if state["bar"] is None or total != state["total"]:
            close()
            state["bar"] = click.progressbar(length=max(total, 1), label=label, file=sys.stderr,
                                             show_pos=True, show_eta=True)
            state["bar"].__enter__()
            state["total"], state["done"] = total, 0
        bar = state["bar"]
        if sys.stderr.isatty():  # a changing label would print a new line per step in CI logs
            bar.label = f"{label} {message}".rstrip()
        if step > state["done"]:
            bar.update(step - state["done"])
            state["done"] = step

    try:
        yield update
    finally:
        close()


def stage_printer(label: str) -> Callable[[str], None]:
    """A line per stage start and end on stderr, with the seconds since the command began: a CI log
    shows where a long run is without a redrawn bar."""
    started = time.perf_counter()
    from auditor.report.escape import console

    label = console(label)  # a file name must not drive the terminal

    def log(text: str) -> None:
        click.echo(f"[{time.perf_counter() - started:7.1f} s] {label} {text}", err=True)

    return log
