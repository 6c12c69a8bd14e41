"""A progress bar on stderr for long library calls that report ``progress(step, total, message)``."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import click

Progress = Callable[..., None]


LOG_INTERVAL_S = 30.0  # a non-interactive run: at most one progress line this often within a phase


@contextmanager
def progress_bar(label: str, enabled: bool = True, interactive: bool | None = None,
                 interval_s: float = LOG_INTERVAL_S) -> Iterator[Progress]:
    """Yields a callback. On a terminal, a bar redrawn when the total changes (a new phase starts). Elsewhere
    (a CI log), plain lines: one when a phase starts and at most one per ``interval_s`` within it, each with
    the phase's message and its step count, instead of a bar that a log shows as a line per redraw."""
    interactive = sys.stderr.isatty() if interactive is None else interactive
    if enabled and not interactive:
        yield _line_logger(label, interval_s)
        return
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
        bar.label = f"{label} {message}".rstrip()
        if step > state["done"]:
            bar.update(step - state["done"])
            state["done"] = step

    try:
        yield update
    finally:
        close()


def _line_logger(label: str, interval_s: float) -> Progress:
    """``progress(step, total, message)`` as log lines: the first call of each phase (a new total) and then at
    most one line per ``interval_s``."""
    from auditor.report.escape import console  # the messages may quote the model (class names)

    state: dict = {"total": None, "printed": float("-inf")}

    def update(step: int, total: int, message: str = "") -> None:
        now = time.perf_counter()
        if total == state["total"] and now - state["printed"] < interval_s:
            return
        state["total"], state["printed"] = total, now
        text = f" {console(message)}" if message else ""
        click.echo(f"  {label}:{text} {min(step, total)}/{total}", err=True)

    return update


def stage_printer(label: str) -> Callable[[str], None]:
    """A line per stage start and end on stderr, with the seconds since the command began: a CI log
    shows where a long run is without a redrawn bar."""
    started = time.perf_counter()
    from auditor.report.escape import console

    label = console(label)  # a file name must not drive the terminal

    def log(text: str) -> None:
        click.echo(f"[{time.perf_counter() - started:7.1f} s] {label} {text}", err=True)

    return log
