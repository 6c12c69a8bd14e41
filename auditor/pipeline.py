"""The audit, top-down: convert -> invert -> detect -> purify (guarded) -> verify -> write back -> report;
and the scan (a verdict without purifying): convert -> invert (small) -> detect -> report. Each stage is a
function that takes the earlier stages' dataclasses (``ConvertedModel``, ``Samples``, ``Evidence``,
``Purification``, ``Verified``) and returns its own.

No clean data is used anywhere on this path. Measurement against real data (ACC/ASR/RA before
and after) is an optional callback supplied by the caller, so that this module never imports
the zoo-side packages (``auditor.data``, ``auditor.attacks``, ``auditor.evaluate``).

Nothing is lost or overwritten on failure: the output model and the report folder are checked
before any work starts (not the input, not a folder, writable), and every file, the model included,
is written under a temporary name beside its final path (``report.files.Staging``) and moved into
place only when all of them are written, so a failure at any point leaves nothing new.
"""

from __future__ import annotations

import dataclasses
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
from .detect import DETECTORS, DetectionConfig, DetectionResult, Verdict, combine, run_detectors
from .detect.verdict import raised_by_findings
from .detect.leads import find_leads
from .errors import AuditorError
from .inversion import InversionConfig, StabilityConfig, SynthSet, invert, save_class_grid
from .inversion.synth import quantize
from .model import Classifier, pick_device
from .purify import DEFAULT_PURIFIER, Purifier, get_purifier
from .purify.guard import GuardConfig, GuardReport, guarded_purify
from .verify import (CarriedTrigger, Verification, carried_triggers, residuals_before, verify,
                     without_single_target_patch)
from .report.files import Staging, check_output_dir, check_output_file

_LOG = logging.getLogger(__name__)
Progress = Callable[..., None]
Evaluator = Callable[[Path], dict]
REPORT_SCHEMA = "auditor.report/1"


def scan_inversion() -> InversionConfig:
    """A small inversion for a scan: enough samples per class for the detectors, fast on a CPU."""
    return InversionConfig(per_class=20, steps=60, batch_per_class=4, oversample=1.5,
                           eval_stability=StabilityConfig(input_draws=2, param_draws=2))


@dataclass
class AuditOptions:
    method: str = DEFAULT_PURIFIER  # a purifier name, or purification steps joined by commas
    seed: int = 0
    device: str = "auto"
    inversion: InversionConfig = field(default_factory=InversionConfig)
    pixels: bool = False  # ablation: no generator
    generator: str | None = None  # registry name or a user's generator file
    purifier_config: dict[str, Any] = field(default_factory=dict)
    guard: GuardConfig = field(default_factory=GuardConfig)
    holdout_fraction: float = 0.1  # synthetic samples kept out of purification, for the guard
    guard_prior_samples: int = 500  # unconditioned generator samples added to the guard's probe set
    anchor_samples: int = 2500  # unconditioned generator samples on which purification keeps the original's predictions
    synthetic: Path | None = None  # reuse samples from `auditor invert` instead of inverting
    clean_data: tuple[torch.Tensor, torch.Tensor] | None = None  # real images, for comparison runs only
    spec_overrides: dict[str, Any] = field(default_factory=dict)
    limits: converters.Limits | None = None  # resource limits (default: converters.Limits())
    overwrite: bool = False
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    rescan: bool = True  # detect on the original model and verify the purified one
    rescan_inversion: InversionConfig = field(default_factory=scan_inversion)  # the fresh look's samples (capped: _fresh_samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "seed": self.seed, "device": self.device, "pixels": self.pixels,
            "detection": self.detection.to_json(), "rescan": self.rescan,
            "rescan_inversion": self.rescan_inversion.to_json(),
            "generator": self.generator, "purifier_config": self.purifier_config,
            "guard": self.guard.__dict__, "holdout_fraction": self.holdout_fraction,
            "guard_prior_samples": self.guard_prior_samples, "anchor_samples": self.anchor_samples,
            "synthetic": str(self.synthetic) if self.synthetic else None,
            "data_source": "clean" if self.clean_data is not None else "synthetic",
            "inversion": self.inversion.to_json(),
        }


