"""The audit, top-down: convert -> invert -> purify (guarded) -> write back -> verify -> report.

No clean data is used anywhere on this path. Measurement against real data (ACC/ASR/RA before
and after) is an optional callback supplied by the caller, so that this module never imports
the zoo-side packages (``auditor.data``, ``auditor.attacks``, ``auditor.evaluate``).

Nothing is lost or overwritten on failure: the output model and the report folder are checked
before any work starts, the model is written under a temporary name and verified in onnxruntime
before it is moved into place, and a failure after that removes it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

import converters
from converters import compare_with_onnxruntime, convert, load_onnx, save_onnx

from . import __version__
from .errors import AuditorError
from .inversion import InversionConfig, SynthSet, invert, save_class_grid
from .model import Classifier, pick_device
from .purify import get_purifier
from .purify.guard import GuardConfig, guarded_purify

_LOG = logging.getLogger(__name__)
Progress = Callable[..., None]
Evaluator = Callable[[Path], dict]
REPORT_SCHEMA = "auditor.report/1"


@dataclass
class AuditOptions:
    method: str = "ibau"
    seed: int = 0
    device: str = "auto"
    inversion: InversionConfig = field(default_factory=InversionConfig)
    pixels: bool = False  # ablation: no generator
    generator: str | None = None  # registry name or a user's generator file
    purifier_config: dict[str, Any] = field(default_factory=dict)
    guard: GuardConfig = field(default_factory=GuardConfig)
    holdout_fraction: float = 0.1  # synthetic samples kept out of purification, for the guard
    synthetic: Path | None = None  # reuse samples from `auditor invert` instead of inverting
    clean_data: tuple[torch.Tensor, torch.Tensor] | None = None  # real images, for comparison runs only
    spec_overrides: dict[str, Any] = field(default_factory=dict)
    max_model_bytes: int | None = None
    overwrite: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "seed": self.seed, "device": self.device, "pixels": self.pixels,
            "generator": self.generator, "purifier_config": self.purifier_config,
            "guard": self.guard.__dict__, "holdout_fraction": self.holdout_fraction,
            "synthetic": str(self.synthetic) if self.synthetic else None,
            "data_source": "clean" if self.clean_data is not None else "synthetic",
            "inversion": self.inversion.to_json(),
        }


@dataclass
class AuditResult:
    report: dict[str, Any]
    output: Path
    report_dir: Path


class _Stages:
    """Wall time of each stage, for the report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def audit(
    model_path: str | Path,
    output: str | Path,
    report_dir: str | Path,
    options: AuditOptions = AuditOptions(),
    evaluator: Evaluator | None = None,
    progress: Progress | None = None,
) -> AuditResult:
    """Purify ``model_path`` into ``output`` and write the report into ``report_dir``."""
    model_path, output, report_dir = Path(model_path), Path(output), Path(report_dir)
    _check_destinations(model_path, output, report_dir, options.overwrite)
    stages = _Stages()
    torch.manual_seed(options.seed)
    device = pick_device(options.device)

    with stages("convert"):
        kwargs = {"max_bytes": options.max_model_bytes} if options.max_model_bytes else {}
        loaded = load_onnx(model_path, spec_overrides=options.spec_overrides or None, **kwargs)
        converted = convert(loaded)
        parity = compare_with_onnxruntime(converted.module, loaded.model, loaded.spec)
        if not parity.ok:
            raise AuditorError(
                f"the converted model differs from onnxruntime by {parity.max_abs:.2e}; refusing to purify a model "
                "we cannot reproduce (run `auditor inspect` for details)"
            )
        classifier = Classifier(converted.module, loaded.spec).to(device)

    with stages("invert"):
        synth = _synthetic_samples(classifier, options, progress)
        train, holdout = synth.split(options.holdout_fraction, seed=options.seed)

    with stages("purify"):
        purifier = get_purifier(options.method, **options.purifier_config)
        if options.clean_data is not None:
            train_images, train_labels, source = options.clean_data[0], options.clean_data[1], "clean"
        else:
            train_images, train_labels, source = train.images01, train.labels, "synthetic"
        guard = guarded_purify(
            classifier, purifier, train_images, train_labels, holdout.images01, holdout.labels, options.guard,
            progress=progress, seed=options.seed, data_source=source,
        )

    report = _base_report("audit", loaded, options, parity)
    report["inversion"] = _inversion_section(synth, train, holdout)
    report["purification"] = guard.to_json()
    written = False
    try:
        with stages("write"):
            report_dir.mkdir(parents=True, exist_ok=True)
            save_class_grid(synth.images01, synth.labels, loaded.spec.num_classes, report_dir / "synthetic_samples.png")
            report["output"] = None
            metadata = {
                "auditor.version": __version__,
                "auditor.input_sha256": loaded.sha256,
                "auditor.method": options.method,
                "auditor.seed": str(options.seed),
                "auditor.guard_status": guard.status,
            }
            # the model records the report's hash; the report's `output` block (which holds the
            # model's hash) is excluded from that hash, so that neither depends on the other
            report["timings"] = dict(stages.seconds)
            metadata["auditor.report_sha256"] = report_hash(report)
            exported = save_onnx(converted, output, metadata=metadata, overwrite=options.overwrite)
            written = True
        with stages("evaluate"):
            if evaluator is not None:
                report["evaluation"] = {"before": evaluator(model_path), "after": evaluator(output)}
        report["verification"] = {
            "write_back_parity": exported.parity.to_json(),
            "export_method": exported.method,
            "export_note": exported.note,
            "node_for_node": exported.method == "write-back",
        }
        report["output"] = {"path": str(output), "sha256": converters.sha256_file(output), "metadata": metadata}
        report["timings"] = dict(stages.seconds)
        report["timings"]["total"] = round(sum(stages.seconds.values()), 3)
        from .report import write_reports

        write_reports(report, report_dir)
    except BaseException:
        if written and output.exists():
            output.unlink()
        raise
    return AuditResult(report=report, output=output, report_dir=report_dir)


