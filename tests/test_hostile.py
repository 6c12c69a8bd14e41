"""Hostile models and the outputs reviewers read: resource limits checked before allocation, model-derived
text escaped in every format, no debris after a failure, inputs never overwritten, CI-facing formats."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import auditor.pipeline as pipeline
from auditor.cli import main
from test_bad_input import _conv_model, _save
from test_scan_cli import FAST, force, tiny  # noqa: F401 (tiny is a fixture)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    # an old spelling's deprecation warning may come first; the error itself is one line
    lines = [line for line in result.output.strip().splitlines()
             if not (line.startswith("warning: ") and "deprecated" in line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


# -- 1. resource limits ----------------------------------------------------------------------------


def _external_model(folder: Path, out_channels: int = 27778, padding: int = 0) -> Path:
    """A small .onnx whose Conv weight (``out_channels`` x 3 x 3 x 3 float32: 3 MB by default) is external
    data, named without a ``length`` (onnx then reads to the end of the file); ``padding`` bytes follow it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "small.onnx"
    weight = np.zeros((out_channels, 3, 3, 3), np.float32)
    onnx.save(_conv_model(weight=weight), str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    with open(folder / "w.bin", "ab") as handle:
        handle.write(b"\0" * padding)
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        kept = [(e.key, e.value) for e in tensor.external_data if e.key != "length"]
        del tensor.external_data[:]
        for key, value in kept:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_a, **_k):
        raise AssertionError("external data was read before the limits were checked")

    monkeypatch.setattr("onnx.external_data_helper.load_external_data_for_tensor", never)


def test_max_model_mb_counts_external_data_and_reads_none_of_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = _external_model(tmp_path / "m")
    assert path.stat().st_size < 2000
    _never_read(monkeypatch)
    result = _invoke("inspect", str(path), "--max-model-mb", "1", "--no-parity")
    _one_error_line(result, "with its external data is 2.9 MB", "1.0 MB", "--max-model-mb")


def test_external_data_named_many_times_counts_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several tensors pointing at one external file would each read it: each counts."""
    path = _external_model(tmp_path / "m", out_channels=3704)  # 400 kB
    model = onnx.load(str(path), load_external_data=False)
    weight = model.graph.initializer[0]
    for k in range(3):
        copy = model.graph.initializer.add()
        copy.CopyFrom(weight)
        copy.name = f"w{k}"
    onnx.save(model, str(path))
    _never_read(monkeypatch)
    result = _invoke("inspect", str(path), "--max-model-mb", "1", "--no-parity")
    _one_error_line(result, "with its external data is 1.5 MB", "--max-model-mb")


def test_external_data_larger_than_its_tensor_is_refused_unread(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A 432-byte weight whose external file runs on for 3 MB (or 16 GB, sparse): onnx would read it all."""
    path = _external_model(tmp_path / "m", out_channels=4, padding=3_000_000)
    _never_read(monkeypatch)
    _one_error_line(_invoke("inspect", str(path), "--no-parity"),
                    "tensor 'w' would read 3,000,432 bytes of external data; its shape and type declare 432")


@pytest.mark.parametrize("value", ["0", "nan", "-1", "inf", "many"])
def test_max_model_mb_must_be_a_positive_number(value: str, tmp_path: Path) -> None:
    path = _save(_conv_model(), tmp_path / "good.onnx")
    _one_error_line(_invoke("inspect", str(path), "--max-model-mb", value), "--max-model-mb", "above 0")


@pytest.mark.parametrize("parity", [[], ["--no-parity"]])
def test_a_huge_declared_input_is_refused_before_anything_is_allocated(parity: list[str], tmp_path: Path) -> None:
    path = _save(_conv_model(inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 100000, 100000])]),
                 tmp_path / "huge.onnx")
    started = time.perf_counter()
    result = _invoke("inspect", str(path), *parity)
    _one_error_line(result, "30,000,000,000 elements", "1x3x100000x100000", "--max-tensor-elements")
    assert time.perf_counter() - started < 10


def _chain(length: int) -> onnx.ModelProto:
    """Conv, then ``length`` Relu nodes in a row, then pooling: deep but tiny."""
    model = _conv_model()
    graph = model.graph
    flatten = graph.node[2]
    del graph.node[2]
    previous = "p"
    for k in range(length):
        graph.node.append(helper.make_node("Relu", [previous], [f"r{k}"]))
        previous = f"r{k}"
    flatten.input[0] = previous
    graph.node.append(flatten)
    return model


