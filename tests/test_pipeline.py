"""The end-to-end audit on a tiny model: provenance metadata, the report, node-for-node output,
and no output file left behind when any stage fails."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from auditor import __version__
from auditor.cli import main
from auditor.detect import DetectionConfig
from auditor.inversion import InversionConfig
from auditor.inversion.stability import StabilityConfig
from auditor.pipeline import AuditOptions, audit, report_hash
from auditor.purify.guard import GuardConfig
from converters import sha256_file
from model_matrix import build, export

FAST_INVERSION = InversionConfig(per_class=4, steps=3, batch_per_class=2,
                                 eval_stability=StabilityConfig(input_draws=1, param_draws=1))
# Every detector at a few steps, and few prior samples: these tests are about the pipeline's plumbing,
# not about the detectors' strength (tests/test_detect.py measures that).
FAST_DETECTION = DetectionConfig(settings={"neural_cleanse": {"steps": 4}, "reach": {"steps": 3},
                                           "patch": {"steps": 10}, "weight_perturbation": {"radii": (0.05,)}})
FAST_PURIFIER = {"rounds": 1, "iterations": 20, "search_steps": 20}
# I-BAU's rounds without the recipe's other steps (method "ibau"), for tests about the pipeline around the
# purifier (tests/test_purify.py covers each step)
ROUNDS_ONLY = {"rounds": 1}
FAST = AuditOptions(inversion=FAST_INVERSION, rescan_inversion=FAST_INVERSION, purifier_config=FAST_PURIFIER,
                    detection=FAST_DETECTION, anchor_samples=200, guard_prior_samples=100)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(build("resnet_block"), "legacy17", tmp_path_factory.mktemp("pipe") / "suspect.onnx", None)


def test_audit_writes_model_metadata_and_report(model: Path, tmp_path: Path) -> None:
    before = model.read_bytes()
    out, reports = tmp_path / "clean.onnx", tmp_path / "report"
    result = audit(model, out, reports, FAST)
    assert model.read_bytes() == before
    written = onnx.load(str(out))
    original = onnx.load(str(model))
    assert [n.op_type for n in written.graph.node] == [n.op_type for n in original.graph.node]
    meta = {p.key: p.value for p in written.metadata_props}
    assert meta["auditor.version"] == __version__
    assert meta["auditor.input_sha256"] == sha256_file(model)
    assert meta["auditor.method"] == "recipe" and meta["auditor.seed"] == "0"
    report = json.loads((reports / "report.json").read_text())
    assert meta["auditor.report_sha256"] == report_hash(report)
    assert report["output"]["sha256"] == sha256_file(out)
    assert report["verification"]["write_back_parity"]["max_abs"] <= 1e-4
    assert report["verification"]["node_for_node"] is True
    assert report["inversion"]["samples"]["total"] == 40
    timings = report["timings"]
    assert {"convert", "invert", "purify", "write", "total"} <= set(timings)
    # every detector's wall time, within the stage that ran it (detectors may run side by side, so not summed)
    assert {f"detect.{name}" for name in FAST.detection.detectors} <= set(timings)
    assert {f"verify.{name}" for name in report["rescan"]["detectors"]} <= set(timings)
    for key, seconds in timings.items():
        if "." in key:
            assert 0 < seconds <= timings[key.split(".")[0]] + 0.01, key
    assert timings["total"] == pytest.approx(sum(v for k, v in timings.items() if "." not in k and k != "total"),
                                             abs=0.01)
    assert (reports / "report.md").read_text().startswith("# auditor audit report")
    assert (reports / "synthetic_samples.png").stat().st_size > 0
    # the re-scan runs only what the verdict reads; the original's scan keeps every reported detector
    assert set(report["detection"]["detectors"]) == set(FAST.detection.detectors)
    assert set(report["rescan"]["detectors"]) == set(FAST.detection.verdict.voters) | {"patch"}
    assert result.report["purification"]["status"] in ("accepted", "accepted_after_backoff", "rejected",
                                                       "accepted_mildest_below_threshold")
    # the report says which prior threshold the guard applied, and why (the detection's verdict before purification;
    # the report's verdict may since have been raised by the purifier's findings)
    verdict = report["verdict"]["verdict"]
    basis = report["purification"]["threshold_basis"]
    applied = report["purification"]["guard"]["min_prior_agreement"]
    if "the detection found a backdoor" in basis:
        assert verdict == "backdoored" and applied == GuardConfig().min_prior_agreement_backdoored
    else:
        assert "no backdoor found" in basis and applied == GuardConfig().min_prior_agreement_unflagged


@pytest.mark.parametrize("stage", ["convert", "invert", "purify", "export", "report"])
def test_a_failure_at_any_stage_leaves_no_output(stage: str, model: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import auditor.pipeline as pipeline
    import auditor.report as report_module

    def boom(*_args, **_kwargs):
        raise RuntimeError(f"injected failure in {stage}")

    target = {"convert": (pipeline, "convert"), "invert": (pipeline, "invert"), "purify": (pipeline, "guarded_purify"),
              "export": (pipeline, "save_onnx"), "report": (report_module, "write_reports")}[stage]
    monkeypatch.setattr(*target, boom)
    out = tmp_path / "clean.onnx"
    # the quickest audit that reaches every stage: data-free CLP, no detection or verification (they write nothing)
    with pytest.raises(RuntimeError, match="injected"):
        audit(model, out, tmp_path / "report", replace(FAST, rescan=False, method="clp", purifier_config={}))
    assert not out.exists()
    assert not (tmp_path / "report" / "report.json").exists()


def test_existing_output_is_never_overwritten_without_flag(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean.onnx"
    out.write_bytes(b"keep me")
    result = CliRunner().invoke(main, ["audit", str(model), "-o", str(out), "--report-dir", str(tmp_path / "r"),
                                       "--per-class", "2", "--steps", "1"])
    assert result.exit_code == 2 and "exists" in result.output
    assert out.read_bytes() == b"keep me"


def test_output_may_not_be_the_input(model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["audit", str(model), "-o", str(model), "--report-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "input" in result.output


@pytest.mark.parametrize("value", ["1.0", "0,0.5", "half", ""])
def test_guard_interpolation_option_rejects_bad_shares(model: Path, tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(main, ["audit", str(model), "-o", str(tmp_path / "out.onnx"), "--report-dir",
                                       str(tmp_path / "r"), "--guard-interpolation", value])
    assert result.exit_code == 2 and "--guard-interpolation" in result.output
    assert not (tmp_path / "out.onnx").exists()


def test_guard_interpolation_option_parses_shares_and_none() -> None:
    from auditor.commands.audit import _parse_interpolation

    assert _parse_interpolation("none") == () and _parse_interpolation("0.9, 0.6") == (0.9, 0.6)


def test_purify_cli_with_saved_synthetic_samples(model: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    synth = tmp_path / "synth.npz"
    result = runner.invoke(main, ["invert", str(model), "-o", str(synth), "--per-class", "3", "--steps", "2",
                                  "--grid", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grid.png").exists() and synth.with_suffix(".json").exists()
    # The command with saved samples, once; every purifier through the library it calls, with the tests'
    # small settings (the test is about taking saved samples, not about the purification's strength).
    out = tmp_path / "cli.onnx"
    result = runner.invoke(main, ["purify", str(model), "--synthetic", str(synth), "--method", "clp", "-o", str(out),
                                  "--guard-interpolation", "none", "--per-class", "3", "--steps", "2",
                                  "--purifier-option", "u=3"])
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["auditor.method"] == "clp"
    assert json.loads((tmp_path / "cli-report" / "report.json").read_text())["config"]["synthetic"] == str(synth)
    for method, settings in {"ibau": ROUNDS_ONLY, "patch,ibau": {**ROUNDS_ONLY, "search_steps": 5},
                             "finetune": {"epochs": 1}}.items():
        out = tmp_path / f"{method.replace(',', '-')}.onnx"
        audit(model, out, tmp_path / f"{method.replace(',', '-')}-report",
              replace(FAST, method=method, purifier_config=settings, synthetic=synth, rescan=False))
        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert meta["auditor.method"] == method


def test_prior_samples_for_the_guard_probe_and_the_anchors(model: Path) -> None:
    """Unconditioned generator samples in the model's input space: seeded, and none for the pixel ablation."""
    import torch

    from auditor.model import Classifier
    from auditor.pipeline import _prior_samples

    classifier = Classifier.from_onnx(model)
    a = _prior_samples(classifier, FAST, 12, seed=7)
    assert a.shape == (12, 3, 16, 16) and 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert torch.equal(a, _prior_samples(classifier, FAST, 12, seed=7))
    assert not torch.equal(a, _prior_samples(classifier, FAST, 12, seed=18))  # the anchors are another draw
    assert _prior_samples(classifier, FAST, 0, seed=7) is None
    assert _prior_samples(classifier, replace(FAST, pixels=True), 12, seed=7) is None


