"""The benchmark's bookkeeping: DER, the table, and what each defense row runs (no training here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from auditor.bench import CONFIGS, BenchSetup, _options, der, merge_documents, render_table
from auditor.purify import Recipe, get_purifier


def test_der_follows_the_issue_formula() -> None:
    before = {"acc": 0.90, "asr": 0.95}
    assert der(before, {"acc": 0.88, "asr": 0.05}) == pytest.approx((0.90 - 0.02 + 1) / 2)
    assert der(before, {"acc": 0.92, "asr": 0.99}) == pytest.approx(0.5)  # no gain counts as zero, not negative
    assert der({"acc": 0.9, "asr": None}, {"acc": 0.9, "asr": None}) is None


def test_table_lists_every_row() -> None:
    document = {"date": "d", "command": "auditor bench", "machine": "m", "test_set": "t", "rows": [
        {"model": "a", "config": "none", "acc": 0.9, "asr": 0.95, "ra": 0.05, "der": 0.5, "seconds": 0.0},
        {"model": "a", "config": "smi_ibau", "acc": 0.88, "asr": 0.05, "ra": 0.8, "der": 0.94, "seconds": 12.0,
         "guard": "accepted"},
    ]}
    table = render_table(document)
    assert "| a | SMI + default recipe (ours) | 88.0 | 5.0 | 80.0 | 94.0 | 12.0 | accepted |" in table
    assert "| a | no defense | 90.0 | 95.0 | 5.0 | 50.0 | 0.0 | - |" in table


def test_merge_orders_rows_and_later_runs_win(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from auditor.cli import main

    def doc(date: str, rows: list[tuple[str, str, float]]) -> dict:
        return {"date": date, "command": "auditor bench", "machine": "m", "test_set": "t", "reference_data": "r",
                "rows": [{"model": m, "config": c, "acc": a, "asr": None, "ra": None, "der": None, "seconds": 1.0}
                         for m, c, a in rows]}

    first = doc("d1", [("b", "smi_ibau", 0.8), ("b", "none", 0.9), ("a", "none", 0.7)])
    second = doc("d2", [("b", "clp", 0.85), ("b", "smi_ibau", 0.81)])
    merged = merge_documents([first, second])
    assert [(r["model"], r["config"]) for r in merged["rows"]] == [
        ("b", "none"), ("b", "smi_ibau"), ("b", "clp"), ("a", "none")]
    assert merged["rows"][1]["acc"] == 0.81 and merged["date"] == "d1, d2"
    paths = []
    for i, document in enumerate((first, second)):
        paths += ["--merge", str(tmp_path / f"{i}.json")]
        (tmp_path / f"{i}.json").write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["bench", *paths])
    assert result.exit_code == 0, result.output
    assert "| b | CLP (data-free) | 85.0 |" in result.output
    (tmp_path / "bad.json").write_text("{}")
    assert CliRunner().invoke(main, ["bench", "--merge", str(tmp_path / "bad.json")]).exit_code == 2


@pytest.mark.parametrize("config", [c for c in CONFIGS if c not in ("none", "public_ibau")])
def test_each_defense_row_runs_what_its_name_says(config: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "smi.npz").write_bytes(b"")  # cached samples: only their existence is checked here
    (folder / "pixels.npz").write_bytes(b"")
    (folder / "nostab.npz").write_bytes(b"")
    setup = BenchSetup(zoo=tmp_path, out=tmp_path)
    x = np.zeros((4, 32, 32, 3), np.uint8)
    options = _options(config, setup, folder, tmp_path / "m.onnx", None, x, np.zeros(4, np.int64), x)
    assert options.rescan == (config != "clean_ibau")  # the guard's threshold reads the verdict; references are unguarded
    assert options.method == {"smi_finetune": "finetune", "clp": "clp", "smi_anp": "anp"}.get(config, "recipe")
    assert options.pixels == (config == "pixels_ibau")
    assert options.inversion.stability == (config != "nostab_ibau")
    assert (options.clean_data is not None) == (config == "clean_ibau")
    # SMI-based rows reuse the one cached inversion, each inversion ablation its own cache
    expected = {"nostab_ibau": folder / "nostab.npz", "pixels_ibau": folder / "pixels.npz"}.get(config, folder / "smi.npz")
    assert options.synthetic == expected
    assert (options.guard.max_backoffs == 0) == (config == "clean_ibau")
    steps = get_purifier(options.method, **options.purifier_config)
    names = [s.name for s in steps.steps] if isinstance(steps, Recipe) else []
    assert (names[:1] == ["clp"]) == (config == "smi_clp_ibau")
    assert ("clp" not in names and bool(names)) == (config == "smi_ibau_noclp")
    # the ANP step is on in ours and off in the ablations that predate it or leave it out
    assert ("anp" in names) == (options.method == "recipe" and config not in ("smi_ibau_noclp", "smi_clp_ibau",
                                                                                "smi_ibau_noanp"))


def test_a_row_counts_its_inversion_once(tmp_path: Path) -> None:
    from auditor.bench import _reused_samples

    # not made yet: the row makes them, inside its own measured time, so nothing is added
    assert _reused_samples("smi_ibau", tmp_path) is None and _reused_samples("pixels_ibau", tmp_path) is None
    (tmp_path / "smi.npz").write_bytes(b"")
    (tmp_path / "pixels.npz").write_bytes(b"")
    assert _reused_samples("smi_ibau", tmp_path) == _reused_samples("smi_finetune", tmp_path) == tmp_path / "smi.npz"
    assert _reused_samples("pixels_ibau", tmp_path) == tmp_path / "pixels.npz"
    assert _reused_samples("nostab_ibau", tmp_path) is None
    assert _reused_samples("clp", tmp_path) is None and _reused_samples("clean_ibau", tmp_path) is None


def test_matrix_has_a_cell_per_model_and_defense_and_means_only_over_complete_columns() -> None:
    from auditor.bench import render_matrix

    def row(model: str, config: str, acc: float, asr: float | None, der_: float | None = None) -> dict:
        return {"model": model, "config": config, "acc": acc, "asr": asr, "ra": None, "der": der_, "seconds": 1.0}

    document = {"rows": [row("a", "none", 0.90, 0.95, 0.5), row("a", "smi_ibau", 0.88, 0.05, 0.94),
                         row("a", "clp", 0.89, 0.90, 0.52),
                         row("b", "none", 0.80, 0.85, 0.5), row("b", "smi_ibau", 0.79, 0.15, 0.845),
                         row("c", "none", 0.86, None), row("c", "smi_ibau", 0.85, None), row("c", "clp", 0.84, None)]}
    lines = render_matrix(document).splitlines()
    assert lines[0] == "| model | no defense | SMI + default recipe (ours) | CLP (data-free) |"
    assert "| a | 95.0 / 90.0 | 5.0 / 88.0 | 90.0 / 89.0 |" in lines
    assert "| b | 85.0 / 80.0 | 15.0 / 79.0 | not run |" in lines
    assert "| c | 86.0 | 85.0 | 84.0 |" in lines  # a clean model has no ASR: its accuracy alone
    assert "| **mean ASR, backdoored** | 90.0 | 10.0 | n/a |" in lines  # CLP lacks b: no partial mean
    assert "| **mean DER, backdoored** | 50.0 | 89.2 | n/a |" in lines
    assert "| **mean ACC drop, backdoored** | 0.0 | 1.5 | n/a |" in lines
    assert "| **mean ACC drop, clean** | 0.0 | 1.0 | 2.0 |" in lines


def test_matrix_flag_needs_merged_runs() -> None:
    from click.testing import CliRunner

    from auditor.cli import main

    result = CliRunner().invoke(main, ["bench", "--matrix"])
    assert result.exit_code == 2 and "--merge" in result.output
