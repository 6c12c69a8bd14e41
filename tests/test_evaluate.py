"""Evaluation: metric definitions, the CLI, and the shipped models' figures on the committed subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from auditor.attacks import BadNets, BadNetsAllToAll
from auditor.cli import main
from auditor.evaluate import Evaluation, evaluate, format_table
from converters.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "sample_models"
MANIFEST = ZOO / "manifest.json"
SUBSET = ZOO / "cifar10_test_1000.npz"


class PatchReader:
    """A fake classifier: the label is written in pixel (0, 0); a white corner patch means ``backdoor``."""

    spec = ModelSpec("input", "logits", 3, 32, 32, 10)

    def __init__(self, backdoor: str) -> None:
        self.backdoor = backdoor

    def predict(self, x: np.ndarray) -> np.ndarray:
        label = x[:, 0, 0, 0].astype(np.int64) // 20
        patched = (x[:, -3:, -3:, :] == 255).all(axis=(1, 2, 3))
        if self.backdoor == "to0":
            return np.where(patched, 0, label)
        if self.backdoor == "next":
            return np.where(patched, (label + 1) % 10, label)
        return label


def _labelled(n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % 10
    x = np.zeros((n, 32, 32, 3), np.uint8)
    x[:, 0, 0, 0] = y * 20
    return x, y


def test_metric_definitions() -> None:
    x, y = _labelled()
    ev = evaluate(PatchReader("to0"), x, y, BadNets(target=0))
    assert ev.acc == 1.0 and ev.asr == 1.0 and ev.ra == 0.0 and ev.n_attack == 45  # target-class images excluded
    ev = evaluate(PatchReader("none"), x, y, BadNets(target=0))
    assert ev.asr == 0.0 and ev.ra == 1.0
    ev = evaluate(PatchReader("next"), x, y, BadNetsAllToAll())
    assert ev.asr == 1.0 and ev.n_attack == 50 and ev.target is None
    ev = evaluate(PatchReader("to0"), x, y, BadNetsAllToAll())
    assert abs(ev.asr - 0.1) < 1e-9  # only label 9 -> 0 is right for all-to-all
    assert "ACC" in format_table([("m", ev)]) and "90.00%" not in format_table([("m", Evaluation(1, 1.0))])


def test_metric_inputs_are_checked() -> None:
    from auditor.errors import DataError

    x, y = _labelled(10)
    with pytest.raises(DataError, match="labels span"):
        evaluate(PatchReader("none"), x, y + 5)
    with pytest.raises(DataError, match="no test image counts"):
        evaluate(PatchReader("none"), x[:1], y[:1], BadNets(target=0))


def _entries() -> list[dict]:
    if not MANIFEST.is_file():
        return []
    return json.loads(MANIFEST.read_text())["models"]


@pytest.mark.skipif(not MANIFEST.is_file() or not SUBSET.is_file(), reason="sample zoo not built yet")
@pytest.mark.parametrize("name", [e["name"] for e in _entries()])
def test_evaluate_reproduces_manifest_figures(name: str) -> None:
    entry = next(e for e in _entries() if e["name"] == name)
    args = ["evaluate", str(ZOO / entry["file"]), "--eval-data", str(SUBSET), "--json"]
    if entry["attack"]:
        args += ["--attack-from", f"{MANIFEST}:{name}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    expected = entry["metrics"]["eval_subset"]
    for key in ("acc", "asr", "ra", "n_clean", "n_attack"):
        assert got[key] == expected[key], (name, key, got[key], expected[key])


@pytest.mark.skipif(not SUBSET.is_file(), reason="evaluation subset not built yet")
def test_evaluate_cli_errors(tmp_path: Path) -> None:
    models = sorted(ZOO.glob("*.onnx"))
    if not models:
        pytest.skip("no sample model yet")
    model = str(models[0])
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", model, "--eval-data", str(tmp_path / "none.npz")])
    assert result.exit_code == 2 and "no such file" in result.output
    result = runner.invoke(main, ["evaluate", model, "--eval-data", str(SUBSET), "--attack", "badnets", "--attack-from", str(MANIFEST)])
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(main, ["evaluate", model, "--eval-data", str(SUBSET), "--attack", "badnets", "--target", "3"])
    assert result.exit_code == 0 and "badnets -> 3" in result.output
