"""The report files: report.json against its JSON Schema, SARIF 2.1.0 structure, a self-contained
HTML page that shows the verdict first (also in a real headless browser when chromium is
installed), and summary.md."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import torch

import auditor.pipeline as pipeline
from auditor.detect import DetectionConfig, DetectionResult
from auditor.inversion import SynthSet
from auditor.pipeline import ScanOptions, scan
from auditor.report import render_sarif, report_schema, validate_report
from auditor.report.columns import OVERLAP_NOTE
from model_matrix import CLASSES, IMAGE, build, export

NC_FAST = DetectionConfig(settings={"neural_cleanse": {"steps": 4}, "weight_perturbation": {"radii": (0.05,)},
                                    "reach": {"steps": 3}})


def _forced_backdoor(*_args, **_kwargs) -> dict[str, DetectionResult]:
    index = [0.0] * CLASSES
    index[3] = 4.2
    per_class = [{"class": k, "mask_l1": 30.0 - 5 * index[k], "attack_success": 0.98, "reached_target": True}
                 for k in range(CLASSES)]
    mask = torch.zeros(CLASSES, 1, *IMAGE[1:])
    mask[3, :, -3:, -3:] = 1
    images = {"mask": mask, "pattern": torch.ones(CLASSES, *IMAGE)}
    reach = [{"class": k, "reach": 0.3 + 0.15 * index[k], "delta_l2": 2.0} for k in range(CLASSES)]
    # warp reach rates class 3 higher still, and class 1 higher than reach does, but not conclusively there
    warp_index = [0.0] * CLASSES
    warp_index[3], warp_index[1] = 6.5, 5.0
    warp = [{"class": k, "share": 0.7 if k == 3 else 0.0, "searched": k in (1, 3)} for k in range(CLASSES)]
    return {"neural_cleanse": DetectionResult("neural_cleanse", {}, per_class, index, images=images),
            "reach": DetectionResult("reach", {}, reach, index),
            "warp_reach": DetectionResult("warp_reach", {}, warp, warp_index, conclusive=[k == 3 for k in range(CLASSES)])}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two report folders of one tiny model: the real detectors (clean or not), and a forced backdoor."""
    folder = tmp_path_factory.mktemp("reports")
    torch.manual_seed(0)
    model = export(build("plain_cnn_bn"), "legacy17", folder / "model.onnx", None)
    g = torch.Generator().manual_seed(0)
    synth = SynthSet(torch.rand(CLASSES * 3, *IMAGE, generator=g), torch.arange(CLASSES).repeat_interleave(3),
                     summary={"method": "smi"}).save(folder / "synth.npz")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scan(model, folder / "real", ScanOptions(synthetic=synth, detection=NC_FAST))
        original = pipeline.run_detectors
        pipeline.run_detectors = _forced_backdoor
        try:
            scan(model, folder / "forced", ScanOptions(synthetic=synth))
        finally:
            pipeline.run_detectors = original
    finally:
        torch.set_num_threads(before)
    return {"real": folder / "real", "forced": folder / "forced"}


def _load(folder: Path, name: str = "report.json") -> dict:
    return json.loads((folder / name).read_text())


def test_every_report_file_is_written(scanned: dict[str, Path]) -> None:
    for folder in scanned.values():
        for name in ("report.json", "report.md", "report.html", "report.sarif", "summary.md",
                     "synthetic_samples.png", "triggers.png", "triggers.npz"):
            assert (folder / name).stat().st_size > 0, name


def test_report_json_follows_the_schema(scanned: dict[str, Path]) -> None:
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for folder in scanned.values():
        report = _load(folder)
        validate_report(report)
        assert report["schema"] == "auditor.report/1" and report["command"] == "scan"
        assert len(report["detection"]["per_class"]) == CLASSES
        assert {"convert", "invert", "detect", "write", "total"} <= set(report["timings"])
    real = _load(scanned["real"])
    assert set(real["detection"]["detectors"]) == {"neural_cleanse", "reach", "patch", "weight_perturbation",
                                                        "stimulation", "warp_reach", "sine_reach"}
    assert real["config"]["detection"]["settings"]["neural_cleanse"]["steps"] == 4


