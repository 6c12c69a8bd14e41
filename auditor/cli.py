"""The ``auditor`` command line.

Exit codes: 0 success (or, for gates, nothing found), 1 a finding (a backdoor, a failed check),
2 the tool could not do its job (bad input, unsupported model), 130 interrupted (Ctrl-C). Errors print
one line unless ``--debug`` is given; the line is passed through ``escape.console`` because it quotes
names from the model (a tensor name can hold a newline or a terminal escape sequence).
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from typing import Any

import click

from . import __version__

EXIT_OK, EXIT_FINDING, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

# (module, attribute) of each command; modules are imported when the CLI starts.
_COMMANDS: list[tuple[str, str]] = [
    ("auditor.commands.inspect", "inspect_cmd"),
    ("auditor.commands.invert", "invert_cmd"),
    ("auditor.commands.scan", "scan_cmd"),
    ("auditor.commands.audit", "audit_cmd"),
    ("auditor.commands.audit", "purify_cmd"),
    ("auditor.commands.bench", "bench_cmd"),
    ("auditor.commands.generator", "generator_group"),
    ("auditor.commands.zoo", "zoo_group"),
    ("auditor.commands.evaluate", "evaluate_cmd"),
    ("auditor.commands.fleet", "fleet_group"),
]


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                 line: str | None = None) -> None:
    """Library warnings (torch, numpy on a malformed weight) go to the debug log: on stderr they would add
    lines to the one-line error, and they say nothing the user can act on."""
    logging.getLogger("auditor.warnings").debug("%s: %s (%s:%s)", category.__name__, message, filename, lineno)


class _Group(click.Group):
    """Turns expected errors into one message and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        with warnings.catch_warnings():
            warnings.showwarning = _log_warning
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context) -> Any:
        from converters.errors import ModelError

        from .report.escape import console

        try:
            return super().invoke(ctx)
        except ModelError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {console(exc)}", err=True)
            ctx.exit(EXIT_ERROR)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug: keep it visible but short unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"internal error: {type(exc).__name__}: {console(exc)} (rerun with --debug for the traceback)",
                       err=True)
            ctx.exit(EXIT_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.version_option(__version__, prog_name="auditor")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Audit ONNX image classifiers for backdoors and remove them without clean data."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


for _module, _attr in _COMMANDS:
    main.add_command(getattr(importlib.import_module(_module), _attr))


if __name__ == "__main__":  # pragma: no cover
    main()