@dataclass
class AuditResult:
    report: dict[str, Any]
    output: Path
    report_dir: Path


StageLog = Callable[[str], None]


class _Stages:
    """Wall time of each stage, for the report; each start and end also goes to ``log`` (one line
    each, what a CI log shows of a long run)."""

    def __init__(self, log: StageLog | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.log = log

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        if self.log:
            self.log(f"{name}: started")
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)
            if self.log:
                self.log(f"{name}: {self.seconds[name]:.1f} s")


def _timings(stages: _Stages, **detections_by_stage: dict[str, DetectionResult]) -> dict[str, float]:
    """Each stage's seconds, then each detector's wall time within the stage that ran it (``detect.neural_cleanse``,
    ``rescan.patch``: where a slow audit spends its time; detectors may run side by side, so these can overlap
    and need not add up to the stage), and the total of the stages alone."""
    timings = dict(stages.seconds)
    for stage, results in detections_by_stage.items():
        timings.update({f"{stage}.{name}": round(result.seconds, 3) for name, result in results.items()})
    timings["total"] = round(sum(stages.seconds.values()), 3)
    return timings


@dataclass
class ConvertedModel:
    """The convert stage's output: the loaded ONNX, its trainable conversion, their parity, and the classifier."""

    loaded: converters.LoadedModel
    converted: Any  # converters' converted model, which write-back needs
    parity: Any  # the conversion's parity with onnxruntime
    classifier: Classifier


@dataclass
class Samples:
    """The invert stage's output: the synthetic samples, their split, and the generator's unconditioned samples."""

    synth: SynthSet
    train: SynthSet  # what purification trains on
    holdout: SynthSet  # what the guard and the verification probe with
    prior_probe: torch.Tensor | None  # the guard's prior probe (None without a generator)
    anchors: torch.Tensor | None  # where purification keeps the original's predictions (None without a generator)


@dataclass
class Purification:
    """The purify stage's output: the guard's record, why it used its threshold, and the original's verdict
    raised by what purification found."""

    guard: GuardReport
    threshold_basis: str
    original_verdict: Verdict | None  # None where no detection ran


def audit(
    model_path: str | Path,
    output: str | Path,
    report_dir: str | Path,
    options: AuditOptions = AuditOptions(),
    evaluator: Evaluator | None = None,
    progress: Progress | None = None,
    stage_log: StageLog | None = None,
) -> AuditResult:
    """Purify ``model_path`` into ``output`` and write the report into ``report_dir``."""
    model_path, output, report_dir = Path(model_path), Path(output), Path(report_dir)
    _check_destinations(model_path, output, report_dir, options.overwrite)
    purifier = get_purifier(options.method, **options.purifier_config)  # a bad method or option fails before any work
    stages = _Stages(stage_log)
    torch.manual_seed(options.seed)
    device = pick_device(options.device)

    with stages("convert"):
        model = convert_stage(model_path, options, device, "purify")
    with stages("invert"):
        samples = invert_stage(model, options, progress)
    evidence: Evidence | None = None
    if options.rescan:
        with stages("detect"):
            evidence = gather_evidence(model.classifier, samples.synth, samples.holdout, samples.prior_probe,
                                       options.detection, options.seed, progress)
    with stages("purify"):
        purification = purify_stage(model, samples, evidence, purifier, options, progress)
    verified: Verified | None = None
    if evidence is not None:
        with stages("verify"):
            verified = verify_purified(model.classifier, evidence, options, progress)

    report = audit_report(model, samples, evidence, purification, verified, options)
    with Staging() as staging:
        with stages("write"):
            exported = write_stage(model, samples, evidence, purification, options, output, report_dir, report,
                                   stages, staging)
        with stages("evaluate"):
            if evaluator is not None:
                report["evaluation"] = {"before": evaluator(model_path), "after": evaluator(staging.located(output))}
        report["verification"] = {
            "write_back_parity": exported.parity.to_json(),
            "export_method": exported.method,
            "export_note": exported.note,
            "node_for_node": exported.method == "write-back",
        }
        report["output"]["sha256"] = converters.sha256_file(staging.located(output))
        report["timings"] = _timings(stages, detect=evidence.results if evidence is not None else {},
                                     verify=verified.rescan.results if verified is not None else {})
        from .report import write_reports

        write_reports(report, report_dir, staging=staging)
    return AuditResult(report=report, output=output, report_dir=report_dir)


