"""The Python API: ``audit``, ``scan`` and ``inspect`` as functions, the same code the command line runs.

Each takes a model path and an options object (``auditor.options``: one field per command-line option,
same defaults) and returns a typed result whose ``to_json()`` is the report the command writes
(report.json for ``audit`` and ``scan``, ``inspect --json``'s output for ``inspect``). The functions
never print and never exit; the gate's decision is on the result (``passes``, ``exit_code``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .options import AuditOptions, InspectOptions, ScanOptions

EXIT_OK, EXIT_FINDING, EXIT_ERROR = 0, 1, 2

Progress = Callable[..., None]
"""progress(step, total, message): called as long stages advance (the command line draws a bar)."""
StageLog = Callable[[str], None]
"""Called with one line as each stage starts and ends (the command line prints it on stderr)."""


def _plain(report: dict[str, Any]) -> dict[str, Any]:
    """The report as report.json holds it: plain JSON types (paths as text)."""
    return json.loads(json.dumps(report, default=str))


def _fails(verdict: str | None, fail_on: str) -> bool:
    from .detect import fails

    return verdict is not None and fails(verdict, fail_on)


class _Gated:
    """What a gate reads from a result: the verdict it judges, whether it passes ``fail_on``, the exit code."""

    report: dict[str, Any]
    fail_on: str

    @property
    def gated_verdict(self) -> str | None:
        """The verdict the gate compares with ``fail_on``."""
        raise NotImplementedError

    @property
    def passes(self) -> bool:
        """Whether the gated verdict passes the gate ``fail_on``."""
        return not _fails(self.gated_verdict, self.fail_on)

    @property
    def exit_code(self) -> int:
        """What the command exits with for this model: 0 it passes the gate, 1 it does not."""
        return EXIT_OK if self.passes else EXIT_FINDING

    def to_json(self) -> dict[str, Any]:
        """The report, the same data as the report.json the command writes."""
        return _plain(self.report)


@dataclass
class ScanResult(_Gated):
    """One model's verdict from ``scan``."""

    model: Path  # the model scanned
    report: dict[str, Any]  # the report, as report.json holds it
    report_dir: Path | None  # where the report files were written (None: not written)
    fail_on: str  # the gate the result was judged by

    @property
    def verdict(self) -> str:
        """clean, suspicious or backdoored."""
        return self.report["verdict"]["verdict"]

    @property
    def score(self) -> float:
        """The verdict's score: the largest anomaly index of a voting detector."""
        return float(self.report["verdict"]["score"])

    @property
    def suspected_targets(self) -> list[int]:
        """Classes a backdoor would send inputs into."""
        return list(self.report["verdict"]["suspected_targets"])

    @property
    def gated_verdict(self) -> str | None:
        """A scan's gate reads the model's verdict."""
        return self.verdict


@dataclass
class AuditResult(_Gated):
    """The purified model and the report of ``audit``."""

    model: Path  # the model audited (never modified)
    output: Path  # the purified ONNX file
    report: dict[str, Any]  # the report, as report.json holds it
    report_dir: Path  # the folder of report.json, report.md, report.html, report.sarif, summary.md
    fail_on: str  # the gate the purified model was judged by

    @property
    def verdict(self) -> str | None:
        """The original model's verdict (None when detection was switched off)."""
        return (self.report.get("verdict") or {}).get("verdict")

    @property
    def purified_verdict(self) -> str | None:
        """The purified model's verdict after verification: what the gate reads."""
        return (self.report.get("verdict") or {}).get("purified")

    @property
    def gated_verdict(self) -> str | None:
        """An audit's gate reads the purified model's verdict."""
        return self.purified_verdict


@dataclass
class InspectResult:
    """What ``inspect`` found: the model's spec, operators, parameters and conversion parity."""

    model: Path  # the model inspected
    report: dict[str, Any]  # what ``auditor inspect --json`` prints

    @property
    def parity_ok(self) -> bool:
        """Whether every parity check that ran passed (the converted model reproduces onnxruntime)."""
        return all(self.report[k]["ok"] for k in ("conversion_parity", "write_back_parity") if k in self.report)

    @property
    def exit_code(self) -> int:
        """What ``auditor inspect`` exits with: 0, or 1 when a parity check failed."""
        return EXIT_OK if self.parity_ok else EXIT_FINDING

    def to_json(self) -> dict[str, Any]:
        """The report, the same data as ``auditor inspect --json`` prints."""
        return _plain(self.report)


