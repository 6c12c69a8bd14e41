"""The command line's conventions, checked on every registered subcommand (found by walking the click
group, so a new command is checked without being listed here): --json everywhere, one spelling per
concept (-o/--output for a file written, --report-dir for a report folder, MODEL as an argument),
-q/-v after the subcommand, an Examples section and shown defaults in --help, AUDITOR_ environment
variables, and the old spellings still accepted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.options import AuditOptions, ScanOptions


def _walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _walk(command, prefix + (name,))
        else:
            found.append((prefix + (name,), command))
    return found


COMMANDS = _walk(main)
IDS = [" ".join(path) for path, _ in COMMANDS]


def _visible_options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_every_subcommand_follows_the_conventions(path: tuple[str, ...], command: click.Command) -> None:
    options = _visible_options(command)
    flags = {flag for option in options for flag in option.opts}
    assert "--json" in flags, "every command prints its result as JSON with --json"
    assert {"-q", "--quiet", "-v", "--verbose"} <= flags, "-q/-v are accepted after the subcommand"
    for option in options:
        kind = option.type
        if isinstance(kind, click.Path) and not kind.exists and not kind.dir_okay:
            assert option.opts == ["-o", "--output"], f"{option.opts}: a file written is -o/--output"
        assert not {"--out", "--outdir", "--output-dir", "--report", "--reports"} & set(option.opts), option.opts
        if "report" in option.name and isinstance(kind, click.Path):
            assert option.opts == ["--report-dir"], f"{option.opts}: a report folder is --report-dir"
        if option.name == "model":
            assert option.metavar == "NAME", "a model file is the MODEL argument; --model names zoo models"
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output and f"auditor {' '.join(path)}" in result.output.split("Examples:")[1]


@pytest.mark.parametrize("command, options", [("audit", AuditOptions), ("scan", ScanOptions)])
def test_the_command_line_takes_its_defaults_from_the_api_options(command: str, options: type) -> None:
    fields = {f.name: f for f in dataclasses.fields(options)}
    checked = 0
    for param in main.commands[command].params:
        if param.name in fields and param.name != "purifier_options":
            field = fields[param.name]
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            assert (param.default or None) == (default or None), param.name  # () / None / False alike
            checked += 1
    assert checked >= 25


def test_defaults_are_shown_and_environment_variables_set_options(tmp_path: Path) -> None:
    runner = CliRunner()
    assert "[default: backdoored]" in runner.invoke(main, ["scan", "--help"]).output
    missing = tmp_path / "missing.onnx"
    result = runner.invoke(main, ["scan", str(missing)], env={"AUDITOR_SCAN_FAIL_ON": "sometimes"})
    assert result.exit_code == 2 and "sometimes" in result.output  # the variable reached --fail-on


@pytest.fixture()
def log_levels():
    """-q / -v set logging levels for the process; the tests after this one get theirs back."""
    import logging

    loggers = [logging.getLogger(name) for name in ("", "auditor", "converters")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


def test_quiet_and_verbose_after_the_subcommand(log_levels: None) -> None:
    import logging

    runner = CliRunner()
    for flag in ("-q", "-v", "--quiet", "--verbose"):
        result = runner.invoke(main, ["generator", "list", flag])
        assert result.exit_code == 0, result.output
    assert logging.getLogger().level == logging.WARNING and logging.getLogger("auditor").level == logging.DEBUG


def test_old_spellings_still_work_with_a_warning(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1] / "sample_models"
    result = CliRunner().invoke(main, ["zoo", "table", "--dir", str(root)])
    assert result.exit_code == 0, result.output
    assert "--dir is deprecated; use --zoo" in result.stderr and "cifar10_badnets" in result.stdout
    for old in ("--out", "--summary", "--data", "--dir", "--model"):
        hidden = [p for _, c in COMMANDS for p in c.params if isinstance(p, click.Option) and old in p.opts]
        assert all(p.hidden or p.metavar == "NAME" for p in hidden), old