def convert_stage(model_path: Path, options: "AuditOptions | ScanOptions", device: torch.device,
                  purpose: str) -> ConvertedModel:
    """Load, convert and check parity with onnxruntime (``purpose`` names the refusal)."""
    return ConvertedModel(*_convert_checked(model_path, options, device, purpose))


def invert_stage(model: ConvertedModel, options: AuditOptions, progress: Progress | None) -> Samples:
    """The synthetic samples (inverted, or the saved ones), their split, and the generator's prior samples.

    SMI samples are classified confidently by construction, so a purification that wrecks the model can still
    agree with the original on all of them (seen on the zoo: holdout agreement 1.0 while clean accuracy fell
    from 87% to 25%). The guard also probes the model with unconditioned generator samples, far from the class
    modes; purification keeps the original's predictions on a different draw of them (the anchors)."""
    synth = _synthetic_samples(model.classifier, options, progress)
    train, holdout = synth.split(options.holdout_fraction, seed=options.seed)
    prior_probe = _prior_samples(model.classifier, options, options.guard_prior_samples, options.seed + 7)
    anchors = _prior_samples(model.classifier, options, options.anchor_samples, options.seed + 11)
    return Samples(synth, train, holdout, prior_probe, anchors)


def purify_stage(model: ConvertedModel, samples: Samples, evidence: "Evidence | None", purifier: Purifier,
                 options: AuditOptions, progress: Progress | None) -> Purification:
    """The guarded purification with ``purifier``, in place on ``model.classifier``: it acts on leads found once
    on the unpurified model, and a detected backdoor buys accuracy budget while none found keeps accuracy
    (``GuardConfig.for_verdict``)."""
    classifier = model.classifier
    verdict = evidence.verdict if evidence is not None else None
    guard_config = options.guard.for_verdict(verdict.verdict if verdict is not None else None)
    threshold_basis = _threshold_basis(options.guard, guard_config, verdict)
    # a purifier that prunes by its own agreement rule never prunes below the guard's threshold, so that a model
    # with no backdoor found is not pruned into a loss the guard then cannot undo by interpolation
    purifier = purifier.for_guard(guard_config.min_prior_agreement)
    if options.clean_data is not None:
        train_images, train_labels, source = options.clean_data[0], options.clean_data[1], "clean"
    else:
        train_images, train_labels, source = samples.train.images01, samples.train.labels, "synthetic"
    requests = purifier.lead_requests()
    if requests.any:  # found once on the unpurified model: every attempt of the back-off acts on the same leads
        purifier = purifier.with_leads(find_leads(classifier, train_images, train_labels, requests, options.seed,
                                                  progress))
    guard = guarded_purify(
        classifier, purifier, train_images, train_labels, samples.holdout.images01, samples.holdout.labels,
        guard_config, progress=progress, seed=options.seed, data_source=source, anchors=samples.anchors,
        prior_images=samples.prior_probe,
    )
    # the original's verdict, raised by what purification found on it; the carried evidence stays the detection's
    findings = guard.attempts[0].result.findings if guard.attempts else []
    original_verdict = raised_by_findings(verdict, findings) if verdict is not None else None
    return Purification(guard, threshold_basis, original_verdict)