def test_the_audit_verdict_reads_what_the_purifier_found_on_the_original() -> None:
    """A patch trigger the purification's first attempt unlearned makes the original's verdict `backdoored`."""
    from auditor.detect import VerdictConfig, Verdict
    from auditor.detect.verdict import raised_by_findings

    clean = Verdict("clean", 0.4, [], ["no class stands out (largest anomaly index 0.40 <= 1.5)"], VerdictConfig())
    raised = raised_by_findings(clean, ["patch trigger: a 16-pixel patch flips 0.90 of the samples"])
    assert raised.verdict == "backdoored" and raised.score == clean.score and raised.suspected_targets == []
    assert raised.reasons == ["purification found patch trigger: a 16-pixel patch flips 0.90 of the samples"]
    assert clean.verdict == "clean"  # the detection's own verdict object is left as it was
    assert raised_by_findings(clean, []) is clean
    suspicious = Verdict("suspicious", 1.6, [9], ["class 9: ..."], VerdictConfig())
    assert raised_by_findings(suspicious, ["trigger channels"]).reasons == ["class 9: ...",
                                                                         "purification found trigger channels"]
    backdoored = Verdict("backdoored", 4.0, [0], ["class 0: ..."], VerdictConfig())
    assert raised_by_findings(backdoored, ["trigger channels"]) is backdoored