def load_model(model: str | Path, options: Any = None) -> Any:
    """``converters.load_onnx`` with the options' spec overrides and resource limits."""
    from converters.load import load_onnx

    from .options import limits_from_options, spec_overrides

    options = options if options is not None else InspectOptions()
    return load_onnx(Path(model), spec_overrides=spec_overrides(options) or None, limits=limits_from_options(options))


def inspect(model: str | Path, options: InspectOptions | None = None) -> InspectResult:
    """The model's spec, operators, parameters and (unless ``options.parity`` is off) whether the converted
    model and the written-back model reproduce onnxruntime's outputs."""
    from converters import compare_with_onnxruntime, convert, write_back

    options = options if options is not None else InspectOptions()
    loaded = load_model(model, options)
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
    if options.parity:
        report["conversion_parity"] = compare_with_onnxruntime(converted.module, loaded.model, loaded.spec).to_json()
        written = write_back(converted)
        report["write_back_parity"] = compare_with_onnxruntime(
            converted.module, written, loaded.spec, onnx_batch=loaded.spec.batch
        ).to_json()
    return InspectResult(model=Path(model), report=report)


def scan(model: str | Path, options: ScanOptions | None = None, *, progress: Progress | None = None,
         stage_log: StageLog | None = None) -> ScanResult:
    """A backdoor verdict for ``model`` from the model alone; the report files go to ``options.report_dir``
    when it is set. Sets torch's CPU threads to ``options.threads`` (the figures depend on it)."""
    import torch

    from . import pipeline

    options = options if options is not None else ScanOptions()
    config = options.config()  # bad options fail here, before any work
    torch.set_num_threads(options.threads)
    result = pipeline.scan(Path(model), options.report_dir, config, progress=progress, stage_log=stage_log)
    return ScanResult(model=Path(model), report=result.report, report_dir=result.report_dir, fail_on=options.fail_on)


def audit(model: str | Path | None = None, options: AuditOptions | None = None, *, progress: Progress | None = None,
          stage_log: StageLog | None = None, evaluator: Callable[[Path], dict] | None = None) -> AuditResult:
    """Purify ``model`` with no clean data and verify the result: convert, invert, detect, purify, re-scan,
    write back, report.

    With no model, audits the bundled sample (``auditor.samples``) and, unless the options name other data,
    measures ACC/ASR/RA before and after on the bundled evaluation subset. ``evaluator`` (an ONNX path in, a
    dict of figures out) replaces the measurement that ``eval_data`` / ``attack`` describe.
    """
    from . import pipeline

    options = options if options is not None else AuditOptions()
    eval_data, attack_from = options.eval_data, options.attack_from
    if model is None:
        from .samples import default_sample

        model, subset, manifest = default_sample()
        if not (eval_data or attack_from or options.attack):
            eval_data, attack_from = subset, str(manifest)
    model_path = Path(model)
    report_dir = Path(options.report_dir) if options.report_dir else Path(f"audit-{model_path.stem}")
    output = Path(options.output) if options.output else report_dir / f"{model_path.stem}.purified.onnx"
    config = options.config()  # bad options fail here, before any work
    if evaluator is None and (eval_data or attack_from or options.attack):
        evaluator = _evaluator(model_path, options, eval_data, attack_from)
    result = pipeline.audit(model_path, output, report_dir, config, evaluator=evaluator, progress=progress,
                            stage_log=stage_log)
    return AuditResult(model=model_path, output=result.output, report=result.report, report_dir=result.report_dir,
                       fail_on=options.fail_on)


def _evaluator(model: Path, options: AuditOptions, eval_data: str | Path | None,
               attack_from: str | None) -> Callable[[Path], dict]:
    """The measurement the options describe: ACC/ASR/RA on ``eval_data`` under the named attack."""
    from .errors import AuditorError
    from .measure import make_evaluator, resolve_attack

    spec = load_model(model, options).spec
    attack = resolve_attack(model, spec, attack_from, options.attack, options.target)
    if eval_data is None:
        raise AuditorError("measuring an attack needs eval_data (--eval-data)")
    return make_evaluator(Path(eval_data), spec, attack)