def audit_report(model: ConvertedModel, samples: Samples, evidence: "Evidence | None", purification: Purification,
                 verified: "Verified | None", options: AuditOptions) -> dict[str, Any]:
    """The report's body from the stages' outputs (the blocks written with and after the model come later)."""
    spec = model.loaded.spec
    report = _base_report("audit", model.loaded, options, model.parity)
    if evidence is not None and purification.original_verdict is not None and verified is not None:
        rescanned, verification = verified.rescan, verified.verification
        report["verdict"] = _audit_verdict(purification.original_verdict, rescanned.verdict, verification)
        report["detection"] = _detection_section(evidence.results, spec.num_classes, spec.class_names)
        report["rescan"] = _detection_section(rescanned.results, spec.num_classes, spec.class_names)
    report["inversion"] = _inversion_section(samples.synth, samples.train, samples.holdout)
    report["purification"] = purification.guard.to_json()
    report["purification"]["threshold_basis"] = purification.threshold_basis  # the detection's own verdict's
    return report


def write_stage(model: ConvertedModel, samples: Samples, evidence: "Evidence | None", purification: Purification,
                options: AuditOptions, output: Path, report_dir: Path, report: dict[str, Any], stages: _Stages,
                staging: Staging) -> Any:
    """Stage the report's pictures and the purified model, whose metadata records the report's hash; returns
    converters' export record."""
    staging.folder(report_dir)
    save_class_grid(samples.synth.images01, samples.synth.labels, model.loaded.spec.num_classes,
                    staging.path(report_dir / "synthetic_samples.png"))
    report["artifacts"] = {"synthetic_samples": "synthetic_samples.png"}
    if evidence is not None:
        report["artifacts"].update(_save_triggers(evidence.results, report_dir, staging))
    report["output"] = None
    metadata = {
        "auditor.version": __version__,
        "auditor.input_sha256": model.loaded.sha256,
        "auditor.method": options.method,
        "auditor.seed": str(options.seed),
        "auditor.guard_status": purification.guard.status,
    }
    # the model records the report's hash; the report's `output` block (which holds the model's hash) is
    # excluded from that hash, so that neither depends on the other
    report["timings"] = dict(stages.seconds)
    metadata["auditor.report_sha256"] = report_hash(report)
    exported = save_onnx(model.converted, staging.path(output), metadata=metadata, overwrite=True)
    report["output"] = {"path": str(output), "sha256": None, "metadata": metadata}
    return exported


@dataclass
class Detection:
    """Every detector's result on one set of samples, and the verdict they combine into."""

    results: dict[str, DetectionResult]
    verdict: Verdict


@dataclass
class Evidence:
    """What the detection found on the original model, and what verification re-applies to the purified one."""

    results: dict[str, DetectionResult]  # each detector's result on the original model
    verdict: Verdict  # the original model's verdict
    triggers: list[CarriedTrigger]  # the triggers found for the classes the verdict suspects
    probe: torch.Tensor  # images (0..1) purification never trains on: the synthetic holdout and prior samples
    probe_labels: torch.Tensor  # their labels on the original model
    before: list[float]  # each trigger's share on the original model


@dataclass
class Verified:
    """The verify stage's output: the fresh re-scan of the purified model, and the verification it decides with."""

    rescan: Detection
    verification: Verification


def gather_evidence(classifier: Classifier, synth: SynthSet, holdout: SynthSet, prior_probe: torch.Tensor | None,
                    detection: DetectionConfig, seed: int, progress: Progress | None = None) -> Evidence:
    """Detect on the original model's synthetic samples and measure what each found trigger does on it,
    before any weight changes (the audit's detect stage; also what the verification calibration replays)."""
    results, verdict = _detect(classifier, synth.images01, synth.labels, detection, seed, progress)
    probe, probe_labels = _verification_probe(classifier, holdout, prior_probe)
    triggers = carried_triggers(results, verdict)
    return Evidence(results, verdict, triggers, probe, probe_labels,
                    residuals_before(classifier, triggers, probe, probe_labels))


