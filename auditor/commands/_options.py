"""Options shared by the commands, and the parsing of repeated KEY=VALUE options."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import click

from converters.limits import MB, OPTIONS, Limits
from auditor.options import ModelOptions, default_of, limits_from_options, spec_overrides  # noqa: F401 (re-exported)
from converters.spec import parse_float_list


def _floats(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return parse_float_list(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from exc


def _positive(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A limit: a finite number above zero. A bad one ends the command with one line and exit 2
    (0 or nan used to be ignored or crash), before any model is read."""
    if value is None:
        return None
    from auditor.errors import AuditorError

    option = param.opts[0] if param.opts else param.name
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise AuditorError(f"{option} must be a number above 0, got {value!r}")
    if param.name != "max_model_mb" and number != int(number):
        raise AuditorError(f"{option} must be a whole number, got {value!r}")
    return number


def key_value_pairs(pairs: tuple[str, ...], param_hint: str) -> dict[str, str]:
    """Repeated KEY=VALUE options as a dict of raw strings (the caller decides how to read the values)."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=param_hint)
        parsed[key.strip()] = value
    return parsed


def spec_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--input-range/--mean/--std/--layout/--class-names override what the file says; the --max-* options
    bound what a hostile file can make the tool allocate. Defaults: ``auditor.options.ModelOptions``."""
    default = defaults_from(ModelOptions)
    options = [
        click.option("--input-range", callback=_floats, metavar="LO,HI", default=default("input_range"),
                     help="Value range of the model's raw input, e.g. 0,1 or 0,255 (default: metadata, else 0,1)."),
        click.option("--mean", callback=_floats, metavar="M1,M2,M3", default=default("mean"),
                     help="Normalization mean the caller applies."),
        click.option("--std", callback=_floats, metavar="S1,S2,S3", default=default("std"),
                     help="Normalization std the caller applies."),
        click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), default=default("layout"),
                     help="Input layout (default: from the shape)."),
        click.option("--class-names", metavar="A,B,...", default=default("class_names"),
                     help="Class names, comma-separated or a JSON list."),
        *limit_options(),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def limit_options() -> list[Callable[[Any], Any]]:
    """One option per resource limit of ``converters.limits.Limits``; each is checked before anything is
    allocated or any external data is read."""
    default = Limits()
    helps = {
        "max_bytes": f"Refuse a model whose file plus external data is larger than this (default "
                     f"{default.max_bytes / MB:g}; also $AUDITOR_MAX_MODEL_BYTES).",
        "max_tensor_elements": f"Refuse a model declaring a tensor (input, output or intermediate) with more "
                               f"elements than this, dynamic dims counted as 1 (default {default.max_tensor_elements}).",
        "max_parameters": f"Refuse a model whose weights declare more parameters (default {default.max_parameters}).",
        "max_nodes": f"Refuse a graph with more nodes, subgraphs included (default {default.max_nodes}).",
        "max_depth": f"Refuse a graph whose longest chain of nodes is longer (default {default.max_depth}).",
    }
    option_default = defaults_from(ModelOptions)
    return [click.option(OPTIONS[name], callback=_positive, metavar="MB" if name == "max_bytes" else "N",
                         default=option_default(OPTIONS[name].lstrip("-").replace("-", "_")), help=text)
            for name, text in helps.items()]


def load_model_from_options(path: str, options: dict[str, Any]):
    """load_onnx with the command line's overrides and resource limits."""
    from auditor.api import load_model

    return load_model(path, options)


def defaults_from(cls: type) -> Callable[[str], Any]:
    """``default("seed")``: the default of an option, read from the API's options dataclass ``cls``, so that the
    command line and the library cannot disagree."""
    return lambda name: default_of(cls, name)


def json_option(help_text: str = "Print the result as JSON on stdout (progress and messages stay on stderr).") -> Callable[[Any], Any]:
    """``--json``, which every command has."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    import json

    click.echo(json.dumps(value, indent=2, default=str))


def deprecated_alias(old: str, new: str, dest: str, **kwargs: Any) -> Callable[[Any], Any]:
    """A hidden option spelled the old way (``old``) whose value goes to the option ``new`` (parameter ``dest``),
    with a warning on stderr: scripts written before the spelling changed keep working. The new spelling wins
    when both are given."""
    hidden = f"deprecated_{dest}"

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **params: Any) -> Any:
            value = params.pop(hidden, None)
            if value is not None and value != ():
                click.echo(f"warning: {old} is deprecated; use {new}", err=True)
                ctx = click.get_current_context()
                source = ctx.get_parameter_source(dest)
                if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
                    params[dest] = value
            return func(*args, **params)

        return click.option(old, hidden, hidden=True, default=None, **kwargs)(wrapper)

    return decorator