@pytest.mark.parametrize("path, value", [
    (("schema",), "auditor.report/2"),
    (("verdict", "verdict"), "maybe"),
    (("verdict", "suspected_targets"), ["3"]),
    (("input", "sha256"), "abc"),
    (("timings", "total"), -1),
])
def test_the_schema_rejects_a_broken_report(path: tuple[str, ...], value: object, scanned: dict[str, Path]) -> None:
    report = copy.deepcopy(_load(scanned["forced"]))
    node = report
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate_report(report)


def test_sarif_has_one_result_per_finding(scanned: dict[str, Path]) -> None:
    sarif = _load(scanned["forced"], "report.sarif")
    assert sarif["version"] == "2.1.0" and "sarif-2.1.0" in sarif["$schema"]
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "auditor" and driver["version"]
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert len(set(rule_ids)) == len(rule_ids)
    (result,) = run["results"]  # one suspected target -> one finding
    assert result["ruleId"] == "AUD001" and rule_ids[result["ruleIndex"]] == "AUD001"
    assert result["level"] == "error" and result["message"]["text"]
    assert result["properties"]["class"] == 3
    # the index a finding cites is the highest conclusive voter's, as the verdict reads it
    assert (result["properties"]["anomalyIndex"], result["properties"]["indexFrom"]) == (6.5, "warp_reach")
    assert result["message"]["text"].endswith("(verdict backdoored, anomaly index 6.50 from warp_reach).")
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri.endswith("model.onnx")
    assert re.fullmatch(r"[0-9a-f]{64}/3", result["partialFingerprints"]["modelSha256/class"])
    assert run["artifacts"][0]["hashes"]["sha-256"] == _load(scanned["forced"])["input"]["sha256"]


def test_sarif_of_a_clean_model_has_no_results() -> None:
    report = {"tool": {"version": "0"}, "input": {"path": "m.onnx", "sha256": "0" * 64},
              "verdict": {"verdict": "clean", "score": 0.3, "suspected_targets": [], "reasons": ["x"]}}
    assert render_sarif([report])["runs"][0]["results"] == []
    report["verdict"] = {"verdict": "suspicious", "score": 1.7, "suspected_targets": [1, 2], "reasons": ["x"]}
    results = render_sarif([report])["runs"][0]["results"]
    assert [r["level"] for r in results] == ["warning", "warning"]


