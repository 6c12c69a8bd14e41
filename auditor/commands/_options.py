"""Options shared by the commands, and the parsing of repeated KEY=VALUE options."""

from __future__ import annotations

from typing import Any, Callable

import click

from converters.spec import parse_float_list, parse_name_list


def _floats(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return parse_float_list(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from exc


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
    """--input-range/--mean/--std/--layout/--class-names/--max-model-mb: override what the file says."""
    options = [
        click.option("--input-range", callback=_floats, metavar="LO,HI",
                     help="Value range of the model's raw input, e.g. 0,1 or 0,255 (default: metadata, else 0,1)."),
        click.option("--mean", callback=_floats, metavar="M1,M2,M3", help="Normalization mean the caller applies."),
        click.option("--std", callback=_floats, metavar="S1,S2,S3", help="Normalization std the caller applies."),
        click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), help="Input layout (default: from the shape)."),
        click.option("--class-names", metavar="A,B,...", help="Class names, comma-separated or a JSON list."),
        click.option("--max-model-mb", type=float, default=None, help="Refuse files larger than this (default 2048)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def spec_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The ModelSpec fields given on the command line."""
    overrides: dict[str, Any] = {}
    if options.get("input_range") is not None:
        if len(options["input_range"]) != 2:
            raise click.BadParameter("--input-range takes two numbers, LO,HI")
        overrides["value_range"] = tuple(options["input_range"])
    for key in ("mean", "std", "layout"):
        if options.get(key) is not None:
            overrides[key] = options[key]
    if options.get("class_names"):
        overrides["class_names"] = parse_name_list(options["class_names"])
    return overrides


def load_model_from_options(path: str, options: dict[str, Any]):
    """load_onnx with the command line's overrides and size limit."""
    from converters.load import DEFAULT_MAX_BYTES, load_onnx

    limit = int(options["max_model_mb"] * 1024 * 1024) if options.get("max_model_mb") else DEFAULT_MAX_BYTES
    return load_onnx(path, max_bytes=limit, spec_overrides=spec_overrides(options) or None)