def test_a_finding_raises_the_verdict_but_not_the_guard_budget_it_was_given(model: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Detection says clean, the purifier finds a patch trigger: the report's verdict is backdoored, while the
    guard's stated basis (and the threshold it started from) stay those of the clean verdict."""
    import auditor.pipeline as pipeline
    from auditor.detect import Verdict, VerdictConfig

    monkeypatch.setattr(pipeline, "combine", lambda *a, **k: Verdict("clean", 0.1, [], ["no class stands out"],
                                                                     VerdictConfig()))
    real_guard = pipeline.guarded_purify

    def finding_guard(*args, **kwargs):
        report = real_guard(*args, **kwargs)
        report.attempts[0].result.findings.append("patch trigger: injected by the test")
        return report

    monkeypatch.setattr(pipeline, "guarded_purify", finding_guard)
    report = audit(model, tmp_path / "out.onnx", tmp_path / "report", replace(FAST, method="ibau", purifier_config=ROUNDS_ONLY)).report
    assert report["verdict"]["verdict"] == "backdoored"
    assert report["verdict"]["reasons"] == ["purification found patch trigger: injected by the test"]
    assert report["verdict"]["rescan"]["verdict"] == "clean"  # the re-scan, forced clean too, decides the exit code
    assert "verdict clean" in report["purification"]["threshold_basis"]
    assert report["purification"]["guard"]["min_prior_agreement"] == GuardConfig().min_prior_agreement_unflagged


def test_each_search_runs_once_on_the_original_and_once_on_the_purified_model(model: Path, tmp_path: Path,
                                                                               monkeypatch) -> None:
    """Search once, use many times: every detector runs once on the original model's samples and, where the
    verdict reads it, once in the fresh look at the purified model; the leads the recipe asks for are found
    once, however many attempts the guard makes."""
    import auditor.detect.leads as leads_module
    from auditor.detect.base import Detector
    from auditor.purify import get_purifier

    calls: list[str] = []
    real_detect, real_patch = Detector.detect, leads_module.untargeted_patch

    def counted_detect(self, *args, **kwargs):
        calls.append(self.name)
        return real_detect(self, *args, **kwargs)

    monkeypatch.setattr(Detector, "detect", counted_detect)
    monkeypatch.setattr(leads_module, "untargeted_patch", lambda *a, **k: calls.append("patch lead") or real_patch(*a, **k))
    options = replace(FAST, guard=replace(GuardConfig(), min_agreement=1.01, max_backoffs=1))  # forces back-offs
    audit(model, tmp_path / "out.onnx", tmp_path / "report", options)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(report["purification"]["attempts"]) >= 2

    requests = get_purifier(options.method, **options.purifier_config).lead_requests()
    expected = {name: 1 for name in FAST_DETECTION.detectors}
    for name in FAST_DETECTION.deciding_only().detectors:
        expected[name] += 1
    expected["sine_reach"] += int(requests.signal)
    expected["stimulation"] += int(requests.channels is not None)
    expected["patch lead"] = int(requests.patch is not None)
    assert {name: calls.count(name) for name in expected} == expected, calls
    assert set(calls) <= set(expected)
