"""``auditor scan`` / ``auditor audit`` as CI gates: exit codes for each verdict and for bad input,
several files, --json, and determinism under a seed. Detector results are forced where a test is
about the gate rather than the detector (tests/test_detect.py covers the detectors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import auditor.pipeline as pipeline
from auditor.cli import main
from auditor.inversion import SynthSet
from auditor.report import validate_report
from model_matrix import CLASSES, IMAGE, build, export, forced

FAST = ["--nc-steps", "4", "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny ONNX classifier and a saved set of 'synthetic' samples for it (skips inversion)."""
    folder = tmp_path_factory.mktemp("scan")
    torch.manual_seed(0)
    model = export(build("resnet_block"), "legacy17", folder / "suspect.onnx", None)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(CLASSES * 4, *IMAGE, generator=g)
    labels = torch.arange(CLASSES).repeat_interleave(4)
    synth = SynthSet(images, labels, summary={"method": "smi", "kept": {}, "fit": {}})
    return model, synth.save(folder / "synth.npz")


def force(monkeypatch: pytest.MonkeyPatch, *verdicts: str, synth: Path | None = None) -> None:
    """The n-th detection run of the test returns the n-th verdict (the last one repeats); with
    ``synth``, inversion is replaced by those saved samples (for several models at once, or audit)."""
    calls = iter(list(verdicts) + [verdicts[-1]] * 10)
    monkeypatch.setattr(pipeline, "run_detectors", lambda *a, **k: forced(next(calls)))
    if synth is not None:
        monkeypatch.setattr(pipeline, "_synthetic_samples", lambda *a, **k: SynthSet.load(synth))
        monkeypatch.setattr(pipeline, "_fresh_samples", lambda *a, **k: SynthSet.load(synth))


