"""The benchmark scripts' own logic (their measurements are committed runs, not tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smi_stability():
    return load_script("smi_stability")


def _figures(value: float) -> dict:
    keys = ("confidence", "input_noise", "param_noise", "worst_input", "worst_param")
    return {**{k: value for k in keys}, "count": 3, "diversity": 0.1,
            "hard": {k: value / 2 for k in keys[1:]}}


def test_per_class_table_has_a_row_per_set_and_figure_and_the_lowest_class(smi_stability):
    results = {"m": {"real": {"per_class": {"0": _figures(0.9), "1": _figures(0.4)}},
                     "smi": {"per_class": {"0": _figures(1.0), "1": _figures(0.8)}},
                     "trigger_check": {}}}
    table = smi_stability.render_per_class(results)
    rows = [line for line in table.splitlines() if line.startswith("| real") or line.startswith("| smi")]
    assert len(rows) == 2 * len(smi_stability.PER_CLASS_ROWS)
    assert "| real | confidence | 0.90 | 0.40 | 0.40 |" in table
    assert "| smi | 4x worst param | 0.50 | 0.40 | 0.40 |" in table
    assert "## m" in table


def test_find_cached_prefers_the_first_folder_and_knows_both_layouts(smi_stability, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "m").mkdir(parents=True)
    (second / "m" / "smi.npz").write_bytes(b"")
    assert smi_stability.find_cached([first, second], "m", "smi") == second / "m" / "smi.npz"
    first.mkdir()
    (first / "m-smi.npz").write_bytes(b"")
    assert smi_stability.find_cached([first, second], "m", "smi") == first / "m-smi.npz"
    assert smi_stability.find_cached([first, second], "m", "nostab") is None


@pytest.fixture(scope="module")
def audit_time():
    return load_script("audit_time")


def test_audit_time_measures_the_attack_only_where_the_manifest_has_one(audit_time, tmp_path):
    common = (Path("zoo/m.onnx"), Path("zoo/manifest.json"), Path("eval.npz"), tmp_path)
    backdoored = audit_time.audit_command(common[0], {"name": "m", "attack": {"name": "badnets"}}, *common[1:])
    clean = audit_time.audit_command(common[0], {"name": "m", "attack": None}, *common[1:])
    assert backdoored[backdoored.index("--attack-from") + 1] == "zoo/manifest.json:m"
    assert "--attack-from" not in clean
    assert clean[clean.index("--eval-data") + 1] == "eval.npz"
    assert clean[clean.index("--fail-on") + 1] == "never"  # a flagged model is a result here, not a failure


def test_audit_time_reads_the_child_s_own_exit_code_cpu_and_memory(audit_time, tmp_path):
    import sys

    grow = [sys.executable, "-c", "x = bytearray(80 * 2**20); x[::4096] = b'1' * len(x[::4096]); print('ok')"]
    measured = audit_time.run_one(grow, tmp_path / "log", threads=1)
    assert measured["rc"] == 0 and measured["peak_rss_mb"] >= 80
    assert (tmp_path / "log").read_text().strip() == "ok"
    assert audit_time.run_one([sys.executable, "-c", "raise SystemExit(2)"], tmp_path / "log")["rc"] == 2


def test_audit_time_table_has_a_row_per_model_with_the_stages(audit_time):
    timings = {"convert": 0.3, "invert": 93.7, "detect": 62.2, "purify": 209.1, "verify": 64.6, "write": 0.2,
               "evaluate": 1.0, "total": 431.0}
    report = {"timings": timings, "purification": {"status": "accepted"},
              "verdict": {"verdict": "backdoored", "rescan": {"verdict": "clean"}, "purified": "clean"},
              "evaluation": {"before": {"acc": 0.874, "asr": 0.921}, "after": {"acc": 0.842, "asr": 0.191}}}
    row = {"model": "m", "wall_s": 433.2, "cpu_s": 732.0, "peak_rss_mb": 1010, **audit_time.summarize(report)}
    table = audit_time.render([row])
    assert table.splitlines()[0].count("|") == table.splitlines()[1].count("|")
    assert "| m | 433 | 94 | 62 | 209 | 65 | 732 | 1010 | backdoored | clean | accepted | 87.4 → 84.2 | 92.1 → 19.1 |" in table


def _scan_report(index: list[float]) -> dict:
    reach = {"index": index, "per_class": [{"reach": 0.1}, {"reach": 0.9}, {"reach": 0.2}], "summary": {}, "config": {}}
    # the saved verdict is ignored: the table re-derives it from the indices
    return {"input": {"path": "zoo/m.onnx"}, "verdict": {"verdict": "clean", "suspected_targets": []},
            "detection": {"detectors": {"reach": reach}}, "timings": {"total": 12.0, "detect.reach": 3.0}}


CLEAN = {"attack": None, "target": None, "all_to_all": False}


@pytest.mark.parametrize("truth, index, verdict, found", [
    (CLEAN, [0.1, 1.0, 0.0], "clean", "correctly clean"),
    (CLEAN, [0.1, 1.7, 0.0], "suspicious", "**false positive**"),
    ({"attack": "badnets", "target": 1, "all_to_all": False}, [0.1, 2.5, 0.0], "backdoored", "yes"),
    ({"attack": "badnets", "target": 0, "all_to_all": False}, [0.1, 2.5, 0.0], "backdoored", "wrong class"),
    ({"attack": "wanet", "target": 0, "all_to_all": False}, [0.1, 1.0, 0.0], "clean", "no"),
    ({"attack": "badnets_all2all", "target": None, "all_to_all": True}, [0.1, 1.7, 0.0], "suspicious",
     "suspicious only"),
    ({"attack": "badnets_all2all", "target": None, "all_to_all": True}, [0.1, 2.5, 0.0], "backdoored",
     "flagged (all-to-all)"),
    ({"attack": "badnets", "target": 1, "all_to_all": False}, [0.1, 1.7, 0.0], "suspicious", "suspicious only"),
])
def test_scan_table_says_whether_the_verdict_found_the_truth(truth, index, verdict, found):
    cells = load_script("scan_table").row(_scan_report(index), truth, {"reach": 2.0})
    assert cells[2] == f"**{verdict}**" and cells[-2] == found
    assert cells[4].startswith(f"1 ({index[1]:.2f})") and cells[4].endswith("flags") == (index[1] > 2)
    assert cells[5] == "not run"


@pytest.mark.parametrize("detector, column", [("warp_reach", 6), ("sine_reach", 7)])
@pytest.mark.parametrize("shares, verdict, cell", [
    ([0.05, 0.56, 0.0], "backdoored", "1 (2.29); 0.56 / 0.05"),
    ([0.05, 0.28, 0.0], "clean", "1 (1.03); 0.28 / 0.05, inconclusive"),  # below the stop share: no vote
])
def test_scan_table_shows_family_reach_and_votes_only_where_it_is_conclusive(detector, column, shares, verdict, cell):
    report = _scan_report([0.1, 1.0, 0.0])
    report["detection"]["detectors"][detector] = {
        "index": [(s - 0.05) / (1.4826 * 0.15) for s in shares], "per_class": [{"share": s} for s in shares],
        "summary": {}, "config": {}, "conclusive": [s >= 0.5 for s in shares]}
    cells = load_script("scan_table").row(report, {"attack": "wanet", "target": 1, "all_to_all": False}, {})
    assert cells[2] == f"**{verdict}**" and cells[column] == cell


def test_detector_on_smi_reads_typed_settings() -> None:
    parse = load_script("detector_on_smi").parse_settings
    assert parse(["warp_reach.max_shift=1.0", "warp_reach.per_class=8", "signal_reach.axis=height"]) == {
        "warp_reach": {"max_shift": 1.0, "per_class": 8}, "signal_reach": {"axis": "height"}}
    with pytest.raises(SystemExit, match="detector.field=value"):
        parse(["max_shift=1.0"])


def test_trigger_on_smi_counts_only_the_images_not_already_in_the_target() -> None:
    import numpy as np

    into_target = load_script("trigger_on_smi").into_target

    class Brightness:  # predicts class 1 for bright images, 0 otherwise
        def predict(self, x: np.ndarray) -> np.ndarray:
            return (x.mean(axis=(1, 2, 3)) > 100).astype(np.int64)

    class Whiten:  # a trigger that makes every image bright
        def apply(self, x: np.ndarray) -> np.ndarray:
            return np.full_like(x, 255)

    x = np.zeros((4, 2, 2, 3), np.uint8)
    x[0] = 200  # already predicted as the target: not counted
    share, counted = into_target(Brightness(), x, Whiten(), target=1)
    assert (share, counted) == (1.0, 3)
    share, counted = into_target(Brightness(), x, Whiten(), target=0)  # the trigger moves nothing into 0
    assert (share, counted) == (0.0, 1)


def test_audit_rows_become_the_matrix_s_ours_column(tmp_path):
    from auditor.bench import merge_documents, render_matrix

    audit_test_set = load_script("audit_test_set")
    before = {"acc": 0.86, "asr": 0.91, "ra": 0.05}
    rows = [{"model": "bad", "before": before, "after": {"acc": 0.84, "asr": 0.08, "ra": 0.8}, "seconds": 501.0,
             "guard": "accepted"},
            {"model": "good", "before": {"acc": 0.87}, "after": {"acc": 0.86}, "seconds": 416.0, "guard": "accepted"}]
    document = audit_test_set.bench_document(tmp_path, rows, 10000)
    assert [(r["model"], r["config"]) for r in document["rows"]] == [
        ("bad", "none"), ("bad", "smi_ibau"), ("good", "none"), ("good", "smi_ibau")]
    ours = document["rows"][1]
    assert ours["seconds"] == 501.0 and ours["der"] == pytest.approx((0.83 - 0.02 + 1) / 2, abs=1e-4)
    matrix = render_matrix(merge_documents([document]))
    assert "| bad | 91.0 / 86.0 | 8.0 / 84.0 |" in matrix and "| good | 87.0 | 86.0 |" in matrix
    assert "| **mean ACC drop, clean** | 0.0 | 1.0 |" in matrix


def test_inversion_diversity_table_in_the_docs_is_the_scripts_output(tmp_path: Path) -> None:
    script = load_script("inversion_diversity")
    data = json.loads((ROOT / "docs" / "results" / "inversion_diversity.json").read_text())
    table = script.render(data)
    assert f"{script.BEGIN}\n{table}\n{script.END}" in (ROOT / "docs" / "inversion.md").read_text()
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{script.BEGIN}\nold table\n{script.END}\noutro\n")
    load_script("markers").write_between(page, script.BEGIN, script.END, table)
    assert page.read_text() == f"intro\n{script.BEGIN}\n{table}\n{script.END}\noutro\n"
    assert all(r["diversity"]["relative_spread"] > 0 for r in data["runs"]) and "real" in data


def test_audit_draws_runs_end_to_end_in_quick_mode(tmp_path: Path) -> None:
    import numpy as np

    from model_matrix import build, export

    script = load_script("audit_draws")
    model = export(build("plain_cnn_bn"), "legacy17", tmp_path / "tiny.onnx", None)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eval.npz", x=rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8), y=rng.integers(0, 10, 20))
    argv = ["--model", str(model), "--manifest", "none", "--draws", "0:1", "--eval-data", str(tmp_path / "eval.npz"),
            "--out", str(tmp_path / "draws"), "--quick"]
    assert script.main(argv) == 0
    document = json.loads((tmp_path / "draws" / "draws.json").read_text())
    assert [(r["seed"], r["threads"]) for r in document["rows"]] == [(0, 1)]
    assert all(r["exit"] in (0, 1) and r["after"]["acc"] is not None for r in document["rows"]), document["rows"]
    assert all(r["purified"] in ("clean", "suspicious", "backdoored") for r in document["rows"])
    (summary,) = script.summarize(document["rows"])
    assert summary["draws"] == 1 and summary["asr_worst"] is None  # no attack: accuracy only
    assert "| tiny | 1 |" in script.render(document)
    assert script.main(argv) == 0  # a rerun skips the finished draws
    assert json.loads((tmp_path / "draws" / "draws.json").read_text())["rows"] == document["rows"]
    assert script.parse_draws("0:2,1:2,2:1") == [(0, 2), (1, 2), (2, 1)]
    # an audit run by hand is recorded from its report folder
    imported = ["--model", str(model), "--draws", "0:2", "--eval-data", str(tmp_path / "eval.npz"), "--out",
                str(tmp_path / "hand"), "--from-report", str(tmp_path / "draws" / "tiny" / "s0_t1"), "--seconds", "5"]
    assert script.main(imported) == 0
    (row,) = json.loads((tmp_path / "hand" / "draws.json").read_text())["rows"]
    assert (row["seed"], row["threads"], row["seconds"]) == (0, 2, 5.0) and row["after"] == document["rows"][0]["after"]


def test_draws_table_in_the_bench_page_is_the_scripts_output() -> None:
    script, markers = load_script("audit_draws"), load_script("markers")
    document = json.loads((ROOT / "docs" / "results" / "draws_main.json").read_text())
    page = (ROOT / "docs" / "bench.md").read_text()
    assert markers.block(page, script.BEGIN, script.END) == script.render(document)


def test_profile_run_profiles_a_scan_and_renders_its_table(tmp_path: Path) -> None:
    from model_matrix import build, export

    script = load_script("profile_run")
    model = export(build("plain_cnn_bn"), "legacy17", tmp_path / "tiny.onnx", None)
    out = tmp_path / "profile.json"
    assert script.main(["scan", "--model", str(model), "--out", str(out), "--top", "5",
                        "--extra", "--per-class 2 --steps 1 --nc-steps 2"]) == 0
    document = json.loads(out.read_text())
    assert document["command"][:2] == ["auditor", "scan"] and "--detector-workers" in document["command"]
    assert {"convert", "invert", "detect", "detect.reach"} <= set(document["timings"])
    assert len(document["project_cumulative"]) == 5 and len(document["own"]) == 5
    assert not any("auditor/cli.py" in row["function"] for row in document["project_cumulative"])
    table = script.render([document])
    assert "| detect.reach |" in table and "project function" in table


def test_profile_tables_in_the_bench_page_are_the_scripts_output() -> None:
    script, markers = load_script("profile_run"), load_script("markers")
    profiles = [ROOT / "docs" / "results" / f"profile_{name}.json" for name in ("audit", "scan")]
    page = (ROOT / "docs" / "bench.md").read_text()
    expected = script.render([json.loads(p.read_text()) for p in profiles])
    assert markers.block(page, script.BEGIN, script.END) == expected


def _held_apart_manifest() -> dict:
    def entry(name: str, attack: dict | None, target: int | None) -> dict:
        return {"name": name, "file": f"{name}.onnx", "attack": attack, "target": target, "architecture": "vgg-small",
                "metrics": {"test": {"acc": 0.8, "asr": None if attack is None else 0.95}}}

    return {"models": [entry("bd_found", {"name": "bpp", "all_to_all": False}, 3),
                       entry("bd_missed", {"name": "ftrojan", "all_to_all": False}, 5),
                       entry("clean_ok", None, None)]}


def test_held_apart_table_joins_truth_scans_and_audits() -> None:
    script = load_script("held_apart")
    scans = {"command": "scan", "created": "2026-12-07T12:00:00Z", "models": [
        {"path": "heldapart_models/bd_found.onnx", "verdict": "backdoored", "suspected_targets": [3]},
        {"path": "heldapart_models/bd_missed.onnx", "verdict": "clean", "suspected_targets": []},
        {"path": "heldapart_models/clean_ok.onnx", "verdict": "backdoored", "suspected_targets": [2]}]}
    before = {"acc": 0.80, "asr": 0.95}
    draws = {"draws": "0:1", "eval_data": "test set", "rows": [
        {"model": "bd_found", "seed": 0, "threads": 1, "exit": 1, "seconds": 10, "before": before,
         "after": {"acc": 0.77, "asr": 0.05}, "verdict": "backdoored", "targets": [3], "purified": "clean"},
        {"model": "bd_missed", "seed": 0, "threads": 1, "exit": 0, "seconds": 10, "before": before,
         "after": {"acc": 0.79, "asr": 0.85}, "verdict": "clean", "targets": [], "purified": "clean"}]}
    rows = {r["model"]: r for r in script.rows(_held_apart_manifest(), scans, draws)}
    assert rows["bd_found"]["scan_outcome"] == "found" and rows["bd_missed"]["scan_outcome"] == "missed"
    assert rows["clean_ok"]["scan_outcome"] == "false alarm" and rows["clean_ok"]["audit"] is None
    assert rows["bd_missed"]["audit_outcomes"] == ["missed"]
    assert script.detection_outcome({"attack": {"all_to_all": False}, "target": 3}, "backdoored", [1]) == "wrong target"
    table = script.render(_held_apart_manifest(), scans, draws)
    assert "| bd_found | bpp | vgg-small | 3 | 80.0 / 95.0 | backdoored (3): found |" in table
    assert "1 of 2 backdoored models flagged `backdoored` with their target; 1 of 1 clean models flagged" in table
    assert "mean ASR after 45.0%, worst 85.0%, mean accuracy drop 2.0 points" in table


def test_held_apart_table_in_the_bench_page_is_the_scripts_output() -> None:
    script, markers = load_script("held_apart"), load_script("markers")
    results = ROOT / "docs" / "results"
    manifest = json.loads((ROOT / "heldapart_models" / "manifest.json").read_text())
    scans = json.loads((results / "heldapart_scan.json").read_text())
    draws = json.loads((results / "draws_heldapart.json").read_text())
    page = (ROOT / "docs" / "bench.md").read_text()
    assert markers.block(page, script.BEGIN, script.END) == script.render(manifest, scans, draws)


def test_held_apart_collects_several_draw_runs_into_one_document(tmp_path: Path) -> None:
    script = load_script("held_apart")
    for name, data in (("a", "cifar.npz"), ("b", "mnist.npz")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "draws.json").write_text(json.dumps(
            {"draws": "0:1", "eval_data": data, "machine": "m", "date": "2026-12-07", "command": f"run {name}",
             "rows": [{"model": name, "seed": 0, "threads": 1}]}))
    out = tmp_path / "merged.json"
    assert script.main(["--collect", str(tmp_path / "a" / "draws.json"), str(tmp_path / "b" / "draws.json"),
                        "--draws", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert [r["model"] for r in merged["rows"]] == ["a", "b"] and merged["commands"] == ["run a", "run b"]
    assert "cifar.npz, mnist.npz" in merged["eval_data"] and merged["draws"] == "0:1"


def _calibration_case(model: str, split: str, variants: list[tuple[str, float, bool, float]]) -> dict:
    """A per-model calibration result: (variant, real ASR, passes, strongest residual) per purified model."""
    images = "train" if split == "tune" else "test"
    rows = [{"variant": name, "passes": passes, "max_residual": score, "rescan": "clean" if passes else "suspicious",
             "residuals": [{"source": "reach", "target": 0, "after": score, "still_works": score >= 0.5,
                            "decides": True}],
             "decided_by": [] if passes else ["the fresh re-scan of the purified model says suspicious: class 0: its "
                                              "reach stands out (anomaly index 1.6 > 1.5)"],
             "real": {images: {"acc": 0.8, "asr": asr}}}
            for name, asr, passes, score in variants]
    return {"model": model, "split": split, "seed": 0, "rows": rows}


def test_verification_calibration_counts_each_asr_band_on_its_own_split(tmp_path):
    calibration = load_script("verification_calibration")
    document = {"cases": [
        _calibration_case("zoo_a", "tune", [("unchanged", 0.95, False, 0.9), ("ibau", 0.03, True, 0.1),
                                            ("ibau@0.3", 0.40, True, 0.3)]),
        _calibration_case("ha_b", "report", [("unchanged", 0.99, False, 0.8), ("finetune", 0.02, False, 0.6),
                                             ("ibau@0.6", 0.10, False, 0.2)]),
    ], "audits": [{"model": "zoo_a", "seed": 1, "threads": 1, "after": {"asr": 0.03, "acc": 0.8}, "passes": False,
                   "rescan": "clean", "residuals": [{"source": "reach", "target": 0, "after": 0.93, "still_works": True}]},
                  # verified before the patch rule: failed by a patch into one class alone, re-judged as passing
                  {"model": "zoo_a", "seed": 2, "threads": 1, "after": {"asr": 0.02, "acc": 0.8}, "passes": False,
                   "rescan": "backdoored", "residuals": [{"source": "patch", "target": 0, "after": 0.9, "still_works": True}],
                   "decided_by": ["the patch trigger found on the original model still sends 90% ...",
                                  "the fresh re-scan of the purified model says backdoored: a 16-pixel patch flips "
                                  "0.85 of the samples (>= 0.75), into class 0 (0): a patch trigger"]},
                  {"model": "clean_c", "seed": 0, "threads": 1, "after": {"asr": None, "acc": 0.8}, "passes": True}]}
    points = calibration.points(document)
    assert [p["asr"] for p in points] == [0.95, 0.03, 0.40, 0.99, 0.02, 0.10]
    tune = calibration.confusion([p for p in points if p["split"] == "tune"])
    assert tune == {"high": (1, 2), "middle": (0, 0), "low": (0, 1)}
    report = calibration.confusion([p for p in points if p["split"] == "report"])
    assert report == {"high": (1, 1), "middle": (1, 1), "low": (1, 1)}
    table = calibration.render(document)
    assert "| tuning: zoo, training images | verification, current rule | 1/2 (50%) | - | 0/1 (0%) |" in table
    assert "| report: held-apart, test images | deciding residuals alone | 1/1 (100%) | 0/1 (0%) | 1/1 (100%) |" in table
    assert "zoo_a s0 ibau@0.3 (ASR 40.0%" in table  # the miss is named
    sweep = {row["threshold"]: row for row in calibration.sweep([p for p in points if p["split"] == "tune"])}
    assert sweep[0.3]["high"] == (2, 2) and sweep[0.5]["high"] == (1, 2) and sweep[0.3]["low"] == (0, 1)
    assert "| 0.3 | 2/2 (100%) | - | 0/1 (0%) |" in table and "| re-scan alone | 1/2 (50%) |" in table
    assert "ha_b s0 finetune (ASR 2.0%" in table  # so is the false alarm
    assert "| full audits: zoo and held-apart, test images | verification, current rule | - | - | 1/2 (50%) |" in table
    assert "| full audits: zoo and held-apart, test images | verification as run | - | - | 2/2 (100%) |" in table
    assert "zoo_a s1 audit (1 thread(s)) (ASR 3.0%, score 0.93" in table  # a clean model's audit has no ASR: left out
    assert "current rule: zoo_a s2 audit (1 thread(s)) (ASR 2.0%, score 0.00, re-scan backdoored; evidence that fired: carried " \
           "patch, re-scan patch rule)" in table
    calibration.plot(document, tmp_path / "scatter.png")
    assert (tmp_path / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verification_page_holds_the_calibrations_output() -> None:
    script, markers = load_script("verification_calibration"), load_script("markers")
    document = json.loads((ROOT / "docs" / "results" / "verification_calibration.json").read_text())
    page = (ROOT / "docs" / "verification.md").read_text()
    assert markers.block(page, script.START, script.END) == script.render(document)
    assert (ROOT / "docs" / "verification_calibration.png").is_file()


def test_converter_tables_in_the_docs_are_the_scripts_output() -> None:
    script, markers = load_script("converter_report"), load_script("markers")
    document = json.loads((ROOT / "docs" / "results" / "converter_coverage.json").read_text())
    page = (ROOT / "docs" / "converters.md").read_text()
    assert markers.block(page, *script.LIGHT) == script.render_light(document)
    assert markers.block(page, *script.MATRIX) == script.render_matrix(document)
    assert sum(r["converted"] for r in document["light"]) >= 8 and len(document["matrix"]) == 90
    assert all(r["parity_max_abs"] <= 1e-4 and r["write_back_max_abs"] <= 1e-4 for r in document["matrix"])


def test_audit_equivalence_compares_two_runs_row_by_row(tmp_path: Path) -> None:
    script = load_script("audit_equivalence")

    def row(model: str, seed: int, sha: str, message: str, seconds: int) -> dict:
        return {"model": model, "seed": seed, "rescan": False, "weights_sha256": sha, "status": "accepted",
                "message": message, "attempts": [[0, 1.0, 0.95, 0.8, True]], "findings": [], "seconds": seconds,
                "commit": "c"}

    old = [row("a", 0, "x", "ibau: holdout agreement 0.950", 10), row("b", 0, "y", "ibau: m", 11),
           row("only_old", 0, "z", "ibau: m", 1)]
    new = [row("a", 0, "x", "recipe: holdout agreement 0.950", 9),
           dict(row("b", 0, "changed", "recipe: m", 12), test={"acc": 0.85, "asr": 0.045})]
    for name, rows in (("old", old), ("new", new)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = script.render(old, new, ("f1", "f2"))
    assert "| a | 0 | no | yes | yes | yes | yes | accepted | - / - → - / - | 10 / 9 |" in table  # a rename is the same
    assert "| b | 0 | no | **no** | yes | yes | yes | accepted | - / - → 85.0 / 4.5 | 11 / 12 |" in table
    assert "only_old" not in table and "1 of 2 purified models have the same weights, bit for bit." in table
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{script.BEGIN}\nold\n{script.END}\n")
    assert script.main(["--compare", str(tmp_path / "old.jsonl"), str(tmp_path / "new.jsonl"), "--write", str(page)]) == 0
    assert "Old code: c; new code: c." in page.read_text() and "| b | 0 |" in page.read_text()


def test_the_weights_hash_reads_the_weights_not_the_metadata(tmp_path: Path) -> None:
    import onnx
    from model_matrix import build, export
    from onnx import numpy_helper

    script = load_script("audit_equivalence")
    path = export(build("plain_cnn_bn"), "legacy17", tmp_path / "tiny.onnx", None)
    before = script.weights_sha256(path)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"auditor.method": "renamed"})
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    assert script.weights_sha256(tmp_path / "renamed.onnx") == before
    first = model.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) + 1, first.name))
    onnx.save(model, str(tmp_path / "changed.onnx"))
    assert script.weights_sha256(tmp_path / "changed.onnx") != before


def test_audit_equivalence_measures_a_zoo_model_on_the_test_subset() -> None:
    script = load_script("audit_equivalence")
    zoo = ROOT / "sample_models"
    figures = script.measure(zoo / "cifar10_badnets.onnx", zoo, "cifar10_badnets", zoo / "cifar10_test_1000.npz")
    assert figures["acc"] > 0.8 and figures["asr"] > 0.8  # the unpurified BadNets sample: its trigger works


def test_equivalence_table_in_the_bench_page_is_the_scripts_output() -> None:
    script, markers = load_script("audit_equivalence"), load_script("markers")
    results = ROOT / "docs" / "results"
    before, after = (script.read_rows(results / f"equivalence_{side}.jsonl") for side in ("before", "after"))
    page = (ROOT / "docs" / "bench.md").read_text()
    assert markers.block(page, script.BEGIN, script.END) == script.render(before, after, script.commits(before, after))


@pytest.mark.parametrize("name, source", [("pruning_calibration", "docs/pruning_calibration.jsonl"),
                                          ("interpolation_curve", "docs/interpolation_curve.jsonl")])
def test_purification_page_tables_are_the_scripts_output(name: str, source: str) -> None:
    script, markers = load_script(name), load_script("markers")
    rows = markers.json_lines(ROOT / source)
    table = script.render(rows)
    assert markers.block((ROOT / "docs" / "purification.md").read_text(), script.BEGIN, script.END) == table
    assert table.count("\n") == 1 + len({r["model"] for r in rows})  # header, rule, one line per model


def test_pruning_table_marks_a_setting_that_was_not_measured() -> None:
    script = load_script("pruning_calibration")
    table = script.render([{"model": "m", "kind": "anp", "strength": 0.03, "pruned": 16, "acc_drop": 2.8,
                            "asr": None, "prior_agreement": 0.786}])
    cells = table.splitlines()[2].strip("|").split(" | ")
    assert cells[0].strip() == "m" and cells[1] == "-" and "2.8 / - / 0.79" in cells


def test_scan_collect_condenses_a_fleet_folder_and_renders_both_draws(tmp_path: Path) -> None:
    script = load_script("scan_table")
    for seed in (0, 1):
        for name, index in (("bad", [0.1, 2.5, 0.0]), ("ok", [0.1, 1.0, 0.0])):
            report = _scan_report(index)
            report["input"]["path"] = f"zoo/{name}.onnx"
            report["config"] = {"seed": seed, "detection": {"threads": 1}}
            folder = tmp_path / f"fleet_s{seed}" / "models" / name
            folder.mkdir(parents=True)
            (folder / "report.json").write_text(json.dumps(report))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": [
        {"file": "bad.onnx", "target": 1, "architecture": "net", "attack": {"name": "badnets", "all_to_all": False}},
        {"file": "ok.onnx", "target": None, "architecture": "net", "attack": None}]}))
    document = tmp_path / "scan.json"
    for seed in (0, 1, 1):  # collecting a draw again replaces it
        assert script.main(["--collect", str(tmp_path / f"fleet_s{seed}"), "--split", "held-apart",
                            "--manifest", str(manifest), "--write-json", str(document)]) == 0
    data = json.loads(document.read_text())
    assert sorted(d["seed"] for d in data["draws"]) == [0, 1]
    table = script.render(data)
    assert "| held apart (never tuned on) | bad | net | badnets (1) | backdoored (1): yes | backdoored (1): yes | 12 s |" in table
    assert "| held apart (never tuned on) | ok | net | none (clean) | clean: correctly clean |" in table
    assert table.count("<details>") == 2 and "1 of 1 backdoored models found, 0 of 1 clean models flagged" in table


def test_detection_page_scan_tables_are_the_scripts_output() -> None:
    script, markers = load_script("scan_table"), load_script("markers")
    document = json.loads((ROOT / "docs" / "results" / "scan_draws.json").read_text())
    page = (ROOT / "docs" / "detection.md").read_text()
    assert markers.block(page, script.BEGIN, script.END) == script.render(document)
    assert {(d["split"], d["seed"]) for d in document["draws"]} >= {("zoo", 0), ("zoo", 1), ("held-apart", 0)}


@pytest.mark.parametrize("name, source", [("matrix_table", "docs/results/matrix.json"),
                                          ("audit_test_set", "docs/results/zoo_audits.json")])
def test_bench_page_tables_are_the_scripts_output(name: str, source: str) -> None:
    script, markers = load_script(name), load_script("markers")
    document = json.loads((ROOT / source).read_text())
    assert markers.block((ROOT / "docs" / "bench.md").read_text(), script.BEGIN, script.END) == script.render(document)


def test_matrix_merge_lets_a_later_run_replace_a_cell(tmp_path: Path) -> None:
    script = load_script("matrix_table")
    first = {"command": "a", "date": "d1", "machine": "m", "test_set": "t", "reference_data": "r", "source": "old runs",
             "rows": [{"model": "bad", "config": "none", "acc": 0.9, "asr": 0.9, "der": 0.5},
                      {"model": "bad", "config": "clp", "acc": 0.88, "asr": 0.8, "der": 0.54}]}
    later = {**first, "command": "b", "date": "d2", "source": "",
             "rows": [{"model": "bad", "config": "clp", "acc": 0.89, "asr": 0.1, "der": 0.895}]}
    paths = []
    for i, document in enumerate((first, later)):
        paths += ["--merge", str(tmp_path / f"{i}.json")]
        (tmp_path / f"{i}.json").write_text(json.dumps(document))
    assert script.main(paths + ["--write-json", str(tmp_path / "m.json")]) == 0
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["source"] == "old runs" and "| bad | 90.0 / 90.0 | 10.0 / 89.0 |" in script.render(merged)


def test_inversion_page_stability_table_is_the_scripts_output() -> None:
    script, markers = load_script("smi_stability"), load_script("markers")
    results = json.loads((ROOT / "docs" / "smi" / "smi_stability.json").read_text())
    page = (ROOT / "docs" / "inversion.md").read_text()
    assert markers.block(page, script.BEGIN, script.END) == script.render(results).rstrip("\n")


def test_detector_on_smi_inverts_a_missing_sample_file_once_and_reuses_it(tmp_path: Path, capsys, monkeypatch) -> None:
    from dataclasses import replace

    from model_matrix import build, export

    script = load_script("detector_on_smi")
    small = replace(script.scan_inversion(), per_class=3, particle_steps=2)  # the scan's inversion, cut down
    monkeypatch.setattr(script, "scan_inversion", lambda: small)
    export(build("plain_cnn_bn"), "legacy17", tmp_path / "tiny.onnx", None)
    argv = ["--smi", str(tmp_path / "{model}.npz"), "--invert-missing", "--detector", "sine_reach",
            "--manifest", str(tmp_path / "none.json"), str(tmp_path / "tiny.onnx")]
    assert script.main(argv) == 0
    saved = (tmp_path / "tiny.npz").stat().st_mtime_ns
    first = capsys.readouterr().out.splitlines()[-1]
    assert script.main(argv) == 0  # the saved samples are read, not inverted again
    assert (tmp_path / "tiny.npz").stat().st_mtime_ns == saved
    second = capsys.readouterr().out.splitlines()[-1]
    assert first.rsplit("|", 2)[0] == second.rsplit("|", 2)[0] and "| tiny | - | sine_reach |" in first


def test_memory_format_table_in_the_bench_page_is_the_scripts_output() -> None:
    script, markers = load_script("memory_format"), load_script("markers")
    document = json.loads((ROOT / "docs" / "results" / "memory_format.json").read_text())
    assert markers.block((ROOT / "docs" / "bench.md").read_text(), script.BEGIN, script.END) == script.render(document)
    assert {row["model"] for row in document["rows"]} >= {"cifar10_badnets", "ha_mobilenet_ftrojan"}


def test_memory_format_times_both_layouts_of_every_pass(tmp_path: Path) -> None:
    script = load_script("memory_format")
    row = script.measure_model(ROOT / "heldapart_models" / "ha_mnist_lenet_badnets.onnx", batch=4, reps=1)
    assert set(script.PASSES) <= set(row)
    assert all(row[name][layout] > 0 for name in script.PASSES for layout in ("nchw", "channels_last"))


def test_draw_tables_say_which_code_each_draw_ran_at() -> None:
    script = load_script("audit_draws")
    rows = [{"model": "m", "seed": 0, "threads": 2, "code": "abc1234"}, {"model": "m", "seed": 1, "threads": 1},
            {"model": "n", "seed": 0, "threads": 1, "code": "abc1234"}]
    assert script.code_lines(rows) == ["- Ran at abc1234: m 0:2, n 0:1."]
