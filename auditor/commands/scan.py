"""``auditor scan``: a backdoor verdict for one or more models, without purifying, as a CI gate.

Exit codes: 0 no model fails the gate, 1 at least one does (``--fail-on``: backdoored, the
default; suspicious; never), 2 the tool could not do its job for at least one file (bad input,
unsupported model); the other files are still scanned and reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._options import limits_from_options, spec_options, spec_overrides
from ._progress import progress_bar, stage_printer

FAIL_ON = click.Choice(["backdoored", "suspicious", "never"])


def fail_on_option(func):
    return click.option("--fail-on", type=FAIL_ON, default="backdoored", show_default=True,
                        help="Exit 1 when a verdict is at least this bad (never: always 0 unless the tool fails).")(func)


def detection_options(func):
    """Thresholds and effort of detection, shared by ``scan`` and ``audit``."""
    options = [
        click.option("--threshold", type=float, default=None,
                     help="A voting detector's anomaly index above which a class is a backdoor target (default 2; "
                          "channel stimulation's index is divided by 2.5 first, so 5 for it)."),
        click.option("--suspicious-threshold", type=float, default=None,
                     help="Anomaly index above which a class is suspicious (default 1.5; for stimulation 3.75)."),
        click.option("--nc-steps", type=click.IntRange(1), default=None,
                     help="Trigger reverse-engineering steps (default 150)."),
        click.option("--patch-detector/--no-patch-detector", default=True, show_default=True,
                     help="Search the small patch (16 pixels) that flips the most samples; a flip rate of 0.75 or "
                          "more is a patch trigger (BadNets, all-to-all included). On by default."),
        click.option("--feature-reach", is_flag=True,
                     help="Also report reach in a hidden layer's features (for triggers that are not one small "
                          "input delta). It does not vote: it flagged held-out clean models (docs/detection.md)."),
        click.option("--detector", "extra_detectors", multiple=True, metavar="NAME",
                     help="Also run this registered detector (repeatable): max_margin, signal_reach, feature_reach, "
                          "patch, ... Reported; it votes only with --voter."),
        click.option("--voter", "extra_voters", multiple=True, metavar="NAME",
                     help="Let this detector's anomaly index vote beside reach (repeatable; it is run if needed)."),
        click.option("--detector-workers", type=click.IntRange(1), default=None,
                     help="Detectors run side by side in this many workers, one CPU thread each (default 2, 1 on a "
                          "one-core machine). The figures do not depend on it."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def detection_config(opts: dict[str, Any]):
    from dataclasses import replace

    from auditor.detect import DetectionConfig, VerdictConfig, list_detectors

    verdict = VerdictConfig()
    if opts.get("threshold") is not None:
        verdict = replace(verdict, threshold=opts["threshold"])
    if opts.get("suspicious_threshold") is not None:
        verdict = replace(verdict, suspicious_threshold=opts["suspicious_threshold"])
    settings = {"neural_cleanse": {"steps": opts["nc_steps"]}} if opts.get("nc_steps") else {}
    extra = ((("feature_reach",) if opts.get("feature_reach") else ())
             + tuple(opts.get("extra_detectors") or ()) + tuple(opts.get("extra_voters") or ()))
    unknown = sorted(set(extra) - set(list_detectors()))
    if unknown:
        raise click.BadParameter(f"unknown detector {', '.join(unknown)}; known: {', '.join(list_detectors())}",
                                 param_hint="--detector/--voter")
    default = tuple(d for d in DetectionConfig().detectors if d != "patch" or opts.get("patch_detector", True))
    detectors = tuple(dict.fromkeys(default + extra))
    if opts.get("extra_voters"):
        verdict = replace(verdict, voters=tuple(dict.fromkeys(verdict.voters + tuple(opts["extra_voters"]))))
    workers = {"workers": opts["detector_workers"]} if opts.get("detector_workers") else {}
    return DetectionConfig(detectors=detectors, settings=settings, verdict=verdict, **workers)


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
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="Write report.json/.html/.sarif/.md and summary.md here (one subfolder per model when several).")
@fail_on_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--per-class", type=click.IntRange(2), default=None, help="Synthetic samples per class (default 20).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Most inversion steps per particle (default 8).")
@click.option("--pixels", is_flag=True, help="Ablation: invert pixels directly, no generator.")
@click.option("--generator", "generator_name", default=None, help="Generator: registry name or your own file.")
@click.option("--synthetic", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Use samples from `auditor invert` instead of inverting (one model only).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="CPU threads for torch. The thread count changes floating-point reductions and so the synthetic "
                   "samples: one thread gives the same report on any machine (docs/detection.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON on stdout.")
@click.option("--overwrite", is_flag=True, help="Replace existing reports.")
@detection_options
@spec_options
@click.pass_context
def scan_cmd(ctx: click.Context, models: tuple[str, ...], report_dir: str | None, fail_on: str, seed: int, device: str,
             per_class: int | None, steps: int | None, pixels: bool, generator_name: str | None,
             synthetic: str | None, threads: int, as_json: bool, overwrite: bool, **opts: Any) -> None:
    """Look for a backdoor in each MODEL (ONNX) from the model alone; exit 1 if one is found.

    On stabilized model-inversion samples, measures for every class how many samples of the other
    classes one small universal perturbation sends into it (reach), how many raising one hidden
    channel sends into it (stimulation) and how many one smooth sub-pixel warp sends into it (warp
    reach), and flags classes where any is an outlier; Neural Cleanse's reversed triggers are
    reported beside them. Several files: the exit code follows the worst verdict.
    """
    from dataclasses import replace

    from converters.errors import ModelError

    from auditor.cli import EXIT_ERROR, EXIT_FINDING, EXIT_OK
    from auditor.detect import fails, worst
    from auditor.pipeline import ScanOptions, check_report_dir, scan, scan_inversion
    from auditor.report import combined_paths, write_combined
    from auditor.report.escape import console

    from auditor.errors import AuditorError

    if synthetic and len(models) > 1:
        raise AuditorError("--synthetic holds samples of one model; scan one model with it")
    import torch

    torch.set_num_threads(threads)
    inversion = scan_inversion()
    inversion = replace(inversion, seed=seed, **{k: v for k, v in (("per_class", per_class), ("particle_steps", steps))
                                                  if v is not None})
    options = ScanOptions(seed=seed, device=device, inversion=inversion, pixels=pixels, generator=generator_name,
                          detection=detection_config(opts), spec_overrides=spec_overrides(opts),
                          limits=limits_from_options(opts), overwrite=overwrite,
                          synthetic=Path(synthetic) if synthetic else None)
    options.detection.threads = threads
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
                result = scan(path, folder, options, progress=progress, stage_log=stage_printer(path.stem))
        except ModelError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            errors += 1
            click.echo(f"error: {console(_with_path(path, exc))}", err=True)
            rows.append({"model": str(path), "verdict": None, "error": str(exc)})
            continue
        v = result.verdict
        reports.append(result.report)
        rows.append({"model": str(path), "verdict": v.verdict, "score": round(v.score, 4),
                     "suspected_targets": v.suspected_targets, "fails_gate": fails(v.verdict, fail_on),
                     "report_dir": str(folder) if folder else None, "seconds": result.report["timings"]["total"]})
        if not as_json:
            targets = f", suspected target(s) {', '.join(map(str, v.suspected_targets))}" if v.suspected_targets else ""
            click.echo(console(f"{path}: {v.verdict} (score {v.score:.2f}{targets}) in "
                               f"{result.report['timings']['total']:.0f} s" + (f"; report in {folder}" if folder else "")))
    if report_dir and len(paths) > 1 and reports:
        write_combined(reports, Path(report_dir))
    verdict = worst([r["verdict"] for r in rows if r["verdict"]])
    code = EXIT_ERROR if errors else (EXIT_FINDING if fails(verdict, fail_on) else EXIT_OK)
    if as_json:
        click.echo(json.dumps({"verdict": verdict, "fail_on": fail_on, "exit_code": code, "models": rows}, indent=2))
    elif len(paths) > 1:
        click.echo(f"worst verdict: {verdict} ({len(paths)} models, {errors} error(s))")
    ctx.exit(code)