def verify_purified(classifier: Classifier, evidence: Evidence, options: AuditOptions,
                    progress: Progress | None = None) -> Verified:
    """The purified ``classifier``'s verification: the original's triggers re-applied, and a fresh look on samples
    inverted from the purified model itself with another seed, so that the re-scan does not inherit what the
    original model's samples carry."""
    fresh = _fresh_samples(classifier, options, progress)
    results, verdict = _detect(classifier, fresh.images01, fresh.labels, options.detection.deciding_only(),
                               options.seed + 1, progress)
    names = list(classifier.spec.class_names) if classifier.spec.class_names else None
    deciding, notes = without_single_target_patch(results, verdict, names)
    verification = verify(classifier, evidence.triggers, evidence.before, evidence.probe, evidence.probe_labels,
                          deciding, evidence.results.get("reach"), results.get("reach"), notes=notes)
    return Verified(Detection(results, verdict), verification)


def _threshold_basis(default: GuardConfig, applied: GuardConfig, original: Verdict | None) -> str:
    """Why the guard used the prior-probe threshold it did, for the report."""
    found = (f"; an attempt whose purifier found a backdoor itself needs {default.min_prior_agreement_backdoored:g}"
             if default.min_prior_agreement_backdoored is not None else "")
    if original is None:
        return f"no detection ran: prior threshold {applied.min_prior_agreement:g}{found}"
    verdict = original.verdict
    if verdict == "backdoored":
        return (f"the detection found a backdoor, so the guard allowed prior agreement down to "
                f"{applied.min_prior_agreement:g} (no detection: {default.min_prior_agreement:g})")
    return (f"detection verdict {verdict}, no backdoor found: the guard kept accuracy, prior threshold "
            f"{applied.min_prior_agreement:g} (no detection: {default.min_prior_agreement:g}){found}")


def _prior_samples(classifier: Classifier, options: AuditOptions, count: int, seed: int) -> torch.Tensor | None:
    """``count`` unconditioned samples of the generator in the model's input space (None if none are
    wanted or the run has no generator): public-looking images that carry no trigger."""
    if count <= 0 or options.pixels:
        return None
    from .generators import adapter_for, load_generator

    generator = load_generator(options.generator) if options.generator else load_generator()
    adapter = adapter_for(generator, classifier.spec)
    draw = torch.Generator().manual_seed(seed)
    images = []
    with torch.no_grad():
        for start in range(0, count, 500):
            z = torch.randn(min(500, count - start), int(generator.z_dim), generator=draw)
            images.append(quantize(adapter.images01(generator(z))).cpu())
    return torch.cat(images)


def _convert_checked(model_path: Path, options: "AuditOptions | ScanOptions", device: torch.device, purpose: str):
    """Load, convert and check parity with onnxruntime: we only work on a model we reproduce."""
    loaded = load_onnx(model_path, spec_overrides=options.spec_overrides or None, limits=options.limits)
    converted = convert(loaded)
    parity = compare_with_onnxruntime(converted.module, loaded.model, loaded.spec)
    if not parity.ok:
        raise AuditorError(
            f"the converted model differs from onnxruntime by {parity.max_abs:.2e}; refusing to {purpose} a model "
            "we cannot reproduce (run `auditor inspect` for details)"
        )
    return loaded, converted, parity, Classifier.from_converted(converted).to(device)


def _check_destinations(model_path: Path, output: Path, report_dir: Path, overwrite: bool) -> None:
    """Before any compute: the output is not the input, not a folder, and can be written; so can the report."""
    if output.resolve() == model_path.resolve():
        raise AuditorError("the output path is the input model; choose another -o (the input is never modified)")
    check_output_file(output, "-o", overwrite, inputs=[model_path], create_folder=True)
    check_report_dir(report_dir, overwrite)


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


