"""``auditor audit`` and ``auditor purify``: a suspect model in, a purified model and a report out.

``audit`` is also a gate: the original model is scanned, purified, and the purified model is
verified (``auditor.verify``: the triggers found on the original are re-applied, and the purified
model is re-scanned on samples inverted from itself). Exit 0 when the purified model (the one you
would ship) passes ``--fail-on`` (default: anything not positively verified clean fails), 1 when it
does not; the report's ``verdict`` block records the original model's verdict as well.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from ._options import (key_value_pairs, limits_from_options, load_model_from_options, spec_options,
                       spec_overrides)
from ._progress import progress_bar, stage_printer
from .scan import FAIL_ON, detection_config, detection_options
from .invert import inversion_config, inversion_options

SAMPLES = Path("sample_models")
DEFAULT_SAMPLE = SAMPLES / "cifar10_badnets.onnx"
# With no MODEL argument the audit also measures itself on the committed evaluation subset.
DEFAULT_EVAL_DATA = SAMPLES / "cifar10_test_1000.npz"
DEFAULT_MANIFEST = SAMPLES / "manifest.json"


def _purify_options(func):
    options = [
        click.option("--method", default="ibau", show_default=True, help="Purifier: ibau, finetune or clp."),
        click.option("--purifier-option", "purifier_options", multiple=True, metavar="KEY=VALUE",
                     help="Override a purifier setting (repeatable), e.g. rounds=3."),
        click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
                     help="Guard: holdout agreement with the original needed to accept (default 0.9)."),
        click.option("--guard-interpolation", default=None, metavar="A,B,...|none",
                     help="Guard: shares of a failed attempt's weight change to try, largest first, before a milder "
                          "rerun (default 0.9,0.8,0.7,0.6,0.5); 'none' reruns only."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--overwrite", is_flag=True, help="Replace an existing output model / report."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _parse_purifier_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for key, value in key_value_pairs(pairs, "--purifier-option").items():
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def _parse_interpolation(text: str) -> tuple[float, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        shares = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        shares = ()
    if not shares or not all(0 < share < 1 for share in shares):
        raise click.BadParameter(f"expected shares strictly between 0 and 1 (e.g. 0.9,0.7) or 'none', got {text!r}",
                                 param_hint="--guard-interpolation")
    return shares


def _options(opts: dict[str, Any], **extra: Any):
    from auditor.pipeline import AuditOptions
    from auditor.purify.guard import GuardConfig

    guard = GuardConfig()
    if opts.get("min_agreement") is not None:
        guard = dataclasses.replace(guard, min_agreement=opts["min_agreement"])
    if opts.get("guard_interpolation") is not None:
        guard = dataclasses.replace(guard, interpolation=_parse_interpolation(opts["guard_interpolation"]))
    return AuditOptions(
        method=opts["method"], seed=opts["seed"], device=opts["device"], inversion=inversion_config(opts, opts["seed"]),
        pixels=opts.get("pixels", False), generator=opts.get("generator_name"),
        purifier_config=_parse_purifier_options(opts.get("purifier_options", ())), guard=guard,
        spec_overrides=spec_overrides(opts), limits=limits_from_options(opts), overwrite=opts["overwrite"],
        detection=detection_config(opts), **extra,
    )


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
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Purified ONNX file (default: <model>.purified.onnx next to the report).")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for report.json / report.md (default: audit-<model name>/).")
@click.option("--eval-data", type=click.Path(exists=True), default=None,
              help="Real labelled data (.npz or image folder) to measure ACC/ASR/RA before and after. Never used to purify.")
@click.option("--attack-from", default=None, metavar="MANIFEST[:NAME]", help="Attack to measure, from a zoo manifest.")
@click.option("--attack", "attack_name", default=None, help="Attack to measure, by name.")
@click.option("--target", type=int, default=None, help="Target class for --attack.")
@click.option("--fail-on", type=FAIL_ON, default="suspicious", show_default=True,
              help="Exit 1 when the purified model's verdict is at least this bad (default: anything not verified clean).")
@_purify_options
@inversion_options
@detection_options
@spec_options
@click.pass_context
def audit_cmd(ctx: click.Context, model: str, output: str | None, report_dir: str | None, eval_data: str | None,
              attack_from: str | None, attack_name: str | None, target: int | None, fail_on: str, **opts: Any) -> None:
    """Purify MODEL with no clean data: convert, invert, purify, verify, write back, report.

    With no MODEL, audits the bundled sample sample_models/cifar10_badnets.onnx (run from the
    repository root) and measures ACC/ASR/RA before and after on the committed evaluation subset.
    """
    from auditor.errors import AuditorError
    from auditor.pipeline import audit

    if model is None:
        if not DEFAULT_SAMPLE.is_file():
            raise AuditorError(f"no MODEL given and the bundled sample {DEFAULT_SAMPLE} is not here: "
                               "run from the repository root or name a model")
        model = str(DEFAULT_SAMPLE)
        if not (eval_data or attack_from or attack_name):
            eval_data, attack_from = str(DEFAULT_EVAL_DATA), str(DEFAULT_MANIFEST)
    model_path = Path(model)
    name = model_path.stem
    report_folder = Path(report_dir) if report_dir else Path(f"audit-{name}")
    out = Path(output) if output else report_folder / f"{name}.purified.onnx"
    evaluator = None
    if eval_data or attack_from or attack_name:
        from ._measure import make_evaluator, resolve_attack

        spec = load_model_from_options(str(model_path), opts).spec
        attack = resolve_attack(model_path, spec, attack_from, attack_name, target)
        if eval_data is None:
            raise click.BadParameter("measuring an attack needs --eval-data", param_hint="--eval-data")
        evaluator = make_evaluator(Path(eval_data), spec, attack)
    with progress_bar("auditing") as progress:
        result = audit(model_path, out, report_folder, _options(opts), evaluator=evaluator, progress=progress,
                       stage_log=stage_printer(name))
    _print_summary(result.report, result.report_dir)
    from auditor.cli import EXIT_FINDING, EXIT_OK
    from auditor.detect import fails

    purified = (result.report.get("verdict") or {}).get("purified")
    ctx.exit(EXIT_FINDING if purified is not None and fails(purified, fail_on) else EXIT_OK)


@click.command("purify")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Purified ONNX file.")
@click.option("--synthetic", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Samples from `auditor invert` (default: invert now).")
@click.option("--clean-data", type=click.Path(exists=True), default=None,
              help="Purify with real clean images instead (.npz or image folder), for comparison.")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None, help="Where to write the report.")
@_purify_options
@inversion_options
@spec_options
def purify_cmd(model: str, output: str, synthetic: str | None, clean_data: str | None, report_dir: str | None,
               **opts: Any) -> None:
    """Purify MODEL with synthetic samples (or, for comparison, real clean data) into OUTPUT."""
    from auditor.errors import AuditorError
    from auditor.pipeline import audit

    if synthetic and clean_data:
        raise AuditorError("give either --synthetic or --clean-data, not both")
    extra: dict[str, Any] = {}
    if synthetic:
        extra["synthetic"] = Path(synthetic)
    if clean_data:
        import torch

        from auditor.data.formats import load_eval_data

        spec = load_model_from_options(model, opts).spec
        x, y, _ = load_eval_data(Path(clean_data), expect_shape=(spec.height, spec.width, spec.channels))
        extra["clean_data"] = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(y).long())
    out = Path(output)
    folder = Path(report_dir) if report_dir else out.with_name(out.stem + "-report")
    with progress_bar("purifying") as progress:
        result = audit(Path(model), out, folder, _options(opts, **extra), progress=progress,
                       stage_log=stage_printer(Path(model).stem))
    _print_summary(result.report, result.report_dir)
