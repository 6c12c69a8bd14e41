"""``auditor inspect``: what the model is, whether we can convert it faithfully, and write it back."""

from __future__ import annotations

import json
from typing import Any

import click

from ._options import load_model_from_options, spec_options


def inspect_model(path: str, options: dict[str, Any], check_parity: bool = True) -> dict[str, Any]:
    """Everything ``inspect`` reports, as a JSON-able dict."""
    from converters import compare_with_onnxruntime, convert, write_back

    loaded = load_model_from_options(path, options)
    converted = convert(loaded)
    report: dict[str, Any] = {
        "file": str(loaded.path),
        "sha256": loaded.sha256,
        "opset": loaded.opset,
        "ir_version": loaded.model.ir_version,
        "producer": f"{loaded.model.producer_name} {loaded.model.producer_version}".strip(),
        "spec": loaded.spec.to_json(),
        "head": {"node": loaded.head_node, "output_kind": loaded.spec.output_kind},
        "operators": loaded.op_histogram,
        "nodes": len(loaded.model.graph.node),
        "preparation": converted.prepared.steps,
        "parameters": converted.parameter_counts(),
        "frozen_by_reason": converted.frozen_report(),
        "preprocessing_constants": loaded.preprocessing_initializers,
    }
    if check_parity:
        report["conversion_parity"] = compare_with_onnxruntime(converted.module, loaded.model, loaded.spec).to_json()
        written = write_back(converted)
        report["write_back_parity"] = compare_with_onnxruntime(
            converted.module, written, loaded.spec, onnx_batch=loaded.spec.batch
        ).to_json()
    return report


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
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-parity", is_flag=True, help="Skip the onnxruntime parity checks.")
@spec_options
@click.pass_context
def inspect_cmd(ctx: click.Context, model: str, as_json: bool, no_parity: bool, **options: Any) -> None:
    """Print the model's spec, operators, parameters and conversion parity.

    Exit code 1 when a parity check fails, 2 when the model cannot be read or converted.
    """
    report = inspect_model(model, options, check_parity=not no_parity)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_human(report)
    failed = [k for k in ("conversion_parity", "write_back_parity") if k in report and not report[k]["ok"]]
    if failed:
        ctx.exit(1)