def _fresh_samples(classifier: Classifier, options: AuditOptions, progress: Progress | None) -> SynthSet:
    """Samples inverted from the (purified) model itself, with another seed than the audit's own:
    ``rescan_inversion``, never larger than the audit's own inversion and with its method."""
    own, fresh = options.inversion, options.rescan_inversion
    config = dataclasses.replace(fresh, seed=options.seed + 1, per_class=min(fresh.per_class, own.per_class),
                                 particle_steps=min(fresh.particle_steps, own.particle_steps), method=own.method,
                                 stability=own.stability)
    return invert(classifier, config, pixels=options.pixels, generator=options.generator, progress=progress)


def _base_report(command: str, loaded: converters.LoadedModel, options: AuditOptions, parity) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        # the thread count changes floating-point reductions, and so the synthetic samples and the figures
        "tool": {"name": "auditor", "version": __version__, "torch": torch.__version__,
                 "torch_threads": torch.get_num_threads()},
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


# -- scan: a verdict without purifying ---------------------------------------------------------------


@dataclass
class ScanOptions:
    seed: int = 0
    device: str = "auto"
    inversion: InversionConfig = field(default_factory=scan_inversion)
    pixels: bool = False  # ablation: no generator
    generator: str | None = None
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    synthetic: Path | None = None  # reuse samples from `auditor invert` instead of inverting
    spec_overrides: dict[str, Any] = field(default_factory=dict)
    limits: converters.Limits | None = None  # resource limits (default: converters.Limits())
    overwrite: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "device": self.device, "pixels": self.pixels, "generator": self.generator,
            "synthetic": str(self.synthetic) if self.synthetic else None, "data_source": "synthetic",
            "inversion": self.inversion.to_json(), "detection": self.detection.to_json(),
        }


@dataclass
class ScanResult:
    report: dict[str, Any]
    verdict: Verdict
    report_dir: Path | None


def scan(
    model_path: str | Path,
    report_dir: str | Path | None,
    options: ScanOptions = ScanOptions(),
    progress: Progress | None = None,
    stage_log: StageLog | None = None,
) -> ScanResult:
    """A backdoor verdict for ``model_path`` from the model alone; reports into ``report_dir`` if given."""
    model_path = Path(model_path)
    report_dir = Path(report_dir) if report_dir is not None else None
    if report_dir is not None:
        check_report_dir(report_dir, options.overwrite)
    stages = _Stages(stage_log)
    torch.manual_seed(options.seed)
    device = pick_device(options.device)

    with stages("convert"):
        model = convert_stage(model_path, options, device, "give a verdict on")
        loaded, parity, classifier = model.loaded, model.parity, model.classifier

    with stages("invert"):
        synth = _synthetic_samples(classifier, options, progress)  # type: ignore[arg-type]

    with stages("detect"):
        results, verdict = _detect(classifier, synth.images01, synth.labels, options.detection, options.seed, progress)

    report = _base_report("scan", loaded, options, parity)  # type: ignore[arg-type]
    report["verdict"] = verdict.to_json()
    report["detection"] = _detection_section(results, loaded.spec.num_classes, loaded.spec.class_names)
    inversion = dict(synth.summary)
    fit = dict(inversion.get("fit", {}))
    fit.pop("history", None)
    inversion["fit"] = fit
    inversion.pop("seconds", None)  # times live in `timings` only, so reports compare equal across runs
    inversion["samples"] = {"total": len(synth)}
    report["inversion"] = inversion
    with Staging() as staging:
        if report_dir is not None:
            with stages("write"):
                staging.folder(report_dir)
                save_class_grid(synth.images01, synth.labels, loaded.spec.num_classes,
                                staging.path(report_dir / "synthetic_samples.png"))
                report["artifacts"] = {"synthetic_samples": "synthetic_samples.png",
                                       **_save_triggers(results, report_dir, staging)}
        report["timings"] = _timings(stages, detect=results)
        if report_dir is not None:
            from .report import write_reports

            write_reports(report, report_dir, staging=staging)
    return ScanResult(report=report, verdict=verdict, report_dir=report_dir)


