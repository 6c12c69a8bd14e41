"""Verification of a purified model: triggers found on the original are re-applied to the purified
model, and the verdict every report format leads with follows them."""

from __future__ import annotations

import json

import pytest
import torch

from auditor.detect import DetectionResult, Reach, combine
from auditor.model import Classifier
from auditor.pipeline import _audit_verdict
from auditor.report.html import render_html
from auditor.report.markdown import render_markdown
from auditor.report.sarif import render_sarif
from auditor.report.summary import render_summary
from auditor.verify import (CarriedTrigger, carried_triggers, residuals_before, verify,
                            without_single_target_patch)
from converters import ModelSpec
from test_detect import K, SIDE, TARGET, Planted, _samples


@pytest.fixture(scope="module")
def found():
    """The original (backdoored) toy, its samples, and what reach found on it."""
    torch.set_num_threads(1)
    original = Classifier(Planted(backdoor=True), ModelSpec("input", "logits", 3, SIDE, SIDE, K))
    x, y = _samples(original)
    results = {"reach": Reach(radius=1.5, steps=20, per_class=12).detect(original, x, y, seed=0)}
    verdict = combine(results)
    assert verdict.verdict == "backdoored" and verdict.suspected_targets[0] == TARGET
    triggers = carried_triggers(results, verdict)
    return original, x, y, results, verdict, triggers, residuals_before(original, triggers, x, y)


def test_a_purification_that_leaves_the_trigger_working_fails(found) -> None:
    original, x, y, results, verdict, triggers, before = found
    assert [t.target for t in triggers] == [TARGET] * len(triggers) and before[0] >= 0.5
    clean_rescan = combine({"reach": results["reach"]})
    clean_rescan.verdict = "clean"  # even a clean re-scan cannot save a model whose found trigger still works
    outcome = verify(original, triggers, before, x, y, clean_rescan, None, None)
    assert not outcome.passes and outcome.verdict == "backdoored"
    assert outcome.residuals[0].still_works and "still sends" in outcome.decided_by[0]


def test_a_purification_that_removes_the_trigger_passes(found) -> None:
    original, x, y, results, verdict, triggers, before = found
    purified = Classifier(Planted(backdoor=False), original.spec)  # the same weights, the backdoor gone
    rescan = combine({"reach": results["reach"]})
    rescan.verdict = "clean"  # the fresh look's own detectors are tested in test_detect; here the residuals decide
    outcome = verify(purified, triggers, before, x, y, rescan, results["reach"], None)
    print("residuals", [r.to_json() for r in outcome.residuals])
    assert outcome.passes and outcome.verdict == "clean"
    assert all(not r.still_works and r.after < r.before for r in outcome.residuals)


def test_a_suspicious_rescan_is_not_a_pass(found) -> None:
    original, x, y, results, verdict, triggers, before = found
    purified = Classifier(Planted(backdoor=False), original.spec)
    suspicious = combine({"reach": results["reach"]})
    suspicious.verdict = "suspicious"
    outcome = verify(purified, triggers, before, x, y, suspicious, None, None)
    assert not outcome.passes and outcome.verdict == "suspicious"


def _corner_patch(images: torch.Tensor) -> torch.Tensor:
    """The toy's planted trigger, as a carried patch would apply it."""
    out = images.clone()
    out[:, :, -2:, -2:] = 1.0
    return out


@pytest.mark.parametrize("target, fails", [(TARGET, False), (None, True)])
def test_a_working_patch_into_one_class_does_not_decide_alone_but_an_all_to_all_one_does(
        found, target: int | None, fails: bool) -> None:
    """On purified models whose backdoor was gone, a searched patch still sent most samples into the former
    target; the targeted triggers carried beside it decide. A patch with no single target has no such
    companion and still fails the model alone."""
    original, x, y, results, verdict, triggers, before = found
    purified = Classifier(Planted(backdoor=True), original.spec)  # the patch still works on it
    patch = CarriedTrigger("patch", target, _corner_patch)
    clean = combine({"reach": results["reach"]})
    clean.verdict = "clean"
    outcome = verify(purified, [patch], residuals_before(original, [patch], x, y), x, y, clean, None, None)
    (residual,) = outcome.residuals
    assert residual.still_works and residual.decides is fails and outcome.passes is not fails
    if not fails:
        assert "does not decide alone" in " ".join(outcome.decided_by)
        assert outcome.decided_by[0].startswith("no carried trigger that decides alone still works")
    assert residual.to_json()["decides"] is fails


