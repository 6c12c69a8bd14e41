"""``auditor audit`` and ``auditor purify``: a suspect model in, a purified model and a report out.

``audit`` is also a gate: the original model is scanned, purified, and the purified model is
verified (``auditor.verify``: the triggers found on the original are re-applied, and the purified
model is re-scanned on samples inverted from itself). Exit 0 when the purified model (the one you
would ship) passes ``--fail-on`` (default: anything not positively verified clean fails), 1 when it
does not; the report's ``verdict`` block records the original model's verdict as well.

The work is ``auditor.api.audit``; these commands turn options into ``auditor.options.AuditOptions``
and print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from auditor.options import DEVICES, AuditOptions, parse_interpolation, parse_purifier_options
from auditor.purify.recipe import DEFAULT_STEPS, list_steps
from auditor.samples import SAMPLE_MODEL

from ._options import defaults_from, json_option, load_model_from_options, print_json, spec_options
from ._progress import progress_bar, stage_printer
from .scan import FAIL_ON, detection_options
from .invert import inversion_options

default = defaults_from(AuditOptions)
_parse_interpolation = parse_interpolation  # the name the tests and older callers import


def _purifier_pairs(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, Any]:
    from auditor.errors import AuditorError

    try:
        return parse_purifier_options(value)
    except AuditorError as exc:
        raise click.BadParameter(str(exc), param_hint="--purifier-option") from None


def _purify_options(func):
    options = [
        click.option("--method", default=default("method"), metavar="NAME|STEP,STEP,...",
                     help="Purifier: recipe (the default steps: " + ",".join(DEFAULT_STEPS) + "), finetune, clp, "
                          "anp, or your own recipe: steps joined by commas, from " + ", ".join(list_steps()) + "."),
        click.option("--purifier-option", "purifier_options", multiple=True, metavar="KEY=VALUE",
                     callback=_purifier_pairs,
                     help="Override a purifier setting (repeatable): a recipe's lr, batch_size, clean_weight, "
                          "kl_weight or anchor_weight, a step's STEP.FIELD (ibau.rounds=5), or a FIELD one step has."),
        click.option("--min-agreement", type=click.FloatRange(0, 1), default=default("min_agreement"),
                     help="Guard: holdout agreement with the original needed to accept (default 0.9)."),
        click.option("--guard-interpolation", default=default("guard_interpolation"), metavar="A,B,...|none",
                     help="Guard: shares of a failed attempt's weight change to try, largest first, before a milder "
                          "rerun (default 0.9,0.8,0.7,0.6,0.5); 'none' reruns only."),
        click.option("--seed", type=int, default=default("seed"),
                     help="Seeds everything: the same seed and torch thread count give the same result."),
        click.option("--device", type=click.Choice(DEVICES), default=default("device")),
        click.option("--overwrite", is_flag=True, default=default("overwrite"),
                     help="Replace an existing output model / report."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _print_summary(report: dict[str, Any], report_dir: Path) -> None:
    """A few lines on stdout, each through ``escape.console`` (messages quote the model's class names)."""
    from auditor.report.escape import console

    def echo(line: str) -> None:
        click.echo(console(line))

    purification = report["purification"]
    verdict = report.get("verdict")
    if verdict:
        targets = ", ".join(map(str, verdict["suspected_targets"])) or "none"
        echo(f"original model: {verdict['verdict']} (score {verdict['score']:.2f}, suspected target(s) {targets})")
    echo(f"purification: {purification['status']} — {purification['message']}")
    if verdict and verdict.get("purified"):
        state = "passes" if verdict.get("purified_passes") else "FAILS"
        echo(f"purified model: {verdict['purified']} — {state} verification")
        for reason in (verdict.get("verification") or {}).get("decided_by", []):
            echo(f"  {reason}")
    evaluation = report.get("evaluation")
    if evaluation:
        for when in ("before", "after"):
            e = evaluation[when]
            asr = "-" if e.get("asr") is None else f"{100 * e['asr']:.1f}%"
            ra = "-" if e.get("ra") is None else f"{100 * e['ra']:.1f}%"
            echo(f"  {when:6s} ACC {100 * e['acc']:.1f}%  ASR {asr}  RA {ra}")
    # the stages only: the per-detector rows (detect.NAME) overlap and are in the report
    timings = ", ".join(f"{k} {v:.0f}s" for k, v in report["timings"].items() if "." not in k)
    echo(f"time: {timings}")
    echo(f"wrote {report['output']['path']}; report in {report_dir}")


@click.command("audit")
@click.argument("model", type=click.Path(dir_okay=False), default=None, required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=default("output"),
              help="Purified ONNX file (default: <model>.purified.onnx in the report folder).")
@click.option("--report-dir", type=click.Path(file_okay=False), default=default("report_dir"),
              help="Folder for report.json / report.md / report.html / report.sarif (default: audit-<model name>/).")
@click.option("--eval-data", type=click.Path(exists=True), default=default("eval_data"),
              help="Real labelled data (.npz or image folder) to measure ACC/ASR/RA before and after. Never used to purify.")
@click.option("--attack-from", default=default("attack_from"), metavar="MANIFEST[:NAME]",
              help="Attack to measure, from a zoo manifest.")
@click.option("--attack", default=default("attack"), help="Attack to measure, by name.")
@click.option("--target", type=int, default=default("target"), help="Target class for --attack.")
@click.option("--fail-on", type=FAIL_ON, default=default("fail_on"),
              help="Exit 1 when the purified model's verdict is at least this bad "
                   "(suspicious: anything not verified clean).")
@json_option("Print the report (report.json's content) on stdout instead of the summary.")
@_purify_options
@inversion_options
@detection_options
@spec_options
@click.pass_context
def audit_cmd(ctx: click.Context, model: str | None, as_json: bool, **params: Any) -> None:
    """Purify MODEL with no clean data: convert, invert, purify, verify, write back, report.

    With no MODEL, audits the bundled sample cifar10_badnets.onnx (installed with the package) and
    measures ACC/ASR/RA before and after on the bundled evaluation subset.

    \b
    Examples:
      auditor audit                                   # the bundled sample
      auditor audit suspect.onnx -o clean.onnx --report-dir audit-suspect
      auditor audit suspect.onnx --eval-data test.npz --attack badnets --target 0
      auditor audit suspect.onnx --json > report.json
    """
    from auditor.api import audit

    options = AuditOptions(**params)
    options.config()  # a bad option ends the command before the model is read
    name = Path(model or SAMPLE_MODEL).stem
    with progress_bar("auditing", enabled=not as_json) as progress:
        result = audit(model, options, progress=progress, stage_log=stage_printer(name))
    if as_json:
        print_json(result.to_json())
    else:
        _print_summary(result.report, result.report_dir)
    ctx.exit(result.exit_code)


@click.command("purify")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Purified ONNX file.")
@click.option("--synthetic", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Samples from `auditor invert` (default: invert now).")
@click.option("--clean-data", type=click.Path(exists=True), default=None,
              help="Purify with real clean images instead (.npz or image folder), for comparison.")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the report (default: <output name>-report/).")
@json_option("Print the report (report.json's content) on stdout instead of the summary.")
@_purify_options
@inversion_options
@spec_options
def purify_cmd(model: str, output: str, synthetic: str | None, clean_data: str | None, report_dir: str | None,
               as_json: bool, **params: Any) -> None:
    """Purify MODEL with synthetic samples (or, for comparison, real clean data) into OUTPUT.

    \b
    Examples:
      auditor purify suspect.onnx -o clean.onnx
      auditor invert suspect.onnx -o samples.npz && auditor purify suspect.onnx --synthetic samples.npz -o clean.onnx
      auditor purify suspect.onnx -o clean.onnx --method finetune --purifier-option epochs=2
      auditor purify suspect.onnx -o clean.onnx --method patch,ibau,clp --purifier-option ibau.rounds=5
    """
    from auditor import pipeline
    from auditor.errors import AuditorError

    if synthetic and clean_data:
        raise AuditorError("give either --synthetic or --clean-data, not both")
    options = AuditOptions(**params)
    extra: dict[str, Any] = {}
    if synthetic:
        extra["synthetic"] = Path(synthetic)
    if clean_data:
        import torch

        from auditor.data.formats import load_eval_data

        spec = load_model_from_options(model, params).spec
        x, y, _ = load_eval_data(Path(clean_data), expect_shape=(spec.height, spec.width, spec.channels))
        extra["clean_data"] = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(y).long())
    config = options.config(**extra)
    out = Path(output)
    folder = Path(report_dir) if report_dir else out.with_name(out.stem + "-report")
    with progress_bar("purifying", enabled=not as_json) as progress:
        result = pipeline.audit(Path(model), out, folder, config, progress=progress,
                                stage_log=stage_printer(Path(model).stem))
    if as_json:
        print_json(result.report)
    else:
        _print_summary(result.report, result.report_dir)
