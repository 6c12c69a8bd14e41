"""``auditor inspect`` on bad inputs: one clear message, exit code 2, no traceback, input untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from auditor.cli import main


def _conv_model(
    inputs: list[onnx.ValueInfoProto] | None = None,
    weight: np.ndarray | None = None,
    extra_nodes: list[onnx.NodeProto] | None = None,
    output: str = "logits",
    opset: int = 17,
) -> onnx.ModelProto:
    weight = weight if weight is not None else np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["logits"]),
        *(extra_nodes or []),
    ]
    graph = helper.make_graph(
        nodes, "g",
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["inspect", *args])
    return result.exit_code, result.output


def _bad_models(tmp: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (file, extra CLI args, expected message fragment)."""
    good = _save(_conv_model(), tmp / "good.onnx")
    cases: dict[str, tuple[Path, list[str], str]] = {}

    truncated = tmp / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:150])
    cases["truncated"] = (truncated, [], "not a readable ONNX file")

    text = tmp / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    cases["not_onnx"] = (text, [], "not")

    two_inputs = _conv_model(inputs=[
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]),
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8]),
    ])
    cases["several_inputs"] = (_save(two_inputs, tmp / "two_inputs.onnx"), [], "2 inputs ('x', 'y')")

    tabular = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["logits"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
            [numpy_helper.from_array(np.ones((16, 4), np.float32), "w")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    cases["non_image_input"] = (_save(tabular, tmp / "tabular.onnx"), [], "rank 2")

    integer = helper.make_model(
        helper.make_graph(
            [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Conv", ["xf", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 3, 8, 8])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
            [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    cases["integer_input"] = (_save(integer, tmp / "uint8.onnx"), [], "element type UINT8")

    hardmax = _conv_model(extra_nodes=[helper.make_node("Hardmax", ["logits"], ["scores"], name="the_hardmax")],
                          output="scores")
    cases["unconvertible_operator"] = (_save(hardmax, tmp / "hardmax.onnx"), [], "operator Hardmax")

    outside = _conv_model()
    outside_dir = tmp / "outside"
    outside_dir.mkdir()
    onnx.save(outside, str(outside_dir / "tmp.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    escaped = onnx.load(str(outside_dir / "tmp.onnx"), load_external_data=False)
    for init in escaped.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    (tmp / "weights.bin").write_bytes((outside_dir / "weights.bin").read_bytes())
    cases["external_data_outside"] = (_save(escaped, outside_dir / "escaped.onnx"), [], "outside the model's folder")

    cases["too_large"] = (good, ["--max-model-mb", "0.0001"], "more than the limit of 104 bytes (raise it with --max-model-mb)")

    nan_weights = np.ones((4, 3, 3, 3), np.float32)
    nan_weights[0, 0, 0, 0] = np.nan
    nan_weights[1, 0, 0, 0] = np.inf
    cases["nan_weights"] = (_save(_conv_model(weight=nan_weights), tmp / "nan.onnx"), [], "2 NaN/Inf values")
    return cases


CASE_NAMES = ["truncated", "not_onnx", "several_inputs", "non_image_input", "integer_input", "unconvertible_operator",
              "external_data_outside", "too_large", "nan_weights"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_exits_2_with_one_clear_message(name: str, tmp_path: Path) -> None:
    path, args, fragment = _bad_models(tmp_path)[name]
    before = path.read_bytes()
    code, output = _run(str(path), *args)
    assert code == 2, output
    assert fragment in output, output
    assert "Traceback" not in output
    assert output.strip().count("\n") == 0, "expected one line"
    assert output.startswith("error: ")
    assert path.read_bytes() == before


def test_unconvertible_operator_names_the_node(tmp_path: Path) -> None:
    path, _, _ = _bad_models(tmp_path)["unconvertible_operator"]
    code, output = _run(str(path))
    assert code == 2 and "node 'the_hardmax'" in output


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    path, _, _ = _bad_models(tmp_path)["nan_weights"]
    result = CliRunner().invoke(main, ["--debug", "inspect", str(path)])
    assert result.exit_code != 0 and result.exception is not None


def test_missing_file(tmp_path: Path) -> None:
    code, output = _run(str(tmp_path / "nope.onnx"))
    assert code == 2 and "no such file" in output


def test_good_model_inspects(tmp_path: Path) -> None:
    path = _save(_conv_model(), tmp_path / "good.onnx")
    code, output = _run(str(path), "--json")
    assert code == 0, output
    import json

    report = json.loads(output)
    assert report["spec"]["num_classes"] == 4
    assert report["conversion_parity"]["ok"] and report["write_back_parity"]["ok"]
    assert report["parameters"]["trainable"] == 4 * 3 * 3 * 3
