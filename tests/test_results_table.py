"""benchmarks/results_table.py renders the README's results table from committed JSON."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results_table():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "benchmarks" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(results_table):
    return json.loads(results_table.DEFAULT_JSON.read_text())


def test_readme_table_is_the_scripts_output(results_table, data):
    readme = (ROOT / "README.md").read_text()
    assert results_table.current_block(readme) == results_table.render(data)
    assert results_table.main(["--check", str(ROOT / "README.md")]) == 0


def test_committed_means_agree_with_the_rows(results_table, data):
    assert results_table.check_means(data) == []


def test_every_figure_says_where_it_came_from(data):
    assert data["commands"] and data["date"] and data["machine"]
    assert all(row["source"] for row in data["rows"])
    assert all(item["source"] for item in data["not_in_table"])


def test_render_prints_a_row_per_model_and_the_means(results_table, data, capsys):
    assert results_table.main(["--data", str(results_table.DEFAULT_JSON)]) == 0
    out = capsys.readouterr().out
    for row in data["rows"]:
        assert f"| {row['model']} |" in out
    assert "| cifar10_sig | SIG | 85.1 → 81.8 | 88.7 → 0.2 | 92.6 | backdoored → clean | 547 |" in out
    assert "| cifar10_clean_b | none (clean) | 86.9 → 85.9 | - | - | suspicious → clean | 416 |" in out
    assert "| **mean, backdoored** | | drop 2.8 | after 3.7 | 92.3 | | |" in out


def test_a_wrong_mean_is_refused(results_table, data, tmp_path, capsys):
    bad = copy.deepcopy(data)
    bad["means"]["asr_after_backdoored"] = 5.0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert results_table.main(["--data", str(path)]) == 1
    assert "asr_after_backdoored" in capsys.readouterr().err


def test_write_then_check_round_trips(results_table, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"# t\n\n{results_table.BEGIN}\nold table\n{results_table.END}\n\nafter\n")
    assert results_table.main(["--check", str(page)]) == 1
    assert results_table.main(["--write", str(page)]) == 0
    assert results_table.main(["--check", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# t\n\n") and text.endswith(f"{results_table.END}\n\nafter\n")
    assert "old table" not in text


def test_help_runs(results_table, capsys):
    with pytest.raises(SystemExit) as exit_info:
        results_table.main(["--help"])
    assert exit_info.value.code == 0
    assert "--check" in capsys.readouterr().out
