"""The ``auditor`` command line.

Exit codes: 0 success (or, for gates, nothing found), 1 a finding (a backdoor, a failed check),
2 the tool could not do its job (bad input, unsupported model, an internal error), 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM: a CI job cancelled or timed out). Errors print
one line unless ``--debug`` is given; the line is passed through ``escape.console`` because it quotes
names from the model (a tensor name can hold a newline or a terminal escape sequence).
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
import warnings
from typing import Any

import click

from . import __version__

EXIT_OK, EXIT_FINDING, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is: it unwinds as Ctrl-C does, so staged outputs are discarded."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()

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
        # a CI job cancelled or timed out sends SIGTERM, whose default ends the process where it stands
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _log_warning
                return self._invoke(ctx)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)

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
        except Terminated:
            click.echo("terminated", err=True)
            ctx.exit(EXIT_TERMINATED)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug: keep it visible but short unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"internal error: {type(exc).__name__}: {console(exc)} (rerun with --debug for the traceback)",
                       err=True)
            ctx.exit(EXIT_ERROR)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """-q / -v, before or after the subcommand: -q shows only warnings and errors, -v adds the auditor's debug
    lines (without --debug's tracebacks and other libraries' logs)."""
    if not value or ctx.resilient_parsing:
        return
    if param.name == "quiet":
        logging.getLogger().setLevel(logging.WARNING)
    else:
        for name in ("auditor", "converters"):
            logging.getLogger(name).setLevel(logging.DEBUG)


def _verbosity_options() -> list[click.Option]:
    return [
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_set_verbosity,
                     help="Only warnings and errors on stderr."),
        click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=_set_verbosity,
                     help="Also the auditor's debug lines on stderr."),
    ]


# every option shows its default in --help; every option can be set by an environment variable
# AUDITOR_<COMMAND>_<OPTION> (AUDITOR_SCAN_FAIL_ON, AUDITOR_AUDIT_REPORT_DIR, AUDITOR_GENERATOR_SAMPLE_SEED)
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True, "auto_envvar_prefix": "AUDITOR"}


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Also the auditor's debug lines on stderr.")
@click.version_option(__version__, prog_name="auditor")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool, verbose: bool) -> None:
    """Audit ONNX image classifiers for backdoors and remove them without clean data.

    Every option can also be set by an environment variable AUDITOR_<COMMAND>_<OPTION>, e.g.
    AUDITOR_SCAN_FAIL_ON=suspicious; shell completion: eval "$(_AUDITOR_COMPLETE=bash_source auditor)".

    \b
    Examples:
      auditor audit                      # the bundled sample, end to end
      auditor scan suspect.onnx --report-dir scan-report
      auditor audit suspect.onnx -o clean.onnx --report-dir audit-suspect
      auditor inspect suspect.onnx --json
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose and not quiet:
        for name in ("auditor", "converters"):
            logging.getLogger(name).setLevel(logging.DEBUG)


def _leaves(command: click.Command) -> list[click.Command]:
    """``command`` itself, or every command under a group."""
    if isinstance(command, click.Group):
        return [leaf for sub in command.commands.values() for leaf in _leaves(sub)]
    return [command]


for _module, _attr in _COMMANDS:
    _command = getattr(importlib.import_module(_module), _attr)
    for _leaf in _leaves(_command):
        _leaf.params.extend(_verbosity_options())
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
