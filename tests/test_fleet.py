"""Fleet runs (``auditor.fleet``, ``auditor fleet scan``): local worker processes over a folder of tiny
models, Ray mode giving the same merged result, a killed worker retried, a rerun that skips what is done,
and the inputs a fleet accepts. The scans are real (workers are separate processes, so nothing can be
monkeypatched into them) but tiny: 2 samples per class, one inversion step, one detector."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from click.testing import CliRunner

from auditor.cli import main
from auditor.detect import DetectionConfig
from auditor.errors import AuditorError
from auditor.fleet import FleetItem, Job, LocalBackend, collect, result_key, run_fleet
from auditor.pipeline import ScanOptions, scan_inversion
from auditor.report import validate_report
from model_matrix import build, export

SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif" / "sarif-2.1.0-rtm.5.json"
MODELS = 2


def tiny_job(seed: int = 0) -> Job:
    detection = DetectionConfig(detectors=("reach",), workers=1)
    detection.threads = 1
    inversion = dataclasses.replace(scan_inversion(), per_class=2, particle_steps=1, seed=seed)
    return Job("scan", ScanOptions(seed=seed, inversion=inversion, pixels=True, detection=detection), threads=1)


def _no_backend() -> Any:
    raise AssertionError("a rerun with nothing to do must not start workers")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tiny classifiers, one in a subfolder (folders are walked)."""
    folder = tmp_path_factory.mktemp("fleet") / "models"
    (folder / "sub").mkdir(parents=True)
    for k, name in enumerate(["a.onnx", "sub/b.onnx"]):
        export(build("plain_cnn_bn", seed=k), "legacy17", folder / name, None)
    (folder / "notes.txt").write_text("not a model: a folder yields its *.onnx files only")
    return folder


@pytest.fixture(scope="module")
def local_run(models: Path) -> tuple[Path, Any]:
    out = models.parent / "local"
    lines: list[str] = []
    result = run_fleet(collect([str(models)]), out, tiny_job(), lambda: LocalBackend(2), fail_on="backdoored",
                       log=lines.append)
    return out, result


def _comparable(index: dict[str, Any]) -> dict[str, Any]:
    """The index without what legitimately changes between runs: times and the timestamp."""
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in index["models"]]
    return {**{k: v for k, v in index.items() if k not in ("created", "slowest")}, "models": rows}


def _report(out: Path, row: dict[str, Any]) -> dict[str, Any]:
    report = json.loads((out / row["report_dir"] / "report.json").read_text())
    return {k: v for k, v in report.items() if k not in ("timings", "created")}


def test_local_mode_over_a_folder(models: Path, local_run: tuple[Path, Any]) -> None:
    out, result = local_run
    index = result.index
    assert index["schema"] == "auditor.fleet/1" and index["command"] == "scan"
    assert [Path(r["path"]).name for r in index["models"]] == ["a.onnx", "b.onnx"]
    assert index["counts"]["done"] == MODELS and index["counts"]["failed"] == 0
    assert sum(index["counts"]["by_verdict"].values()) == MODELS
    assert result.processed == MODELS and result.skipped == 0 and result.retries == 0
    worst_fails = any(r["verdict"] == "backdoored" for r in index["models"])
    assert result.exit_code == index["exit_code"] == (1 if worst_fails else 0)
    assert len({r["key"] for r in index["models"]}) == MODELS
    for row in index["models"]:  # each model's normal report, in its own folder
        folder = out / row["report_dir"]
        report = json.loads((folder / "report.json").read_text())
        validate_report(report)
        assert report["input"]["sha256"] == row["sha256"] and report["verdict"]["verdict"] == row["verdict"]
        assert {"report.html", "report.md", "report.sarif", "fleet.json"} <= {p.name for p in folder.iterdir()}
    assert [s["seconds"] for s in index["slowest"]] == sorted((s["seconds"] for s in index["slowest"]), reverse=True)
    summary = (out / "summary.md").read_text()
    assert "auditor fleet scan" in summary and "Slowest models" in summary and f"{MODELS} model(s)" in summary
    assert json.loads((out / "index.json").read_text()) == index
    sarif = json.loads((out / "report.sarif").read_text())
    assert len(sarif["runs"]) == MODELS and all(run["invocations"][0]["executionSuccessful"] for run in sarif["runs"])
    schema = json.loads(SARIF_SCHEMA.read_text())
    errors = [e.message for e in jsonschema.validators.validator_for(schema)(schema).iter_errors(sarif)]
    assert errors == []
    # progress: done / failed / remaining, the rate and the time left, as plain lines
    progress = [line for line in result.log if line.startswith("[fleet ")]
    assert progress and "0 remaining" in progress[-1] and "models/h" in progress[-1] and "ETA" in progress[-1]
    assert not list(out.rglob(".*tmp*"))