@pytest.mark.parametrize("option, value, fragment", [
    ("--max-tensor-elements", "100", "input 'x' declares 192 elements (Nx3x8x8)"),
    ("--max-parameters", "50", "the weights declare 108 parameters"),
    ("--max-nodes", "10", "the graph has 23 nodes"),
    ("--max-graph-depth", "10", "the graph is 23 nodes deep"),
])
def test_each_limit_names_itself_and_its_option(option: str, value: str, fragment: str, tmp_path: Path) -> None:
    path = _save(_chain(20), tmp_path / "deep.onnx")
    _one_error_line(_invoke("inspect", str(path), option, value, "--no-parity"), fragment,
                    f"more than the limit of {int(value):,}", f"(raise it with {option})")
    assert _invoke("inspect", str(path), "--no-parity").exit_code == 0


def test_a_cycle_is_refused(tmp_path: Path) -> None:
    model = _conv_model()
    model.graph.node.append(helper.make_node("Relu", ["loop_b"], ["loop_a"]))
    model.graph.node.append(helper.make_node("Relu", ["loop_a"], ["loop_b"]))
    _one_error_line(_invoke("inspect", str(_save(model, tmp_path / "cycle.onnx")), "--no-parity"), "cycle")


def test_an_intermediate_tensor_inferred_huge_is_refused(tmp_path: Path) -> None:
    """A Conv with 40,000 output channels on a 1x3x128x128 input: small weights, a 676M-element activation (padding 1)."""
    weight = np.zeros((40000, 3, 1, 1), np.float32)
    model = _conv_model(weight=weight, inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 128, 128])])
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 40000]))
    _one_error_line(_invoke("inspect", str(_save(model, tmp_path / "wide.onnx")), "--no-parity"),
                    "tensor 'c' declares 676,000,000 elements (1x40000x130x130)", "--max-tensor-elements")


# -- 2. model-derived text in every output -------------------------------------------------------

EVIL = [
    "cat\n### auditor: ✅ clean",
    "[click me](https://evil.com/x)",
    "<img src=x onerror=alert(1)>",
    "\x1b[31mred\x1b[0m\x07",
    "*bold* _it_ `code` | pipe \\",
    "www.evil.com https://evil.com/y",
    "<!-- hidden -->&lt;b&gt;",
    "# heading\r\n- item",
    "![img](https://evil.com/i.png)",
    "\u202eevil\u202c",
]


def _markdown_tokens(text: str):
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("gfm-like").parse(text)
    return tokens, [child for token in tokens for child in (token.children or [])]


def test_escape_markdown_renders_exactly_the_text() -> None:
    from auditor.report import escape

    for name in EVIL:
        tokens, inline = _markdown_tokens(f"| a | {escape.markdown(name)} |\n|---|---|\n| {escape.markdown(name)} | b |")
        types = {t.type for t in tokens} | {t.type for t in inline}
        assert not types & {"heading_open", "link_open", "image", "html_inline", "html_block", "code_inline",
                            "em_open", "strong_open", "bullet_list_open"}, (name, types)
        assert sum(t.type == "td_open" for t in tokens) == 2 and sum(t.type == "th_open" for t in tokens) == 2
        cells = [t.content for t in tokens if t.type == "inline"]
        assert cells[1] and "".join(c.content for c in _markdown_tokens(escape.markdown(name))[1]) == \
            escape.one_line(name)


def test_escape_console_and_sarif() -> None:
    from auditor.report import escape

    for name in EVIL:
        for text in (escape.console(name), escape.sarif_text(name)):
            assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\x07" not in text
            assert "\u202e" not in text
    assert escape.console("\x1b[31mred\x1b[0m") == "red"
    assert escape.sarif_text("[a](1) \\") == "\\[a\\](1) \\\\"
    assert escape.html("<b a='1'>&") == "&lt;b a=&#x27;1&#x27;&gt;&amp;"