@pytest.mark.parametrize("verdict, fail_on, code", [
    ("clean", "backdoored", 0), ("suspicious", "backdoored", 0), ("backdoored", "backdoored", 1),
    ("clean", "suspicious", 0), ("suspicious", "suspicious", 1), ("backdoored", "suspicious", 1),
    ("backdoored", "never", 0),
])
def test_exit_code_follows_the_verdict_and_fail_on(verdict: str, fail_on: str, code: int, tiny: tuple[Path, Path],
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, synth = tiny
    force(monkeypatch, verdict)
    result = CliRunner().invoke(main, ["scan", str(model), "--synthetic", str(synth), "--fail-on", fail_on,
                                       "--report-dir", str(tmp_path / "r"), *FAST])
    assert result.exit_code == code, result.output
    assert f"{verdict} (score" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    validate_report(report)
    assert report["verdict"]["verdict"] == verdict
    assert report["verdict"]["suspected_targets"] == ([] if verdict == "clean" else [3])


@pytest.mark.parametrize("content", [None, b"not an onnx file"])
def test_bad_input_exits_2_with_one_line(content: bytes | None, tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    if content is not None:
        path.write_bytes(content)
    result = CliRunner().invoke(main, ["scan", str(path), *FAST])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output


def test_several_files_worst_verdict_and_one_folder_each(tiny: tuple[Path, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    model, synth = tiny
    other = tmp_path / "other" / model.name  # same file name in another folder: the folders must not collide
    other.parent.mkdir()
    other.write_bytes(model.read_bytes())
    force(monkeypatch, "clean", "backdoored", synth=synth)
    out = tmp_path / "reports"
    result = CliRunner().invoke(main, ["scan", str(model), str(other), "--report-dir", str(out), "--json", *FAST])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "backdoored" and payload["exit_code"] == 1
    assert [m["verdict"] for m in payload["models"]] == ["clean", "backdoored"]
    assert (out / "suspect" / "report.json").exists() and (out / "suspect-2" / "report.json").exists()
    sarif = json.loads((out / "report.sarif").read_text())
    assert len(sarif["runs"][0]["results"]) == 1 and len(sarif["runs"][0]["artifacts"]) == 2
    assert "backdoored" in (out / "summary.md").read_text()


def test_one_bad_file_among_good_ones_exits_2_but_scans_the_rest(tiny: tuple[Path, Path], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model, synth = tiny
    force(monkeypatch, "backdoored", synth=synth)
    result = CliRunner().invoke(main, ["scan", str(model), str(tmp_path / "missing.onnx"), "--json", *FAST])
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["models"][0]["verdict"] == "backdoored" and payload["models"][1]["error"]


def test_existing_report_is_not_overwritten(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, synth = tiny
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.json").write_text("{}")
    result = CliRunner().invoke(main, ["scan", str(model), "--synthetic", str(synth), "--report-dir",
                                       str(tmp_path / "r"), *FAST])
    assert result.exit_code == 2 and "already holds a report" in result.output


def _comparable(report: dict) -> dict:
    """The report without what legitimately changes between runs: wall times and the timestamp."""
    return {k: v for k, v in report.items() if k not in ("timings", "created")}


def test_same_model_options_and_seed_give_the_same_report(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, synth = tiny  # inversion's own determinism is tested in test_inversion.py
    reports = []
    for run in ("a", "b"):
        folder = tmp_path / run
        result = CliRunner().invoke(main, ["scan", str(model), "--report-dir", str(folder), "--seed", "7",
                                           "--synthetic", str(synth), *FAST])
        assert result.exit_code in (0, 1), result.output
        reports.append(json.loads((folder / "report.json").read_text()))
        validate_report(reports[-1])
    assert _comparable(reports[0]) == _comparable(reports[1])
    assert reports[0]["detection"]["detectors"]["neural_cleanse"]["config"]["steps"] == 4
    for name in ("report.sarif", "summary.md"):
        a, b = (tmp_path / "a" / name).read_text(), (tmp_path / "b" / name).read_text()
        if name == "summary.md":  # the time column differs
            a, b = a.rsplit("|", 2)[0], b.rsplit("|", 2)[0]
        assert a == b
    assert (tmp_path / "a" / "triggers.npz").read_bytes() != b""


@pytest.mark.parametrize("rescan, code", [("clean", 0), ("backdoored", 1)])
def test_audit_exits_by_the_purified_models_rescan(rescan: str, code: int, tiny: tuple[Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model, synth = tiny
    force(monkeypatch, "backdoored", rescan, synth=synth)  # original, then purified
    result = CliRunner().invoke(main, ["audit", str(model), "-o", str(tmp_path / "clean.onnx"), "--report-dir",
                                       str(tmp_path / "r"), "--method", "clp", "--nc-steps", "4"])  # quickest purifier
    assert result.exit_code == code, result.output
    for stage in ("convert", "invert", "detect", "purify", "verify", "write"):  # a line per stage, for CI logs
        assert f"] {model.stem} {stage}: started" in result.output and f"] {model.stem} {stage}: " in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    validate_report(report)
    assert report["verdict"]["verdict"] == "backdoored"
    assert report["verdict"]["rescan"]["verdict"] == rescan
    assert report["verdict"]["purified_passes"] is (rescan == "clean")
    sarif = json.loads((tmp_path / "r" / "report.sarif").read_text())
    rules = [r["ruleId"] for r in sarif["runs"][0]["results"]]
    assert rules == (["AUD001"] if rescan == "clean" else ["AUD001", "AUD002"])


def test_patch_detector_runs_by_default_and_can_be_left_out(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from auditor.commands.scan import detection_config

    assert "patch" in detection_config({}).detectors
    assert "patch" in detection_config({"patch_detector": True}).detectors
    assert "patch" not in detection_config({"patch_detector": False}).detectors
    assert "patch" in detection_config({"patch_detector": False, "detectors": ("patch",)}).detectors
    model, synth = tiny
    for flag, expected in (("--no-patch-detector", False), ("--patch-detector", True)):
        out = tmp_path / flag.strip("-")
        result = CliRunner().invoke(main, ["scan", str(model), "--synthetic", str(synth), flag, "--fail-on", "never",
                                           "--report-dir", str(out), *FAST])
        assert result.exit_code == 0, result.output
        report = json.loads((out / "report.json").read_text())
        assert ("patch" in report["detection"]["detectors"]) == expected


def test_detector_workers_default_to_the_cores_and_can_be_set(tiny: tuple[Path, Path]) -> None:
    import os

    from auditor.commands.scan import detection_config

    assert detection_config({}).workers == min(2, os.cpu_count() or 1)
    assert detection_config({"detector_workers": 1}).workers == 1
    model, _ = tiny
    result = CliRunner().invoke(main, ["scan", str(model), "--detector-workers", "0", *FAST])
    assert result.exit_code == 2 and "--detector-workers" in result.output, result.output


def test_any_registered_detector_can_be_added_and_made_to_vote(tiny: tuple[Path, Path]) -> None:
    from auditor.commands.scan import detection_config

    config = detection_config({"detectors": ("feature_reach",), "voters": ("max_margin",)})
    assert config.detectors == ("neural_cleanse", "reach", "patch", "weight_perturbation", "stimulation", "warp_reach",
                                "sine_reach", "feature_reach", "max_margin")
    assert config.verdict.voters == ("reach", "stimulation", "warp_reach", "sine_reach", "max_margin")
    model, _ = tiny
    result = CliRunner().invoke(main, ["scan", str(model), "--detector", "nope", *FAST])
    assert result.exit_code == 2 and "unknown detector nope" in result.output, result.output


def test_progress_in_a_log_is_a_line_per_phase_not_a_line_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    from auditor.commands._progress import progress_bar

    with progress_bar("auditing", interactive=False, interval_s=3600) as progress:
        for step in range(1, 101):
            progress(step, 100, "reach")
        for step in range(1, 51):
            progress(step, 50, "patch search \x1b[31m")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0] == "  auditing: reach 1/100", lines  # a line per phase, not per step
    assert lines[1].startswith("  auditing: patch search") and lines[1].endswith(" 1/50") and "\x1b" not in lines[1]
    with progress_bar("auditing", enabled=False, interactive=False) as progress:
        progress(1, 10, "quiet")
    assert capsys.readouterr().err == ""