def _check_destinations(model_path: Path, output: Path, report_dir: Path, overwrite: bool) -> None:
    if output.resolve() == model_path.resolve():
        raise AuditorError("the output path is the input model; choose another -o (the input is never modified)")
    if output.exists() and not overwrite:
        raise AuditorError(f"{output} exists; pass --overwrite to replace it")
    if report_dir.exists() and not report_dir.is_dir():
        raise AuditorError(f"{report_dir} exists and is not a folder")
    if report_dir.is_dir() and (report_dir / "report.json").exists() and not overwrite:
        raise AuditorError(f"{report_dir} already holds a report; pass --overwrite or choose another --report-dir")


def _synthetic_samples(classifier: Classifier, options: AuditOptions, progress: Progress | None) -> SynthSet:
    if options.synthetic is not None:
        synth = SynthSet.load(options.synthetic)
        if tuple(synth.images01.shape[1:]) != classifier.spec.image_shape:
            raise AuditorError(
                f"{options.synthetic}: samples of shape {tuple(synth.images01.shape[1:])} do not fit the model's "
                f"input {classifier.spec.image_shape}"
            )
        if int(synth.labels.max()) >= classifier.num_classes:
            raise AuditorError(f"{options.synthetic}: labels exceed the model's {classifier.num_classes} classes")
        return synth
    return invert(classifier, options.inversion, pixels=options.pixels, generator=options.generator, progress=progress)


def _base_report(command: str, loaded: converters.LoadedModel, options: AuditOptions, parity) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "tool": {"name": "auditor", "version": __version__, "torch": torch.__version__},
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input": {"path": str(loaded.path), "sha256": loaded.sha256, "opset": loaded.opset},
        "spec": loaded.spec.to_json(),
        "conversion": {"parity": parity.to_json()},
        "config": options.to_json(),
        "seed": options.seed,
    }


def _inversion_section(synth: SynthSet, train: SynthSet, holdout: SynthSet) -> dict[str, Any]:
    summary = dict(synth.summary)
    fit = dict(summary.get("fit", {}))
    fit.pop("history", None)  # the curve stays in `auditor invert`'s JSON; the report keeps the end point
    summary["fit"] = fit
    summary["samples"] = {"total": len(synth), "purification": len(train), "holdout": len(holdout)}
    return summary


_UNHASHED = ("output", "created", "verification", "evaluation", "timings")


def report_hash(report: dict[str, Any]) -> str:
    """sha256 of the report without the blocks written after the model (output, verification,
    evaluation, timings) and its timestamp: the value stored in the model's metadata."""
    body = {k: v for k, v in report.items() if k not in _UNHASHED}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