def test_html_is_self_contained_and_shows_the_verdict_first(scanned: dict[str, Path]) -> None:
    html = (scanned["forced"] / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    verdict = html.index('id="verdict"')
    assert "backdoored" in html[verdict: verdict + 200]
    assert verdict < html.index("Detection per class") < html.index("Reversed triggers")
    assert html.index("Reversed triggers") < html.index("Synthetic samples per class") < html.index("Time per stage")
    assert "need not add up to the stage" in html[html.index("Time per stage"):], "the detect.NAME rows may overlap"
    assert html.count("src='data:image/png;base64,") == 2
    assert not re.search(r"""(src|href)=["']?(https?:|file:|//)""", html)
    assert "<script" not in html and "<link" not in html
    # every detector that ran has its columns, voters marked, with the legend of what its index means
    assert "<th>warp reach index (votes)</th><th>warp reach share</th>" in html
    assert "<th>reach index (votes)</th><th>reach share</th>" in html and "smooth sub-pixel warp" in html


def test_markdown_tables_every_detector_that_ran(scanned: dict[str, Path]) -> None:
    markdown = (scanned["forced"] / "report.md").read_text()
    head = next(line for line in markdown.splitlines() if line.startswith("| class | NC anomaly index"))
    assert head.endswith("| reach index (votes) | reach share | warp reach index (votes) | warp reach share |")
    row = next(line for line in markdown.splitlines() if line.startswith("| 3 "))
    assert row.endswith("| 4.2 | 93.0% | 6.5 | 70.0% |")
    times = markdown[markdown.index("## Time per stage"):]
    assert "| detect.reach |" in times and OVERLAP_NOTE in times
    real = (scanned["real"] / "report.md").read_text()
    assert "stimulation index (votes)" in real and "weight perturbation index |" in real


def test_summary_is_short_and_names_the_target(scanned: dict[str, Path]) -> None:
    summary = (scanned["forced"] / "summary.md").read_text()
    assert summary.startswith("### auditor: ❌ backdoored")
    assert "| 3 |" in summary or "3 (" in summary or "| 3" in summary
    assert len(summary.splitlines()) < 12


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_opens_offline_in_a_headless_browser(scanned: dict[str, Path], tmp_path: Path) -> None:
    page = (scanned["forced"] / "report.html").resolve()
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-verdict="backdoored"' in dom.stdout
    shot = tmp_path / "shot.png"
    run = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:  # the verdict banner (red for backdoored) is at the top of the page
        r, g, b = image.convert("RGB").getpixel((600, 60))
        assert r > 150 and g < 100 and b < 100


def test_detection_tables_take_their_columns_from_their_own_section() -> None:
    # an audit's re-scan runs only the voters: its table must not ask for the detection's other columns
    from auditor.report.html import _detection_section

    rows = [{"class": 0, "name": "a", "reach.index": 0.5, "reach.reach": 0.4,
             "weight_perturbation.index": 0.1, "weight_perturbation.flip_in_share": 0.2}]
    report = {"verdict": {"suspected_targets": [], "thresholds": {"voters": ["reach"]}},
              "detection": {"detectors": {"reach": {}, "weight_perturbation": {}}, "per_class": rows},
              "rescan": {"detectors": {"reach": {}}, "per_class": [{k: v for k, v in rows[0].items()
                                                                    if not k.startswith("weight")}]}}
    rescan = _detection_section(report, "rescan", "Re-scan")
    assert "reach index (votes)" in rescan and "weight perturbation" not in rescan
    assert "weight perturbation index" in _detection_section(report)


def test_the_purification_steps_are_tabled_with_the_models_text_escaped(tmp_path: Path) -> None:
    """The kept attempt's steps (else the first attempt's) appear in report.md and report.html, one row each,
    with what they found; text that quotes the model (class names) is escaped in both."""
    from auditor.report.html import render_html
    from auditor.report.markdown import render_markdown

    hostile = "class <script>alert(1)</script> | *bold*"
    steps = [{"name": "patch", "acted": False, "notes": [], "seconds": 1.5},
             {"name": "channels", "acted": True, "finding": f"trigger channels: blamed for {hostile}", "seconds": 0.5}]
    attempt = {"attempt": 0, "purifier": "recipe", "interpolation": 1.0, "agreement": 0.5, "prior_agreement": 0.5,
               "passed": False, "result": {"steps": steps}}
    report = {"command": "audit", "input": {"path": "suspect.onnx", "sha256": "0" * 64}, "tool": {"version": "t"},
              "conversion": {"parity": {"max_abs": 0.0, "ok": True}}, "spec": {},
              "purification": {"status": "rejected", "message": "m", "attempts": [attempt], "final": None}}
    text = render_markdown(report)
    assert "Steps of the first attempt (undone):" in text
    patch_row = next(line for line in text.splitlines() if line.startswith("| patch |"))
    assert patch_row.startswith("| patch | no |") and patch_row.endswith("| 1.5 |")
    row = next(line for line in text.splitlines() if line.startswith("| channels |"))
    assert "<script>" not in row and row.count(" | ") == 3  # the pipe in the name is escaped, not a new cell
    page = render_html(report, tmp_path)
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "Steps of the first attempt" in page
    kept = dict(report["purification"], status="accepted", final={"steps": steps[:1]})
    assert "Steps of the kept attempt:" in render_markdown(dict(report, purification=kept))
