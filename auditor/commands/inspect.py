"""``auditor inspect``: what the model is, whether we can convert it faithfully, and write it back."""

from __future__ import annotations

from typing import Any

import click

from ._options import json_option, print_json, spec_options


def inspect_model(path: str, options: dict[str, Any], check_parity: bool = True) -> dict[str, Any]:
    """Everything ``inspect`` reports, as a JSON-able dict (``auditor.api.inspect``'s report)."""
    from auditor.api import inspect
    from auditor.options import InspectOptions, ModelOptions

    known = {k: v for k, v in options.items() if k in ModelOptions.__dataclass_fields__}
    return inspect(path, InspectOptions(**known, parity=check_parity)).report


def _print_human(report: dict[str, Any]) -> None:
    """The report as lines; each one through ``escape.console``, since names and paths come from the model."""
    from auditor.report.escape import console

    spec = report["spec"]

    def echo(line: str) -> None:
        click.echo(console(line))

    echo(f"{report['file']}  (sha256 {report['sha256'][:16]}…, opset {report['opset']}, {report['nodes']} nodes)")
    layout = f"{spec['layout']} {spec['channels']}x{spec['height']}x{spec['width']}"
    batch = spec["batch"] if spec["batch"] else "dynamic"
    echo(f"  input   '{spec['input_name']}' {layout}, batch {batch}, range {spec['value_range']}")
    if spec.get("mean") or spec.get("std"):
        echo(f"  normalization (applied by the caller): mean {spec['mean']} std {spec['std']}")
    if spec.get("baked_normalization"):
        echo(f"  normalization baked into the graph: {spec['baked_normalization']}")
    echo(f"  output  '{spec['output_name']}' {spec['num_classes']} classes, {spec['output_kind']}"
         + (f" (head node {report['head']['node']})" if report["head"]["node"] else ""))
    if spec.get("class_names"):
        echo(f"  classes {', '.join(spec['class_names'])}")
    ops = ", ".join(f"{k} {v}" for k, v in report["operators"].items())
    echo(f"  operators: {ops}")
    for step in report["preparation"]:
        echo(f"  prepared: {step}")
    params = report["parameters"]
    echo(f"  parameters: {params['total']:,} total, {params['trainable']:,} trainable, {params['frozen']:,} frozen")
    for reason, count in report["frozen_by_reason"].items():
        echo(f"    frozen {count:,}: {reason}")
    for key, label in (("conversion_parity", "conversion parity"), ("write_back_parity", "write-back parity")):
        if key in report:
            p = report[key]
            verdict = "OK" if p["ok"] else "FAILED"
            echo(f"  {label}: max abs {p['max_abs']:.2e}, max rel {p['max_rel']:.2e} at batch sizes "
                 f"{p['batch_sizes']} -> {verdict} (tolerance {p['tolerance']:.0e})")


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@json_option("Print the report as JSON.")
@click.option("--parity/--no-parity", default=True, help="Compare the conversion and the written-back model with onnxruntime.")
@spec_options
@click.pass_context
def inspect_cmd(ctx: click.Context, model: str, as_json: bool, parity: bool, **options: Any) -> None:
    """Print the model's spec, operators, parameters and conversion parity.

    Exit code 1 when a parity check fails, 2 when the model cannot be read or converted.

    \b
    Examples:
      auditor inspect suspect.onnx
      auditor inspect suspect.onnx --input-range 0,255 --json
      auditor inspect big.onnx --no-parity --max-model-mb 4096
    """
    from auditor.api import inspect
    from auditor.options import InspectOptions

    result = inspect(model, InspectOptions(**options, parity=parity))
    if as_json:
        print_json(result.to_json())
    else:
        _print_human(result.report)
    ctx.exit(result.exit_code)