def _evil_copy(model: Path, folder: Path, names: list[str]) -> Path:
    loaded = onnx.load(str(model))
    for prop in list(loaded.metadata_props):
        if prop.key in ("class_names", "labels"):
            loaded.metadata_props.remove(prop)
    helper.set_model_props(loaded, {"class_names": json.dumps(names), "producer_note": "\x1b]0;title\x07x\ny"})
    loaded.producer_name = "evil\n# producer"
    for index, node in enumerate(loaded.graph.node):
        node.name = f"node{index}\x1b[2J\n## fake \"'"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mödel [x](https:evil.com) #1.onnx"
    onnx.save(loaded, str(path))
    return path


def test_crafted_names_stay_text_in_every_format(tiny: tuple[Path, Path], tmp_path: Path,  # noqa: F811
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model, synth = tiny
    from model_matrix import CLASSES

    from auditor.report import escape

    names = [EVIL[k % len(EVIL)] + ("" if k < len(EVIL) else f" {k}") for k in range(CLASSES)]
    evil = _evil_copy(model, tmp_path / "in", names)
    force(monkeypatch, "backdoored")  # target class 3: its name is '<img ...' escaped everywhere
    out = tmp_path / "r"
    result = _invoke("scan", str(evil), "--synthetic", str(synth), "--report-dir", str(out), *FAST)
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output

    summary = (out / "summary.md").read_text()
    tokens, inline = _markdown_tokens(summary)
    assert [t for t in tokens if t.type == "heading_open"] == [tokens[0]]
    assert tokens[1].content == "auditor: ❌ backdoored"
    assert not {t.type for t in inline} & {"link_open", "image", "html_inline"}
    assert not {t.type for t in tokens} & {"html_block"}
    assert sum(t.type == "tr_open" for t in tokens) == 2  # the head and one model
    assert "3 (" + escape.markdown(names[3], 80) + ")" in summary

    report_md = (out / "report.md").read_text()
    tokens, inline = _markdown_tokens(report_md)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["auditor scan report", "Synthetic samples (stabilized model inversion)", "Detection per class",
                        "Time per stage"]
    assert not {t.type for t in inline} & {"link_open", "html_inline"}
    assert {t.attrs.get("src") for t in inline if t.type == "image"} == {"synthetic_samples.png", "triggers.png"}
    assert not {t.type for t in tokens} & {"html_block"}

    html = (out / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "\x1b" not in html

    sarif = json.loads((out / "report.sarif").read_text())
    message = sarif["runs"][0]["results"][0]["message"]
    assert "\n" not in message["text"] and "\\[x\\](https:evil.com)" in message["text"]
    _, inline = _markdown_tokens(message["markdown"])
    assert not {t.type for t in inline} & {"link_open", "html_inline", "image"}

    shown = _invoke("inspect", str(evil), "--no-parity")
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\x07" not in shown.output and "\u202e" not in shown.output
    assert not any(line.startswith(("#", "- item", "## fake")) for line in shown.output.splitlines())


def test_error_messages_quote_names_on_one_line(tmp_path: Path) -> None:
    model = _conv_model()
    model.graph.initializer[0].name = "w\x1b[2J\n### injected"
    model.graph.node[0].input[1] = model.graph.initializer[0].name
    weights = numpy_helper.to_array(model.graph.initializer[0]).copy()
    weights[0, 0, 0, 0] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weights, model.graph.initializer[0].name))
    result = _invoke("inspect", str(_save(model, tmp_path / "nan.onnx")))
    _one_error_line(result, "NaN/Inf")
    assert "\x1b" not in result.output


# -- 3. outputs checked up front; nothing new after a failure -------------------------------------


@pytest.mark.parametrize("options,fragment", [
    (("--method", "patch,sideways"), "unknown purifier 'patch,sideways'"),
    (("--purifier-option", "nope=1"), "option 'nope': no step of the recipe"),
    (("--method", "ibau", "--purifier-option", "patch.epochs=1"), "step 'patch' is not in the recipe"),
])
def test_a_bad_purifier_fails_before_any_work(tiny: tuple[Path, Path], tmp_path: Path,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch, options, fragment) -> None:
    model, synth = tiny
    monkeypatch.setattr(pipeline, "_convert_checked", lambda *a, **k: pytest.fail("work started"))
    result = _invoke("purify", str(model), "-o", str(tmp_path / "out.onnx"), "--synthetic", str(synth), *options)
    _one_error_line(result, fragment)
    assert not (tmp_path / "out.onnx").exists()


