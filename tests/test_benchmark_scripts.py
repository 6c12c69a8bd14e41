"""The benchmark scripts' own logic (their measurements are committed runs, not tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smi_stability():
    return _script("smi_stability")


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