def test_rerun_skips_finished_models_and_redoes_a_changed_one(models: Path, local_run: tuple[Path, Any],
                                                               tmp_path: Path) -> None:
    first_out, first = local_run
    out = tmp_path / "out"  # a copy: this test's runs rewrite the merged files
    shutil.copytree(first_out, out)
    again = run_fleet(collect([str(models)]), out, tiny_job(), _no_backend, fail_on="backdoored", log=lambda _: None)
    assert again.skipped == MODELS and again.processed == 0
    assert _comparable(again.index) == _comparable(first.index)
    # the same file under another name is found by its hash, not its path
    copy = tmp_path / "renamed.onnx"
    copy.write_bytes((models / "a.onnx").read_bytes())
    moved = run_fleet([FleetItem(copy)], out, tiny_job(), _no_backend, fail_on="backdoored", log=lambda _: None)
    assert moved.skipped == 1 and moved.index["models"][0]["key"] == first.index["models"][0]["key"]
    # a changed file gets a new key and is redone; the others are not
    changed = tmp_path / "b.onnx"
    export(build("plain_cnn_bn", seed=7), "legacy17", changed, None)
    redone = run_fleet([FleetItem(models / "a.onnx"), FleetItem(changed)], out, tiny_job(), lambda: LocalBackend(1),
                       fail_on="never", log=lambda _: None)
    assert redone.skipped == 1 and redone.processed == 1
    assert redone.index["models"][1]["key"] != first.index["models"][1]["key"]
    assert redone.exit_code == 0  # --fail-on never
    assert json.loads((out / "index.json").read_text())["models"][1]["path"] == str(changed)


def test_the_key_follows_model_tool_and_config() -> None:
    version = {"auditor": "1", "torch": "2"}
    base = tiny_job().config({})
    key = result_key("ab" * 32, version, base)
    assert key == result_key("ab" * 32, dict(reversed(list(version.items()))), base)
    assert key != result_key("cd" * 32, version, base)
    assert key != result_key("ab" * 32, {**version, "auditor": "1.1"}, base)
    assert key != result_key("ab" * 32, version, tiny_job(seed=1).config({}))
    assert key != result_key("ab" * 32, version, tiny_job().config({"value_range": (0.0, 255.0)}))


def test_a_killed_worker_is_retried_and_a_refused_model_is_not(models: Path, tmp_path: Path) -> None:
    """The good model comes from a manifest with its own class names: the worker applies them."""
    from fleet_helpers import crash_once

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    manifest = tmp_path / "models.jsonl"
    manifest.write_text(json.dumps({"path": str(models / "a.onnx"), "spec": {"class_names": list("abcdefghij")}})
                        + "\n" + json.dumps({"path": "broken.onnx"}) + "\n")
    out = tmp_path / "out"
    lines: list[str] = []
    result = run_fleet(collect([str(manifest)]), out, tiny_job(), lambda: LocalBackend(2, worker=crash_once),
                       fail_on="never", retries=2, log=lines.append)
    good, bad = result.index["models"]
    assert good["status"] == "done" and good["attempts"] == 2
    assert any("worker killed by SIGKILL" in line and "retrying" in line for line in lines), lines
    assert bad["status"] == "failed" and bad["attempts"] == 2  # killed once, then refused: not retried again
    assert "broken.onnx" in bad["error"]
    assert result.retries == 2 and result.exit_code == 2  # a model could not be processed
    assert "Could not be processed" in (out / "summary.md").read_text()
    report = json.loads((out / good["report_dir"] / "report.json").read_text())  # not the half-written one
    validate_report(report)
    assert report["spec"]["class_names"][:2] == ["a", "b"] and report["spec"]["sources"]["class_names"] == "override"
    assert not (out / "models" / bad["key"]).exists()
    assert not list(out.rglob(".*tmp*"))


def test_a_worker_lost_on_every_attempt_fails_with_the_reason_and_leaves_nothing(models: Path,
                                                                                   tmp_path: Path) -> None:
    from fleet_helpers import always_crash

    out = tmp_path / "out"
    result = run_fleet([FleetItem(models / "a.onnx")], out, tiny_job(), lambda: LocalBackend(1, worker=always_crash),
                       fail_on="backdoored", retries=1, log=lambda _: None)
    row = result.index["models"][0]
    assert row["status"] == "failed" and result.exit_code == 2
    assert "SIGKILL" in row["error"] and "2 attempt(s)" in row["error"]
    assert not (out / "models" / row["key"]).exists()  # the half-written report was removed
    failure = json.loads((out / "failed" / f"{row['key']}.json").read_text())
    assert failure["error"] == row["error"]
    sarif = json.loads((out / "report.sarif").read_text())
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_a_hung_worker_is_killed_after_the_timeout_and_one_output_folder_has_one_coordinator(
        models: Path, tmp_path: Path) -> None:
    from fleet_helpers import hang

    from auditor.fleet import Store

    out = tmp_path / "out"
    with Store(out).lock():  # another run holds the folder
        with pytest.raises(AuditorError, match="in use by another fleet run"):
            run_fleet([FleetItem(models / "a.onnx")], out, tiny_job(), _no_backend, fail_on="never", log=print)
    result = run_fleet([FleetItem(models / "a.onnx")], out, tiny_job(), lambda: LocalBackend(1, worker=hang),
                       fail_on="never", retries=0, timeout=0.5, log=lambda _: None)
    row = result.index["models"][0]
    assert row["status"] == "failed" and "per-model timeout of 0.5 s" in row["error"] and result.exit_code == 2