def test_purify_to_an_unwritable_folder_fails_before_any_work(tiny: tuple[Path, Path],  # noqa: F811
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, synth = tiny
    monkeypatch.setattr(pipeline, "_convert_checked", lambda *a, **k: pytest.fail("work started"))
    report = tmp_path / "report"
    result = _invoke("purify", str(model), "-o", "/proc/auditor-test/out.onnx", "--report-dir", str(report),
                     "--synthetic", str(synth))
    _one_error_line(result, "cannot write in /proc")
    result = _invoke("purify", str(model), "-o", str(tmp_path / "out.onnx"), "--report-dir", "/proc/auditor/r",
                     "--synthetic", str(synth))
    _one_error_line(result, "--report-dir", "cannot write in /proc")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_invert_into_a_missing_folder_fails_before_any_work(tiny: tuple[Path, Path], tmp_path: Path,  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = tiny
    monkeypatch.setattr("auditor.commands.invert.load_model_from_options", lambda *a, **k: pytest.fail("work started"))
    result = _invoke("invert", str(model), "-o", str(tmp_path / "s.npz"), "--grid", str(tmp_path / "missing" / "g.png"))
    _one_error_line(result, "--grid", "does not exist")
    result = _invoke("invert", str(model), "-o", str(tmp_path / "s.npz"), "--summary", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.output  # click's own check
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_leaves_nothing(tiny: tuple[Path, Path], tmp_path: Path,  # noqa: F811
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The images and the first report files are written, then the summary fails: none of them stays."""
    model, synth = tiny
    force(monkeypatch, "backdoored")

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("auditor.report.render_summary", broken)
    out = tmp_path / "new" / "r"
    result = _invoke("scan", str(model), "--synthetic", str(synth), "--report-dir", str(out), *FAST)
    assert result.exit_code == 2 and "disk full" in result.output
    assert not (tmp_path / "new").exists()


def test_a_failed_audit_leaves_neither_model_nor_report(tiny: tuple[Path, Path], tmp_path: Path,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    model, synth = tiny
    force(monkeypatch, "backdoored", "clean", synth=synth)

    def broken(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr("auditor.report.render_html", broken)
    (tmp_path / "r").mkdir()
    result = _invoke("audit", str(model), "-o", str(tmp_path / "clean.onnx"), "--report-dir", str(tmp_path / "r"),
                     "--method", "clp", "--nc-steps", "4")  # data-free CLP: the quickest audit that reaches the report
    assert result.exit_code == 130, result.output
    assert list(tmp_path.iterdir()) == [tmp_path / "r"] and list((tmp_path / "r").iterdir()) == []


# -- 4. the input is never destroyed ---------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_invert_refuses_to_write_over_its_input(extra: list[str], tiny: tuple[Path, Path],  # noqa: F811
                                                tmp_path: Path) -> None:
    model, _ = tiny
    copy = tmp_path / "model.onnx"
    copy.write_bytes(model.read_bytes())
    result = _invoke("invert", str(copy), "-o", str(copy), *extra)
    _one_error_line(result, "is the input")
    assert copy.read_bytes() == model.read_bytes()


def test_invert_refuses_an_output_that_is_not_npz(tiny: tuple[Path, Path], tmp_path: Path) -> None:  # noqa: F811
    model, _ = tiny
    _one_error_line(_invoke("invert", str(model), "-o", str(tmp_path / "x.json")), "-o", ".npz")
    _one_error_line(_invoke("invert", str(model), "-o", str(tmp_path / "x.npz"), "--summary", str(tmp_path / "x.npz")),
                    "same file")
    assert list(tmp_path.iterdir()) == []


# -- 5. CI formats ---------------------------------------------------------------------------------


def test_sarif_uris_are_percent_encoded(tmp_path: Path) -> None:
    from auditor.report.sarif import artifact_uri

    assert artifact_uri("models/my model/mödel.onnx", Path.cwd()) == "models/my%20model/m%C3%B6del.onnx"
    assert artifact_uri("a:b.onnx", None) == "a%3Ab.onnx"  # not a scheme
    outside = tmp_path / "dir #1" / "ü.onnx"
    assert artifact_uri(str(outside), tmp_path / "elsewhere") == outside.as_uri()
    assert outside.as_uri().startswith("file:///") and " " not in outside.as_uri()


def test_a_scan_error_names_the_path_once(tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    result = _invoke("scan", str(missing), str(broken), *FAST)
    assert result.exit_code == 2
    for path in (missing, broken):
        line = next(line for line in result.output.splitlines() if str(path) in line)
        assert line.count(str(path)) == 1, line


def test_combined_reports_are_not_overwritten_without_overwrite(tiny: tuple[Path, Path], tmp_path: Path,  # noqa: F811
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model, synth = tiny
    other = tmp_path / "other" / "second.onnx"
    other.parent.mkdir()
    other.write_bytes(model.read_bytes())
    out = tmp_path / "reports"
    out.mkdir()
    (out / "summary.md").write_text("mine")
    monkeypatch.setattr(pipeline, "_convert_checked", lambda *a, **k: pytest.fail("work started"))
    result = _invoke("scan", str(model), str(other), "--report-dir", str(out), *FAST)
    _one_error_line(result, "summary.md exists", "--overwrite")
    assert (out / "summary.md").read_text() == "mine" and not (out / "report.sarif").exists()
    monkeypatch.undo()
    force(monkeypatch, "clean", synth=synth)
    result = _invoke("scan", str(model), str(other), "--report-dir", str(out), "--overwrite", *FAST)
    assert result.exit_code == 0, result.output
    assert "clean" in (out / "summary.md").read_text()


def test_an_interrupt_exits_130_and_ci_docs_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr("auditor.api.inspect", interrupted)
    result = _invoke("inspect", str(_save(_conv_model(), tmp_path / "m.onnx")))
    assert result.exit_code == 130 and result.output.strip() == "interrupted"
    assert "| 130 |" in (DOCS / "ci.md").read_text()


def test_sigterm_exits_143_and_discards_what_was_staged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancelled or timed-out CI job sends SIGTERM: the command unwinds as on Ctrl-C, with its own code."""
    import os
    import signal

    def terminated(*_a, **_k):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr("auditor.api.inspect", terminated)
    before = signal.getsignal(signal.SIGTERM)
    result = _invoke("inspect", str(_save(_conv_model(), tmp_path / "m.onnx")))
    assert result.exit_code == 143 and result.output.strip() == "terminated"
    assert signal.getsignal(signal.SIGTERM) == before, "the handler outlived the command"
    assert "| 143 |" in (DOCS / "ci.md").read_text()

    from auditor.cli import Terminated
    from auditor.report.files import Staging

    with pytest.raises(Terminated), Staging() as staging:
        staging.folder(tmp_path / "out")
        staging.write_text(tmp_path / "out" / "report.json", "{}")
        raise Terminated()
    assert not (tmp_path / "out").exists()


def test_generator_sample_refuses_to_write_over_the_model_it_reads(tmp_path: Path) -> None:
    model = _save(_conv_model(), tmp_path / "m.onnx")
    before = model.read_bytes()
    _one_error_line(_invoke("generator", "sample", str(model), "--n", "2", "-o", str(model)), "is the input")
    assert model.read_bytes() == before


def test_staging_removes_its_files_and_the_folders_it_made(tmp_path: Path) -> None:
    from auditor.report.files import Staging

    (tmp_path / "old.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with Staging() as staging:
            staging.write_text(tmp_path / "old.txt", "new")
            staging.write_text(tmp_path / "a" / "b" / "c.txt", "x")
            np.savez(staging.path(tmp_path / "a" / "t.npz"), x=np.zeros(2))
            raise RuntimeError("late failure")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]
    assert (tmp_path / "old.txt").read_text() == "kept"
    with Staging() as staging:
        staging.write_text(tmp_path / "old.txt", "new")
        assert (tmp_path / "old.txt").read_text() == "kept"  # nothing moves before the end
    assert (tmp_path / "old.txt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]


def test_library_warnings_do_not_add_lines_to_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the fuzzer: torch's UserWarning on a zero-sized weight came before the one error line."""
    import warnings

    from converters.errors import ModelError

    def noisy(*_a, **_k):
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning)
        raise ModelError("conversion failed")

    monkeypatch.setattr("auditor.api.inspect", noisy)
    _one_error_line(_invoke("inspect", str(_save(_conv_model(), tmp_path / "m.onnx"))), "conversion failed")
