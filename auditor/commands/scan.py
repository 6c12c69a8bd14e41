"""``auditor scan``: a backdoor verdict for one or more models, without purifying, as a CI gate.

Exit codes: 0 no model fails the gate, 1 at least one does (``--fail-on``: backdoored, the
default; suspicious; never), 2 the tool could not do its job for at least one file (bad input,
unsupported model); the other files are still scanned and reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from auditor.options import DEVICES, FAIL_ON_CHOICES, DetectionOptions, ScanOptions, detection_config  # noqa: F401

from ._options import defaults_from, json_option, print_json, spec_options
from ._progress import progress_bar, stage_printer

FAIL_ON = click.Choice(FAIL_ON_CHOICES)
default = defaults_from(ScanOptions)
detection_default = defaults_from(DetectionOptions)


def fail_on_option(func):
    return click.option("--fail-on", type=FAIL_ON, default=default("fail_on"),
                        help="Exit 1 when a verdict is at least this bad (never: always 0 unless the tool fails).")(func)


def detection_options(func):
    """Thresholds and effort of detection, shared by ``scan`` and ``audit``."""
    options = [
        click.option("--threshold", type=float, default=detection_default("threshold"),
                     help="A voting detector's anomaly index above which a class is a backdoor target (default 2; "
                          "channel stimulation's index is divided by 2.5 first, so 5 for it)."),
        click.option("--suspicious-threshold", type=float, default=detection_default("suspicious_threshold"),
                     help="Anomaly index above which a class is suspicious (default 1.5; for stimulation 3.75)."),
        click.option("--nc-steps", type=click.IntRange(1), default=detection_default("nc_steps"),
                     help="Trigger reverse-engineering steps (default 150)."),
        click.option("--patch-detector/--no-patch-detector", default=detection_default("patch_detector"),
                     help="Search the small patch (16 pixels) that flips the most samples; a flip rate of 0.75 or "
                          "more is a patch trigger (BadNets, all-to-all included)."),
        click.option("--feature-reach", is_flag=True, default=detection_default("feature_reach"),
                     help="Also report reach in a hidden layer's features (for triggers that are not one small "
                          "input delta). It does not vote: it flagged held-out clean models (docs/detection.md)."),
        click.option("--detector", "detectors", multiple=True, metavar="NAME", default=detection_default("detectors"),
                     help="Also run this registered detector (repeatable): max_margin, signal_reach, feature_reach, "
                          "patch, ... Reported; it votes only with --voter."),
        click.option("--voter", "voters", multiple=True, metavar="NAME", default=detection_default("voters"),
                     help="Let this detector's anomaly index vote beside reach (repeatable; it is run if needed)."),
        click.option("--detector-workers", type=click.IntRange(1), default=detection_default("detector_workers"),
                     help="Detectors run side by side in this many workers, one CPU thread each (default 2, 1 on a "
                          "one-core machine). The figures do not depend on it."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _report_dirs(models: list[Path], report_dir: Path | None) -> list[Path | None]:
    """One folder per model: the folder itself for one model, ``<folder>/<stem>`` for several."""
    if report_dir is None:
        return [None] * len(models)
    if len(models) == 1:
        return [report_dir]
    seen: dict[str, int] = {}
    out = []
    for m in models:
        name = m.stem
        seen[name] = seen.get(name, 0) + 1
        out.append(report_dir / (name if seen[name] == 1 else f"{name}-{seen[name]}"))
    return out


def _with_path(path: Path, exc: Exception) -> str:
    """The error's message naming ``path`` once: most model errors start with the path already."""
    message = str(exc)
    return message if message.startswith(str(path)) else f"{path}: {message}"


@click.command("scan")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="MODEL...")
@click.option("--report-dir", type=click.Path(file_okay=False), default=default("report_dir"),
              help="Write report.json/.html/.sarif/.md and summary.md here (one subfolder per model when several).")
@fail_on_option
@click.option("--seed", type=int, default=default("seed"), help="Seeds inversion and detection.")
@click.option("--device", type=click.Choice(DEVICES), default=default("device"))
@click.option("--per-class", type=click.IntRange(2), default=default("per_class"),
              help="Synthetic samples per class (default 20).")
@click.option("--steps", type=click.IntRange(1), default=default("steps"),
              help="Most inversion steps per particle (default 8).")