def _patch_result(flip_rate: float, shares: list[float]) -> DetectionResult:
    per_class = [{"class": k, "share_of_flips": share} for k, share in enumerate(shares)]
    return DetectionResult("patch", {"pixels": 16}, per_class, [0.0] * len(shares), {"flip_rate": flip_rate})


@pytest.mark.parametrize("shares, set_aside", [([0.0, 0.9, 0.1, 0.0], True), ([0.3, 0.3, 0.2, 0.2], False)])
def test_the_fresh_rescans_patch_rule_into_one_class_is_set_aside(shares: list[float], set_aside: bool) -> None:
    results = {"patch": _patch_result(0.85, shares)}
    rescan = combine(results)
    assert rescan.verdict == "backdoored"  # the patch rule fired
    deciding, notes = without_single_target_patch(results, rescan)
    assert (deciding.verdict == "clean") is set_aside and bool(notes) is set_aside
    quiet = {"patch": _patch_result(0.5, shares)}  # below the rule's threshold: nothing to set aside
    assert without_single_target_patch(quiet, combine(quiet)) == (combine(quiet), ())


def _report(verdict_block: dict) -> dict:
    return {"command": "audit", "input": {"path": "m.onnx", "sha256": "0" * 64}, "tool": {"version": "t"},
            "spec": {"num_classes": K, "class_names": None}, "verdict": verdict_block, "timings": {"total": 1.0},
            "output": {"path": "m.purified.onnx", "sha256": "1" * 64}, "purification": {"status": "accepted"},
            "conversion": {"parity": {"ok": True, "max_abs": 0.0}}}


@pytest.mark.parametrize("removed", [False, True])
def test_the_report_formats_agree_on_the_purified_model(found, removed: bool, tmp_path) -> None:
    original, x, y, results, verdict, triggers, before = found
    purified = Classifier(Planted(backdoor=not removed), original.spec)
    rescan = combine({"reach": results["reach"]})
    rescan.verdict = "clean"
    outcome = verify(purified, triggers, before, x, y, rescan, None, None)
    report = _report(_audit_verdict(verdict, rescan, outcome))
    word = "passes" if removed else "FAILS"
    markdown, summary, html = render_markdown(report), render_summary([report]), render_html(report, tmp_path)
    assert markdown.splitlines()[2].startswith(f"**Purified model: {outcome.verdict} — {word} verification")
    assert f"{outcome.verdict} ({word})" in summary and summary.startswith("### auditor: ")
    assert ("### auditor: ✅ clean" in summary) is removed
    assert f"purified model: {outcome.verdict} — {word} verification" in html
    assert html.index('id="purified"') < html.index('id="verdict"')
    rules = [r["ruleId"] for r in render_sarif([report])["runs"][0]["results"]]
    assert ("AUD002" in rules) is not removed
    assert json.loads(json.dumps(report))["verdict"]["purified_passes"] is removed


def test_a_classifier_starts_in_inference_mode_so_unfolded_batchnorm_statistics_never_move() -> None:
    """A stage that saves the mode, works in eval mode and restores the mode must not leave the model
    training: a held-apart PreAct-ResNet (BatchNorm that no convolution absorbs) was written back with
    drifted running statistics although the guard had kept the original weights."""
    import torch
    from torch import nn

    from auditor.model import Classifier
    from converters.spec import ModelSpec

    network = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    classifier = Classifier(network, ModelSpec("input", "logits", 3, 8, 8, 4))
    assert not classifier.training and not network.training
    before = network[0].running_mean.clone()
    was_training = classifier.training
    classifier.eval()
    classifier.train(was_training)  # what every stage does on its way out
    classifier(torch.rand(5, 3, 8, 8) * 3)
    assert torch.equal(network[0].running_mean, before)
