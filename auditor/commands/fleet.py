"""``auditor fleet scan|audit``: many models, on local worker processes or a Ray cluster.

A group of its own rather than more arguments to ``auditor scan``: a fleet run has an output folder it
resumes from, workers, retries and a timeout that a single-model run has no use for, and ``scan`` /
``audit`` keep their small surface. The per-model options are the single-model commands' own option
decorators, so the two never drift apart.

Exit codes (the whole fleet): 0 every model processed and none fails ``--fail-on``; 1 at least one model
fails ``--fail-on``; 2 at least one model could not be processed after its retries (the others are still
processed and reported); 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click

from auditor.options import AuditOptions, ScanOptions

from ._options import json_option, print_json, spec_options
from .audit import _purify_options
from .invert import inversion_options
from .scan import FAIL_ON, detection_options


def _ray_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--ray models/`` reads the folder as the address (an option with an optional value takes the next
    word): say so, rather than fail later trying to reach a cluster called ``models/``."""
    if value is not None and value != "local" and os.path.exists(value):
        raise click.BadParameter(f"{value!r} was read as the Ray address; put --ray after the inputs or write "
                                 "--ray=ADDRESS")
    return value


def fleet_options(func):
    """Inputs, output folder and where the work runs."""
    options = [
        click.argument("inputs", nargs=-1, required=True),
        click.option("-o", "--output", "output", type=click.Path(file_okay=False), required=True,
                     help="Fleet folder: one result per model (models/<key>/), index.json, summary.md, report.sarif. "
                          "A rerun skips the models already done there."),
        click.option("--workers", type=click.IntRange(1), default=None,
                     help="Local mode: models processed at once, one worker process each (default: the CPU count "
                          "divided by --threads)."),
        click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                     callback=_ray_address,
                     help="Ray mode: one Ray task per model. With an ADDRESS (ray://host:10001, host:6379, auto) "
                          "connect to that cluster; without, start a local one. Needs pip install 'auditor[ray]'."),
        click.option("--cpus-per-task", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Ray mode: CPUs each task declares (default: --threads)."),
        click.option("--gpus-per-task", type=click.FloatRange(min=0), default=None,
                     help="Ray mode: GPUs each task declares (default 1 with --device cuda, else 0)."),
        click.option("--worker-memory-mb", type=click.IntRange(64), default=None,
                     help="Memory bound per worker: the address-space limit of a local worker process, the "
                          "declared memory of a Ray task."),
        click.option("--retries", type=click.IntRange(0), default=2, show_default=True,
                     help="Times a model is started again after its worker was lost (killed, crashed, timed out, "
                          "node died). A model the tool refuses is not retried."),
        click.option("--timeout", "task_timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Seconds after which a model's worker is killed (then retried like a lost worker)."),
        click.option("--progress-every", type=click.FloatRange(min=1), default=30.0, show_default=True,
                     help="Seconds between progress lines while nothing finishes."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _backend(opts: dict[str, Any], threads: int, device: str):
    """A factory for the backend: called only once there is work, so a rerun with nothing to do starts no
    cluster."""
    if opts["ray_address"] is not None:
        if opts.get("workers") is not None and opts["ray_address"] != "local":
            raise click.BadParameter("--workers sizes local mode or a local Ray instance; a cluster has its own",
                                     param_hint="--workers")
        from auditor.fleet.ray_backend import RayBackend, _import_ray

        _import_ray()  # before any work, so a missing extra ends the command at once
        gpus = opts["gpus_per_task"] if opts["gpus_per_task"] is not None else (1.0 if device == "cuda" else 0.0)
        cpus = opts["cpus_per_task"] if opts["cpus_per_task"] is not None else float(threads)
        return lambda: RayBackend(opts["ray_address"], cpus_per_task=cpus, gpus_per_task=gpus,
                                  memory_mb=opts["worker_memory_mb"], local_cpus=opts.get("workers"))
    from auditor.fleet.local import LocalBackend

    return lambda: LocalBackend(_local_workers(opts, threads), memory_mb=opts["worker_memory_mb"])


def _local_workers(opts: dict[str, Any], threads: int) -> int:
    """Local mode's worker processes: --workers, else the CPU count divided by --threads."""
    return opts["workers"] or max(1, (os.cpu_count() or 1) // max(1, threads))


def _detector_workers(opts: dict[str, Any], threads: int) -> int:
    """Detectors side by side within one model: only the cores the fleet's own workers leave idle (the
    default fleet fills every core, so one). Two fleet workers with two detector workers each put four
    threads on a 2-core machine."""
    cores = os.cpu_count() or 1
    if opts["ray_address"] is not None:
        declared = opts["cpus_per_task"] if opts["cpus_per_task"] is not None else float(threads)
        return max(1, int(declared // max(1, threads)))
    return max(1, cores // (_local_workers(opts, threads) * max(1, threads)))


def _engine_options(command_options: type, opts: dict[str, Any], **explicit: Any) -> Any:
    """The engine's configuration for each model, built as the single-model command builds it (the API's
    options dataclass and its ``config()``). Its output, report folder, gate and overwrite are the fleet's
    own, so they are left at their defaults and out of the result's key."""
    fleet_owned = {"output", "report_dir", "fail_on", "overwrite"}
    names = {f.name for f in dataclasses.fields(command_options)} - fleet_owned
    values = {k: v for k, v in {**opts, **explicit}.items() if k in names}
    return command_options(**values).config()


def _run(ctx: click.Context, job: Any, fail_on: str, overwrite: bool, opts: dict[str, Any], device: str) -> None:
    from auditor.fleet import collect, run_fleet

    items = collect(opts["inputs"])
    job = dataclasses.replace(job, detector_workers=_detector_workers(opts, job.threads))
    backend = _backend(opts, job.threads, device)
    result = run_fleet(items, opts["output"], job, backend, fail_on=fail_on, retries=opts["retries"],
                       timeout=opts["task_timeout"], overwrite=overwrite, progress_every=opts["progress_every"])
    if opts.get("as_json"):
        print_json(result.index)
    ctx.exit(result.exit_code)


@click.group("fleet")
def fleet_group() -> None:
    """Scan or audit many models (files, folders, globs, JSON-lines manifests) on local worker processes
    (--workers N) or a Ray cluster (--ray [ADDRESS]), resumably, into one merged result."""


@fleet_group.command("scan")
@fleet_options
@json_option("Print the merged index (index.json's content) on stdout.")
@click.option("--fail-on", type=FAIL_ON, default="backdoored", show_default=True,
              help="Exit 1 when any model's verdict is at least this bad.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--per-class", type=click.IntRange(2), default=None, help="Synthetic samples per class (default 20).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Most inversion steps per particle (default 8).")
@click.option("--pixels", is_flag=True, help="Ablation: invert pixels directly, no generator.")
@click.option("--generator", "generator_name", default=None, help="Generator: registry name or your own file.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="CPU threads for torch in each worker (part of a result's key: it changes the figures).")
@click.option("--overwrite", is_flag=True, help="Redo the models already done in the fleet folder.")
@detection_options
@spec_options
@click.pass_context
def fleet_scan_cmd(ctx: click.Context, fail_on: str, seed: int, device: str, per_class: int | None,
                   steps: int | None, pixels: bool, generator_name: str | None, threads: int, overwrite: bool,
                   **opts: Any) -> None:
    """A backdoor verdict for every model of INPUTS, as `auditor scan` gives for one.

    \b
    Examples:
      auditor fleet scan models/ -o fleet-scan --workers 2
      auditor fleet scan 'hub/**/*.onnx' manifest.jsonl -o fleet-scan --ray
      auditor fleet scan models/ -o fleet-scan --ray=ray://head:10001 --json > index.json
    """
    from auditor.fleet import Job

    options = _engine_options(ScanOptions, opts, seed=seed, device=device, per_class=per_class, steps=steps,
                              pixels=pixels, generator=generator_name, threads=threads)
    _run(ctx, Job("scan", options, threads), fail_on, overwrite, opts, device)


@fleet_group.command("audit")
@fleet_options
@json_option("Print the merged index (index.json's content) on stdout.")
@click.option("--fail-on", type=FAIL_ON, default="suspicious", show_default=True,
              help="Exit 1 when any purified model's verdict is at least this bad.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="CPU threads for torch in each worker (part of a result's key: it changes the figures).")
@_purify_options
@inversion_options
@detection_options
@spec_options
@click.pass_context
def fleet_audit_cmd(ctx: click.Context, fail_on: str, threads: int, **opts: Any) -> None:
    """Purify every model of INPUTS, as `auditor audit` does for one; each purified model is written into
    its result folder. --overwrite redoes the models already done.

    \b
    Examples:
      auditor fleet audit models/ -o fleet-audit --workers 2
      auditor fleet audit manifest.jsonl -o fleet-audit --ray --fail-on backdoored
    """
    from auditor.fleet import Job

    options = _engine_options(AuditOptions, opts)
    options.detection.threads = threads
    _run(ctx, Job("audit", options, threads), fail_on, opts["overwrite"], opts, opts["device"])