@click.option("--pixels", is_flag=True, default=default("pixels"), help="Ablation: invert pixels directly, no generator.")
@click.option("--generator", default=default("generator"), help="Generator: registry name or your own file.")
@click.option("--synthetic", type=click.Path(exists=True, dir_okay=False), default=default("synthetic"),
              help="Use samples from `auditor invert` instead of inverting (one model only).")
@click.option("--threads", type=click.IntRange(1), default=default("threads"),
              help="CPU threads for torch. The thread count changes floating-point reductions and so the synthetic "
                   "samples: one thread gives the same report on any machine (docs/detection.md).")
@json_option("Print the verdicts as JSON on stdout.")
@click.option("--overwrite", is_flag=True, default=default("overwrite"), help="Replace existing reports.")
@detection_options
@spec_options
@click.pass_context
def scan_cmd(ctx: click.Context, models: tuple[str, ...], report_dir: str | None, as_json: bool, **params: Any) -> None:
    """Look for a backdoor in each MODEL (ONNX) from the model alone; exit 1 if one is found.

    On stabilized model-inversion samples, measures for every class how many samples of the other
    classes one small universal perturbation sends into it (reach), how many raising one hidden
    channel sends into it (stimulation) and how many one smooth sub-pixel warp sends into it (warp
    reach), and flags classes where any is an outlier; Neural Cleanse's reversed triggers are
    reported beside them. Several files: the exit code follows the worst verdict.

    \b
    Examples:
      auditor scan suspect.onnx
      auditor scan models/*.onnx --report-dir scan-reports --fail-on suspicious
      auditor scan suspect.onnx --json | jq .verdict
    """
    from dataclasses import replace

    from converters.errors import ModelError

    from auditor.api import scan
    from auditor.cli import EXIT_ERROR, EXIT_FINDING, EXIT_OK
    from auditor.detect import worst
    from auditor.errors import AuditorError
    from auditor.pipeline import check_report_dir
    from auditor.report import combined_paths, write_combined
    from auditor.report.escape import console

    options = ScanOptions(**params)
    fail_on, overwrite = options.fail_on, options.overwrite
    if options.synthetic and len(models) > 1:
        raise AuditorError("--synthetic holds samples of one model; scan one model with it")
    options.config()  # a bad option ends the command before any model is read
    paths = [Path(m) for m in models]
    folders = _report_dirs(paths, Path(report_dir) if report_dir else None)
    for folder in folders:  # every destination before the first scan, not after the first minutes of work
        if folder is not None:
            check_report_dir(folder, overwrite)
    if report_dir and len(paths) > 1:
        for path in combined_paths(report_dir).values():
            if path.exists() and not overwrite:
                raise AuditorError(f"{path} exists; pass --overwrite to replace it or choose another --report-dir")
    rows, reports, errors = [], [], 0
    for path, folder in zip(paths, folders):
        try:
            with progress_bar(f"scanning {console(path.name)}", enabled=not as_json) as progress:
                result = scan(path, replace(options, report_dir=folder), progress=progress,
                              stage_log=stage_printer(path.stem))
        except ModelError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            errors += 1
            click.echo(f"error: {console(_with_path(path, exc))}", err=True)
            rows.append({"model": str(path), "verdict": None, "error": str(exc)})
            continue
        reports.append(result.report)
        seconds = result.report["timings"]["total"]
        rows.append({"model": str(path), "verdict": result.verdict, "score": round(result.score, 4),
                     "suspected_targets": result.suspected_targets, "fails_gate": not result.passes,
                     "report_dir": str(folder) if folder else None, "seconds": seconds})
        if not as_json:
            targets = (f", suspected target(s) {', '.join(map(str, result.suspected_targets))}"
                       if result.suspected_targets else "")
            click.echo(console(f"{path}: {result.verdict} (score {result.score:.2f}{targets}) in "
                               f"{seconds:.0f} s" + (f"; report in {folder}" if folder else "")))
    if report_dir and len(paths) > 1 and reports:
        write_combined(reports, Path(report_dir))
    verdict = worst([r["verdict"] for r in rows if r["verdict"]])
    from auditor.detect import fails

    code = EXIT_ERROR if errors else (EXIT_FINDING if fails(verdict, fail_on) else EXIT_OK)
    if as_json:
        print_json({"verdict": verdict, "fail_on": fail_on, "exit_code": code, "models": rows})
    elif len(paths) > 1:
        click.echo(f"worst verdict: {verdict} ({len(paths)} models, {errors} error(s))")
    ctx.exit(code)