def check_report_dir(report_dir: Path, overwrite: bool) -> None:
    """Before any compute: ``report_dir`` is (or can be made) a writable folder holding no report unless ``overwrite``."""
    if report_dir.exists() and not report_dir.is_dir():
        raise AuditorError(f"{report_dir} exists and is not a folder")
    check_output_dir(report_dir, "--report-dir")
    if report_dir.is_dir() and (report_dir / "report.json").exists() and not overwrite:
        raise AuditorError(f"{report_dir} already holds a report; pass --overwrite or choose another --report-dir")


def _detect(classifier: Classifier, images01: torch.Tensor, labels: torch.Tensor, config: DetectionConfig, seed: int,
            progress: Progress | None) -> tuple[dict[str, DetectionResult], Verdict]:
    results = run_detectors(classifier, images01, labels, config, seed=seed, progress=progress)
    names = list(classifier.spec.class_names) if classifier.spec.class_names else None
    return results, combine(results, config.verdict, names)


def _detection_section(results: dict[str, DetectionResult], num_classes: int,
                       class_names: tuple[str, ...] | None) -> dict[str, Any]:
    """Every detector's JSON, plus one merged row per class (what the HTML and SARIF show)."""
    rows = []
    for k in range(num_classes):
        row: dict[str, Any] = {"class": k, "name": class_names[k] if class_names and k < len(class_names) else str(k)}
        for name, result in results.items():
            row[f"{name}.index"] = round(float(result.index[k]), 4)
            figures = result.per_class[k]
            for key, value in figures.items():
                if key != "class":
                    row[f"{name}.{key}"] = round(value, 5) if isinstance(value, float) else value
        rows.append(row)
    meanings = {name: DETECTORS[name].meaning for name in results if name in DETECTORS}
    return {"detectors": {name: {**r.to_json(), "meaning": meanings.get(name, "")} for name, r in results.items()},
            "per_class": rows}


def _audit_verdict(original: Verdict, purified: Verdict, verification: Verification) -> dict[str, Any]:
    """The original model's verdict, and the verification of the purified model: the fresh re-scan's
    own verdict (``rescan``) and the combined one (``purified``) that the exit code reads."""
    block = original.to_json()
    block["rescan"] = {k: v for k, v in purified.to_json().items() if k != "thresholds"}
    block["purified"] = verification.verdict
    block["purified_passes"] = verification.passes
    block["verification"] = verification.to_json()
    return block


def _verification_probe(classifier: Classifier, holdout: SynthSet, prior: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic holdout (its intended labels) and the unconditioned prior samples (labelled by
    the original model): samples purification never trains on."""
    if prior is None or len(prior) == 0:
        return holdout.images01, holdout.labels
    prior_labels = classifier.predict(prior).cpu()
    return torch.cat([holdout.images01, prior]), torch.cat([holdout.labels.cpu(), prior_labels])


def _save_triggers(results: dict[str, DetectionResult], report_dir: Path, staging: Staging) -> dict[str, Any]:
    """triggers.png (one column per class: mask, pattern, mask x pattern) and triggers.npz."""
    from .report.images import save_trigger_grid

    nc = results.get("neural_cleanse")
    if nc is None or "mask" not in nc.images:
        return {}
    save_trigger_grid(nc.images["mask"], nc.images["pattern"], staging.path(report_dir / "triggers.png"))
    import numpy as np

    np.savez_compressed(staging.path(report_dir / "triggers.npz"), mask=nc.images["mask"].numpy(),
                        pattern=nc.images["pattern"].numpy())
    return {"triggers": "triggers.png", "triggers_npz": "triggers.npz"}
