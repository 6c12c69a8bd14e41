"""benchmarks/results_table.py renders the README's one results table from committed JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results_table():
    return load_script("results_table")


def _draw(model: str, seed: int, acc_after: float, asr_after: float | None, purified: str, seconds: float) -> dict:
    asr_before = None if asr_after is None else 0.9
    return {"model": model, "seed": seed, "threads": 1, "seconds": seconds, "purified": purified,
            "before": {"acc": 0.9, "asr": asr_before, "data": "runs/cifar10_test.npz"},
            "after": {"acc": acc_after, "asr": asr_after, "data": "runs/cifar10_test.npz"}}


CATALOGUE = {"bd": ("held-apart", "vgg", "badnets"), "ok": ("zoo", "resnet", None)}


def test_readme_block_is_the_scripts_output(results_table) -> None:
    readme = (ROOT / "README.md").read_text()
    assert load_script("markers").block(readme, results_table.BEGIN, results_table.END) == results_table.render(*results_table.load_sources())
    assert results_table.main(["--check", str(ROOT / "README.md")]) == 0


def test_every_committed_audit_has_a_row_under_its_default(results_table) -> None:
    documents, earlier, profile = results_table.load_sources()
    table = results_table.render(documents, earlier, profile)
    for document in documents:
        for run in document["rows"]:
            assert f"| {run['model']} |" in table and "| current |" in table
    for row in earlier["rows"]:
        assert any(line.startswith(f"| {row['model']} |") and "| earlier |" in line for line in table.splitlines())
    assert f"{profile['timings']['total']:.0f} s" in table


def test_a_row_keeps_the_worst_draw(results_table) -> None:
    documents = [{"rows": [_draw("bd", 0, 0.85, 0.02, "clean", 100.0), _draw("bd", 1, 0.80, 0.40, "backdoored", 300.0),
                           _draw("ok", 0, 0.88, None, "clean", 50.0)]}]
    rows = {r.model: r for r in results_table.current_rows(documents, CATALOGUE)}
    bd = rows["bd"]
    assert (bd.draws, bd.acc_after_worst, bd.asr_after_worst, bd.verified_clean, bd.wall_s_max) == (
        2, pytest.approx(80.0), pytest.approx(40.0), 1, 300.0)
    assert rows["ok"].asr_after_worst is None and rows["ok"].split == "zoo"
    assert [r.model for r in results_table.current_rows(documents, CATALOGUE)] == ["ok", "bd"]  # zoo first
    lines = results_table.summary(list(rows.values()))
    held_apart = next(line for line in lines if "held-apart" in line)
    assert "removed (ASR ≤ 10% on every draw) in 0 of 1 models; worst ASR after 40.0% (bd)" in held_apart
    assert "worst accuracy drop 10.0 points (bd)" in held_apart
    assert "clean models verified clean on 1 of 1 draws" in next(line for line in lines if "zoo" in line)


def test_write_then_check_round_trips(results_table, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# t\n\n{results_table.BEGIN}\nold table\n{results_table.END}\n\nafter\n")
    assert results_table.main(["--check", str(page)]) == 1
    assert results_table.main(["--write", str(page)]) == 0
    assert results_table.main(["--check", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# t\n\n") and text.endswith(f"{results_table.END}\n\nafter\n")
    assert "old table" not in text


def test_help_runs(results_table, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        results_table.main(["--help"])
    assert exit_info.value.code == 0
    assert "--check" in capsys.readouterr().out
