"""The Python API: docs/api.md's examples run as written, the results are the reports the commands
write, and the bundled sample is found from any working directory.

The examples run on a small model with the slow stages replaced by quick stand-ins (saved samples for
the inversion, fixed detector results, a one-epoch fine-tune for the purifier): what is checked is the
API around them, which the examples exercise end to end (conversion, parity, guard, verification,
write-back, report files)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch
from click.testing import CliRunner

import auditor
import auditor.pipeline as pipeline
from auditor.inversion import SynthSet
from auditor.purify import get_purifier
from model_matrix import CLASSES, IMAGE, build, export, forced

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "api.md"


@pytest.fixture()
def quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A small model saved as suspect.onnx in a fresh working directory, with quick stand-ins for the slow
    stages; the detector verdicts come in the order the examples ask for them."""
    torch.manual_seed(0)
    export(build("resnet_block"), "legacy17", tmp_path / "suspect.onnx", None)
    g = torch.Generator().manual_seed(0)
    synth = SynthSet(torch.rand(CLASSES * 4, *IMAGE, generator=g), torch.arange(CLASSES).repeat_interleave(4),
                     summary={"method": "smi", "kept": {}, "fit": {}})
    verdicts = iter(["backdoored", "backdoored", "clean", "clean", "clean"])
    monkeypatch.setattr(pipeline, "run_detectors", lambda *a, **k: forced(next(verdicts)))
    monkeypatch.setattr(pipeline, "_synthetic_samples", lambda *a, **k: synth)
    monkeypatch.setattr(pipeline, "_fresh_samples", lambda *a, **k: synth)
    monkeypatch.setattr(pipeline, "get_purifier", lambda *a, **k: get_purifier("finetune", epochs=1))
    monkeypatch.setattr(pipeline, "_prior_samples", lambda classifier, options, count, seed: (
        torch.rand(min(count, 40), *IMAGE, generator=torch.Generator().manual_seed(seed)) if count else None))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(threads)  # scan sets torch's threads, as the command does


def test_the_documented_surface_is_exported() -> None:
    assert {"audit", "scan", "inspect", "AuditOptions", "ScanOptions"} <= set(auditor.__all__)
    for name in auditor.__all__:
        assert getattr(auditor, name) is not None


def test_import_auditor_does_not_import_torch() -> None:
    """The command line and a library user pay for torch only when a function runs."""
    code = "import sys, auditor; assert 'torch' not in sys.modules, 'torch imported'; auditor.AuditOptions()"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_docs_examples_run(quick: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), namespace)  # noqa: S102 - the page's own examples
    out = capsys.readouterr().out
    assert "backdoored score 4.00 targets [3]" in out and "fails the gate; `auditor scan` would exit 1" in out
    assert "original: backdoored | purified: clean | passes: True" in out
    assert "failed: none" in out and "parity ok: True" in out
    assert (quick / "clean.onnx").is_file() and (quick / "reports" / "suspect" / "report.json").is_file()
    assert json.loads((quick / "audit-suspect" / "report.json").read_text()) == namespace["report"]


def test_audit_with_no_model_finds_the_bundled_sample_from_any_directory(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the repository root, `auditor audit` with no MODEL audits the packaged sample and measures it on the
    packaged subset under the manifest's attack (the audit itself is stubbed: the resolution is what is tested)."""
    from auditor.cli import main
    from auditor.samples import EVAL_SUBSET, SAMPLE_MODEL, default_sample

    monkeypatch.chdir(tmp_path)
    model, subset, manifest = default_sample()
    assert model.name == SAMPLE_MODEL and subset.name == EVAL_SUBSET and manifest.is_file()
    assert model.resolve().parent == subset.resolve().parent == manifest.resolve().parent
    calls = {}

    def fake_audit(model_path, output, report_dir, config, evaluator=None, **_):
        calls.update(model=model_path, output=output, report_dir=report_dir, evaluator=evaluator)
        report = {"verdict": {"verdict": "backdoored", "purified": "clean"}, "purification": {"status": "accepted"}}
        return pipeline.AuditResult(report=report, output=output, report_dir=report_dir)

    monkeypatch.setattr(pipeline, "audit", fake_audit)
    result = CliRunner().invoke(main, ["audit", "--json"])
    assert result.exit_code == 0, result.output
    assert calls["model"] == model and calls["report_dir"] == Path("audit-cifar10_badnets")
    assert calls["output"] == Path("audit-cifar10_badnets") / "cifar10_badnets.purified.onnx"
    assert calls["evaluator"] is not None  # the subset and the manifest's BadNets attack were found
    assert json.loads(result.stdout)["verdict"]["purified"] == "clean"


def test_options_refuse_a_bad_choice_when_made() -> None:
    from auditor.errors import AuditorError

    with pytest.raises(AuditorError, match="fail_on must be one of"):
        auditor.ScanOptions(fail_on="sometimes")
    with pytest.raises(AuditorError, match="device must be one of"):
        auditor.AuditOptions(device="tpu")
    with pytest.raises(AuditorError, match="unknown detector nope"):
        auditor.ScanOptions(detectors=("nope",)).config()
