"""The SARIF ``auditor scan`` writes, for models whose paths hold spaces and non-ASCII characters,
validated against the SARIF 2.1.0 JSON schema with formats checked (``uri-reference`` above all:
code-scanning uploads reject a raw path with a space in it)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from auditor.cli import main
from test_scan_cli import FAST, force, tiny  # noqa: F401 (tiny is a fixture)

SCHEMA = Path(__file__).parent / "data" / "sarif" / "sarif-2.1.0-rtm.5.json"


def _validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    checker = jsonschema.FormatChecker()
    if checker.conforms("a b.onnx", "uri-reference"):
        pytest.fail("the format checker does not check uri-reference: install the test extra (rfc3986-validator)")
    return cls(schema, format_checker=checker)


def test_the_format_checker_really_checks_uri_references() -> None:
    checker = jsonschema.FormatChecker()
    assert not checker.conforms("my models/mödel.onnx", "uri-reference")
    assert checker.conforms("my%20models/m%C3%B6del.onnx", "uri-reference")


def test_sarif_of_paths_with_spaces_and_unicode_follows_the_schema(tiny: tuple[Path, Path],  # noqa: F811
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model, synth = tiny
    inside = tmp_path / "repo" / "my models" / "mödel ü #1 [v2].onnx"  # relative to the scan's folder
    outside = tmp_path / "elsewhere" / "モデル 2.onnx"  # outside it: a file: URI
    for path in (inside, outside):
        path.parent.mkdir(parents=True)
        path.write_bytes(model.read_bytes())
    monkeypatch.chdir(tmp_path / "repo")
    force(monkeypatch, "backdoored", synth=synth)
    result = CliRunner().invoke(main, ["scan", str(inside.relative_to(tmp_path / "repo")), str(outside),
                                       "--report-dir", "reports", *FAST])
    assert result.exit_code == 1, result.output
    validator = _validator()
    for sarif_path in (Path("reports/report.sarif"), Path("reports/mödel ü #1 [v2]/report.sarif")):
        sarif = json.loads(sarif_path.read_text())
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(sarif)]
        assert errors == [], errors
    combined = json.loads(Path("reports/report.sarif").read_text())
    uris = [a["location"]["uri"] for a in combined["runs"][0]["artifacts"]]
    assert uris[0] == "my%20models/m%C3%B6del%20%C3%BC%20%231%20%5Bv2%5D.onnx"
    assert uris[1] == outside.as_uri() and uris[1].startswith("file:///")
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in combined["runs"][0]["results"]} == set(uris)

    raw = json.loads(json.dumps(combined))
    raw["runs"][0]["artifacts"][0]["location"]["uri"] = "my models/mödel.onnx"
    assert any(e.validator == "format" for e in validator.iter_errors(raw)), "a raw path must fail the schema"