def test_ray_mode_gives_the_same_merged_result_as_local_mode(models: Path, local_run: tuple[Path, Any],
                                                            tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from auditor.fleet.ray_backend import RayBackend

    local_out, local = local_run
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        result = run_fleet(collect([str(models)]), out, tiny_job(), lambda: RayBackend(cpus_per_task=1),
                           fail_on="backdoored", log=lambda _: None)
    finally:
        ray.shutdown()
    assert result.processed == MODELS
    assert _comparable(result.index) == _comparable(local.index)
    for row in result.index["models"]:
        assert _report(out, row) == _report(local_out, row)
    summary = lambda text: [line.rsplit("|", 2)[0] for line in text.splitlines() if line.startswith("| ")]  # noqa: E731
    assert summary((out / "summary.md").read_text())[:MODELS + 1] == \
        summary((local_out / "summary.md").read_text())[:MODELS + 1]


def test_inputs_folders_globs_and_manifests(models: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("# one model per line\n"
                        + json.dumps({"path": str(models / "a.onnx"), "spec": {"input_range": [0, 255]}})
                        + '\n\n{"path": "relative.onnx"}\n')
    items = collect([str(manifest), str(models / "*.onnx"), str(models)])
    names = [item.path.name for item in items]
    assert names == ["a.onnx", "relative.onnx", "b.onnx"]  # each file once, first mention wins
    assert items[0].spec_overrides == {"value_range": (0.0, 255.0)}
    assert items[1].path == tmp_path / "relative.onnx"  # relative to the manifest
    assert [i.path.name for i in collect([str(models / "**" / "*.onnx")])] == ["a.onnx", "b.onnx"]
    for bad, message in ((["missing/"], "no such file"), ([str(tmp_path / "*.nothing")], "matches no file")):
        with pytest.raises(AuditorError, match=message):
            collect(bad)
    manifest.write_text('{"path": "a.onnx", "spec": {"colour": 1}}\n')
    with pytest.raises(AuditorError, match="unknown spec field"):
        collect([str(manifest)])


def test_cli_exit_code_2_for_an_unreadable_model_and_the_ray_option_guard(models: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(json.dumps({"path": str(tmp_path / "gone.onnx")}) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["fleet", "scan", str(manifest), "-o", str(out), "--workers", "1"])
    assert result.exit_code == 2, result.output  # gone.onnx could not be read; no worker was needed
    row = json.loads((out / "index.json").read_text())["models"][0]
    assert row["status"] == "failed" and "cannot read" in row["error"]
    assert "0 done, 1 failed of 1" in result.output
    audited = CliRunner().invoke(main, ["fleet", "audit", str(manifest), "-o", str(tmp_path / "audit"),
                                        "--method", "finetune"])
    assert audited.exit_code == 2, audited.output
    assert json.loads((tmp_path / "audit" / "index.json").read_text())["command"] == "audit"
    guarded = CliRunner().invoke(main, ["fleet", "scan", "--ray", str(models), "-o", str(out)])
    assert guarded.exit_code == 2 and "read as the Ray address" in guarded.output, guarded.output


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_fleet_lines_escape_what_they_quote(capsys: pytest.CaptureFixture[str]) -> None:
    """A fleet line quotes file names and error messages: a newline or an escape sequence in them must not
    reach the terminal or split a CI log's line."""
    from auditor.fleet.engine import stderr_log

    stderr_log("fleet: /models/evil\x1b[2J\nfake: clean.onnx: failed: bad \x07 input")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\x07" not in err and "evil" in err


@pytest.mark.parametrize("cores, workers, threads, ray, expected", [
    (2, None, 1, None, 1),   # the default fleet fills both cores: detectors one after another
    (2, 2, 1, None, 1),
    (8, 2, 1, None, 4),      # cores the fleet leaves idle go to side-by-side detectors
    (8, 2, 2, None, 2),
    (8, None, 1, "local", 1),  # a Ray task declares one CPU per thread by default
])
def test_fleet_detectors_use_only_the_cores_its_workers_leave(monkeypatch, cores, workers, threads, ray, expected):
    from auditor.commands import fleet as fleet_cmd

    monkeypatch.setattr(fleet_cmd.os, "cpu_count", lambda: cores)
    opts = {"workers": workers, "ray_address": ray, "cpus_per_task": None}
    assert fleet_cmd._detector_workers(opts, threads) == expected
