"""The options of ``audit``, ``scan`` and ``inspect``: one dataclass per command, shared by the Python API
and the command line.

Each field is named after the command-line option it mirrors (``--per-class`` is ``per_class``) and holds
its default, so the two cannot drift apart: the click options read their defaults from these classes.
``None`` means "the engine's default" (the figure in the field's comment), as an option left out does on
the command line. ``config()`` turns the options into the engine's full configuration
(``auditor.pipeline.AuditOptions`` / ``ScanOptions``), which the library accepts as well.

This module imports nothing heavy, so that the command line can build its options from it quickly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

FAIL_ON_CHOICES = ("backdoored", "suspicious", "never")
DEVICES = ("auto", "cpu", "cuda")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """A bad choice fails when the options are made, as click's own check does on the command line."""
    if value not in choices:
        raise _error(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``: where the command line takes its defaults from."""
    spec = cls.__dataclass_fields__[name]  # type: ignore[attr-defined]
    if spec.default is not MISSING:
        return spec.default
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


@dataclass(kw_only=True)
class ModelOptions:
    """How to read the model: overrides of what the file says, and bounds on what a hostile file can make
    the tool allocate."""

    input_range: tuple[float, float] | None = None  # value range of the raw input, e.g. (0, 255) (default: metadata, else 0..1)
    mean: tuple[float, ...] | None = None  # normalization mean the caller applies
    std: tuple[float, ...] | None = None  # normalization std the caller applies
    layout: str | None = None  # "NCHW" or "NHWC" (default: from the input's shape)
    class_names: str | Sequence[str] | None = None  # a list, or "a,b,..." / a JSON list as on the command line
    max_model_mb: float | None = None  # refuse a larger model file plus external data (default 2048)
    max_tensor_elements: int | None = None  # refuse a model declaring a larger tensor
    max_parameters: int | None = None  # refuse a model with more parameters
    max_nodes: int | None = None  # refuse a graph with more nodes
    max_graph_depth: int | None = None  # refuse a graph with a longer chain of nodes


@dataclass(kw_only=True)
class DetectionOptions:
    """Thresholds and effort of detection, shared by ``scan`` and ``audit``."""

    threshold: float | None = None  # a voting detector's anomaly index that marks a backdoor target (default 2)
    suspicious_threshold: float | None = None  # anomaly index that marks a class suspicious (default 1.5)
    nc_steps: int | None = None  # Neural Cleanse's trigger reverse-engineering steps (default 150)
    patch_detector: bool = True  # search the small patch that flips the most samples
    feature_reach: bool = False  # also report reach in a hidden layer's features (does not vote)
    detectors: tuple[str, ...] = ()  # further registered detectors to run and report
    voters: tuple[str, ...] = ()  # detectors whose anomaly index votes beside reach
    detector_workers: int | None = None  # detectors run side by side in this many workers (default 2)


@dataclass(kw_only=True)
class ScanOptions(DetectionOptions, ModelOptions):
    """``auditor scan``: a verdict from the model alone, nothing purified."""

    report_dir: str | Path | None = None  # write report.json/.md/.html/.sarif and summary.md here
    fail_on: str = "backdoored"  # the gate: a verdict at least this bad fails (backdoored, suspicious, never)
    seed: int = 0  # seeds inversion and detection: the same seed gives the same report
    device: str = "auto"  # auto, cpu or cuda
    per_class: int | None = None  # synthetic samples per class (default 20)
    steps: int | None = None  # most inversion steps per particle (default 8)
    pixels: bool = False  # ablation: invert pixels directly, no generator
    generator: str | None = None  # generator: registry name or your own .onnx / TorchScript file
    synthetic: str | Path | None = None  # samples from `auditor invert` instead of inverting
    threads: int = 1  # CPU threads for torch; one thread gives the same report on any machine
    overwrite: bool = False  # replace an existing report

    def __post_init__(self) -> None:
        _check_choice("fail_on", self.fail_on, FAIL_ON_CHOICES)
        _check_choice("device", self.device, DEVICES)

    def config(self) -> Any:
        """The engine's configuration (``auditor.pipeline.ScanOptions``)."""
        from auditor.pipeline import ScanOptions as ScanConfig
        from auditor.pipeline import scan_inversion

        overrides = {k: v for k, v in (("per_class", self.per_class), ("particle_steps", self.steps)) if v is not None}
        inversion = dataclasses.replace(scan_inversion(), seed=self.seed, **overrides)
        detection = detection_config(self)
        detection.threads = self.threads
        return ScanConfig(seed=self.seed, device=self.device, inversion=inversion, pixels=self.pixels,
                          generator=self.generator, detection=detection, spec_overrides=spec_overrides(self),
                          limits=limits_from_options(self), overwrite=self.overwrite,
                          synthetic=Path(self.synthetic) if self.synthetic else None)


@dataclass(kw_only=True)
class InversionOptions:
    """Model inversion, shared by ``invert`` and ``audit``."""

    per_class: int | None = None  # synthetic samples kept per class (default 250)
    inversion: str | None = None  # "particles" (default) or "gaussian" (ablation)
    steps: int | None = None  # most optimization steps per particle (default 8; gaussian: 200)
    no_stability: bool = False  # ablation: plain generative inversion, no bi-level terms
    pixels: bool = False  # ablation: optimize pixels directly, no generator
    generator: str | None = None  # generator: registry name or your own .onnx / TorchScript file
    rho: float | None = None  # inner worst-case parameter radius (relative)
    eps: float | None = None  # inner worst-case input radius (L-inf, 0..1 scale)
    min_stability: float | None = None  # drop samples whose stability index is below this


@dataclass(kw_only=True)
class AuditOptions(InversionOptions, DetectionOptions, ModelOptions):
    """``auditor audit``: scan, purify without clean data, verify the purified model, report."""

    output: str | Path | None = None  # the purified ONNX file (default: <report dir>/<model>.purified.onnx)
    report_dir: str | Path | None = None  # folder of the report (default: audit-<model name>)
    eval_data: str | Path | None = None  # real labelled data to measure ACC/ASR/RA on; never used to purify
    attack_from: str | None = None  # attack to measure, from a zoo manifest: MANIFEST[:NAME]
    attack: str | None = None  # attack to measure, by name
    target: int | None = None  # target class of ``attack``
    fail_on: str = "suspicious"  # the gate on the purified model: anything not verified clean fails
    method: str = "recipe"  # purifier: recipe (the default steps), finetune, clp, anp, or steps joined by commas
    purifier_options: dict[str, Any] = field(default_factory=dict)  # purifier settings, e.g. {"rounds": 3}
    min_agreement: float | None = None  # guard: holdout agreement with the original needed (default 0.9)
    guard_interpolation: str | Sequence[float] | None = None  # guard: shares of a failed attempt to try ("none": rerun only)
    seed: int = 0  # seeds everything: the same seed gives the same model and report
    device: str = "auto"  # auto, cpu or cuda
    overwrite: bool = False  # replace an existing output model and report

    def __post_init__(self) -> None:
        _check_choice("fail_on", self.fail_on, FAIL_ON_CHOICES)
        _check_choice("device", self.device, DEVICES)

    def config(self, **extra: Any) -> Any:
        """The engine's configuration (``auditor.pipeline.AuditOptions``); ``extra`` sets its other fields."""
        from auditor.pipeline import AuditOptions as AuditConfig
        from auditor.purify.guard import GuardConfig

        guard = GuardConfig()
        if self.min_agreement is not None:
            guard = dataclasses.replace(guard, min_agreement=self.min_agreement)
        if self.guard_interpolation is not None:
            guard = dataclasses.replace(guard, interpolation=parse_interpolation(self.guard_interpolation))
        return AuditConfig(
            method=self.method, seed=self.seed, device=self.device, inversion=inversion_config(self, self.seed),
            pixels=self.pixels, generator=self.generator, purifier_config=dict(self.purifier_options), guard=guard,
            spec_overrides=spec_overrides(self), limits=limits_from_options(self), overwrite=self.overwrite,
            detection=detection_config(self), **extra,
        )


@dataclass(kw_only=True)
class InspectOptions(ModelOptions):
    """``auditor inspect``: what the model is and whether it converts faithfully."""

    parity: bool = True  # compare the conversion and the written-back model with onnxruntime


# -- from options to the engine's configurations ---------------------------------------------------------------
# Each takes the options object or a mapping of the same names (the command line's parameters).


def _get(options: Any, name: str, default: Any = None) -> Any:
    if isinstance(options, Mapping):
        return options.get(name, default)
    return getattr(options, name, default)


def _error(message: str) -> Exception:
    from auditor.errors import AuditorError

    return AuditorError(message)


def inversion_config(options: Any, seed: int) -> Any:
    """The ``InversionConfig`` for ``audit`` / ``invert``: the defaults with the options given."""
    from auditor.inversion.smi import InversionConfig, with_overrides

    method = _get(options, "inversion") or InversionConfig().method
    steps = _get(options, "steps")
    return with_overrides(
        InversionConfig(), per_class=_get(options, "per_class"), method=method,
        particle_steps=steps if method == "particles" else None, steps=steps if method == "gaussian" else None,
        stability=False if _get(options, "no_stability") else None, rho=_get(options, "rho"),
        eps=_get(options, "eps"), min_stability=_get(options, "min_stability"), seed=seed,
    )


def detection_config(options: Any) -> Any:
    """The ``DetectionConfig`` for ``scan`` / ``audit``: the default detectors, the ones asked for, the thresholds."""
    from auditor.detect import DetectionConfig, VerdictConfig, list_detectors

    verdict = VerdictConfig()
    if _get(options, "threshold") is not None:
        verdict = dataclasses.replace(verdict, threshold=_get(options, "threshold"))
    if _get(options, "suspicious_threshold") is not None:
        verdict = dataclasses.replace(verdict, suspicious_threshold=_get(options, "suspicious_threshold"))
    nc_steps = _get(options, "nc_steps")
    settings = {"neural_cleanse": {"steps": nc_steps}} if nc_steps else {}
    voters = tuple(_get(options, "voters") or ())
    extra = (("feature_reach",) if _get(options, "feature_reach") else ()) + tuple(_get(options, "detectors") or ()) + voters
    unknown = sorted(set(extra) - set(list_detectors()))
    if unknown:
        raise _error(f"unknown detector {', '.join(unknown)} (--detector/--voter); known: {', '.join(list_detectors())}")
    default = tuple(d for d in DetectionConfig().detectors if d != "patch" or _get(options, "patch_detector", True))
    detectors = tuple(dict.fromkeys(default + extra))
    if voters:
        verdict = dataclasses.replace(verdict, voters=tuple(dict.fromkeys(verdict.voters + voters)))
    workers = _get(options, "detector_workers")
    return DetectionConfig(detectors=detectors, settings=settings, verdict=verdict,
                           **({"workers": workers} if workers else {}))


def spec_overrides(options: Any) -> dict[str, Any]:
    """The ``ModelSpec`` fields the options set."""
    from converters.spec import parse_name_list

    overrides: dict[str, Any] = {}
    value_range = _get(options, "input_range")
    if value_range is not None:
        if len(value_range) != 2:
            raise _error("--input-range takes two numbers, LO,HI")
        overrides["value_range"] = tuple(value_range)
    for key in ("mean", "std", "layout"):
        if _get(options, key) is not None:
            overrides[key] = tuple(_get(options, key)) if key != "layout" else _get(options, key)
    names = _get(options, "class_names")
    if names:
        overrides["class_names"] = parse_name_list(names) if isinstance(names, str) else tuple(str(n) for n in names)
    return overrides


def limits_from_options(options: Any) -> Any:
    """The resource limits (``converters.Limits``): the defaults with the options given."""
    from converters.limits import MB, Limits

    limits = Limits()
    if _get(options, "max_model_mb") is not None:
        limits = dataclasses.replace(limits, max_bytes=max(1, int(_get(options, "max_model_mb") * MB)))
    for name in ("max_tensor_elements", "max_parameters", "max_nodes"):
        if _get(options, name) is not None:
            limits = dataclasses.replace(limits, **{name: int(_get(options, name))})
    if _get(options, "max_graph_depth") is not None:
        limits = dataclasses.replace(limits, max_depth=int(_get(options, "max_graph_depth")))
    return limits


def parse_purifier_options(pairs: Sequence[str]) -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` strings as purifier settings; a value is read as JSON where it parses (3, 0.5,
    null, [1, 2]) and kept as text otherwise."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise _error(f"--purifier-option: expected KEY=VALUE, got {pair!r}")
        try:
            parsed[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key.strip()] = value
    return parsed


def parse_interpolation(value: str | Sequence[float]) -> tuple[float, ...]:
    """The guard's interpolation shares: ``"0.9,0.7"`` or a sequence, each strictly between 0 and 1;
    ``"none"`` (or an empty sequence) reruns only."""
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return ()
        try:
            shares = tuple(float(part) for part in value.split(",") if part.strip())
        except ValueError:
            shares = ()
        if not shares:
            raise _error(f"--guard-interpolation: expected shares strictly between 0 and 1 (e.g. 0.9,0.7) or 'none', "
                         f"got {value!r}")
    else:
        shares = tuple(float(share) for share in value)
    if not all(0 < share < 1 for share in shares):
        raise _error(f"--guard-interpolation: expected shares strictly between 0 and 1, got {value!r}")
    return shares
