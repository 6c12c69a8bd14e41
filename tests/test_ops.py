"""Numeric parity of the converters in ``converters.ops`` with onnxruntime.

Every case builds a tiny ONNX model with ``onnx.helper`` at the opset under test, converts it
with onnx2torch (after ``converters.ops`` registered our converters) and compares every output
with onnxruntime's CPU provider to 1e-5 max abs (exactly for bool/int outputs).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pytest
import torch

import converters.ops as ops  # registers the converters (and imports onnx2torch safely)
from converters._compat import import_onnx2torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

onnx2torch = import_onnx2torch()

TOL = 1e-5
RNG = np.random.default_rng(0)
NCHW = (2, 3, 8, 8)


def _rand(shape: tuple[int, ...] = NCHW, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    return RNG.uniform(low, high, size=shape).astype(np.float32)


@dataclass
class Case:
    """One small model: nodes, graph inputs (name -> array), constant initializers, outputs."""

    nodes: list[Any]
    inputs: dict[str, np.ndarray]
    outputs: list[str] = field(default_factory=lambda: ["y"])
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 18

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "case",
            [
                helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                for name, value in self.inputs.items()
            ],
            [helper.make_empty_tensor_value_info(name) for name in self.outputs],
            [numpy_helper.from_array(value, name) for name, value in self.initializers.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 10 if self.opset >= 21 else 8
        return model


def _node(op: str, inputs: list[str], outputs: Optional[list[str]] = None, **attrs: Any) -> Any:
    return helper.make_node(op, inputs, outputs or ["y"], name=f"the_{op.lower()}", **attrs)


def _as_list(result: Any) -> list[torch.Tensor]:
    if isinstance(result, (list, tuple)):
        return [item for part in result for item in _as_list(part)]
    return [result]


def assert_parity(case: Case) -> None:
    """Convert ``case`` and compare all outputs with onnxruntime."""
    model = case.model()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, case.inputs)
    module = onnx2torch.convert(model).eval()
    with torch.no_grad():
        actual = _as_list(module(*[torch.from_numpy(value) for value in case.inputs.values()]))
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        got_np = got.numpy()
        assert got_np.shape == want.shape, (got_np.shape, want.shape)
        assert got_np.dtype == want.dtype, (got_np.dtype, want.dtype)
        if want.dtype.kind in "fc":
            assert np.allclose(got_np, want, atol=TOL, rtol=0, equal_nan=True), np.nanmax(np.abs(got_np - want))
        else:
            assert np.array_equal(got_np, want)


def assert_rejected(case: Case, *words: str) -> None:
    """Conversion raises NotImplementedError whose message names the node and the reason."""
    with pytest.raises(NotImplementedError) as info:
        onnx2torch.convert(case.model())
    message = str(info.value)
    for word in ("the_", *words):
        assert word in message, message


I64 = np.int64


def _ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=I64)


# ------------------------------------------------------------------------------------------
# Shape family, newer-opset delegations, casts, comparisons
# ------------------------------------------------------------------------------------------
SIMPLE_CASES: dict[str, Case] = {}
# A shape computed at run time (dynamo's view(N, -1)): torch.reshape has allowzero=1 semantics.
SIMPLE_CASES["reshape_allowzero1_runtime_shape"] = Case(
    [_node("Reshape", ["x", "shape"], allowzero=1)], {"x": _rand(), "shape": _ints(2, -1)}, opset=14
)
for opset in (14, 19, 21):
    SIMPLE_CASES[f"reshape_allowzero1_op{opset}"] = Case(
        [_node("Reshape", ["x", "shape"], allowzero=1)], {"x": _rand()}, initializers={"shape": _ints(2, -1, 4)},
        opset=opset,
    )
for opset in (19, 21):
    SIMPLE_CASES[f"reshape_copy_zero_op{opset}"] = Case(
        [_node("Reshape", ["x", "shape"])], {"x": _rand()}, initializers={"shape": _ints(0, -1)}, opset=opset
    )
    SIMPLE_CASES[f"shape_slice_op{opset}"] = Case([_node("Shape", ["x"], start=1, end=-1)], {"x": _rand()}, opset=opset)
    SIMPLE_CASES[f"identity_op{opset}"] = Case([_node("Identity", ["x"])], {"x": _rand()}, opset=opset)
    SIMPLE_CASES[f"constant_op{opset}"] = Case(
        [
            _node("Constant", [], ["c"], value=numpy_helper.from_array(_rand((8,)), "c")),
            _node("Add", ["x", "c"]),
        ],
        {"x": _rand()},
        opset=opset,
    )
    SIMPLE_CASES[f"cast_double_op{opset}"] = Case([_node("Cast", ["x"], to=TensorProto.DOUBLE)], {"x": _rand()}, opset=opset)
    SIMPLE_CASES[f"cast_int64_op{opset}"] = Case(
        [_node("Mul", ["x", "ten"], ["t"]), _node("Cast", ["t"], to=TensorProto.INT64)],
        {"x": _rand()},
        initializers={"ten": np.array(10.0, np.float32)},
        opset=opset,
    )
for opset in (13, 19, 21):
    SIMPLE_CASES[f"size_op{opset}"] = Case([_node("Size", ["x"])], {"x": _rand()}, opset=opset)
for opset in (15, 19, 21):
    SIMPLE_CASES[f"castlike_int32_op{opset}"] = Case(
        [_node("Mul", ["x", "ten"], ["t"]), _node("CastLike", ["t", "like"])],
        {"x": _rand()},
        initializers={"ten": np.array(10.0, np.float32), "like": np.array([1], np.int32)},
        opset=opset,
    )
    SIMPLE_CASES[f"castlike_double_op{opset}"] = Case(
        [_node("CastLike", ["x", "like"])], {"x": _rand()}, initializers={"like": np.array([1.0])}, opset=opset
    )
for opset in (20, 21):
    SIMPLE_CASES[f"constant_of_shape_op{opset}"] = Case(
        [
            _node("ConstantOfShape", ["shape"], ["c"], value=numpy_helper.from_array(np.array([2.5], np.float32))),
            _node("Mul", ["x", "c"]),
        ],
        {"x": _rand()},
        initializers={"shape": _ints(8)},
        opset=opset,
    )
SIMPLE_CASES.update(
    {
        "flatten_op21": Case([_node("Flatten", ["x"], axis=2)], {"x": _rand()}, opset=21),
        "transpose_op21": Case([_node("Transpose", ["x"], perm=[0, 2, 3, 1])], {"x": _rand()}, opset=21),
        "unsqueeze_op21": Case(
            [_node("Unsqueeze", ["x", "axes"])], {"x": _rand()}, initializers={"axes": _ints(0, -1)}, opset=21
        ),
        "squeeze_op21": Case(
            [_node("Squeeze", ["x", "axes"])], {"x": _rand((2, 1, 8, 1))}, initializers={"axes": _ints(1)}, opset=21
        ),
        "equal_op19": Case(
            [_node("Floor", ["x"], ["f"]), _node("Equal", ["f", "one"])],
            {"x": _rand()},
            initializers={"one": np.array(1.0, np.float32)},
            opset=19,
        ),
        "greater_or_equal_op16": Case(
            [_node("GreaterOrEqual", ["x", "z"])], {"x": _rand(), "z": _rand((8,))}, opset=16
        ),
        "less_or_equal_op16": Case(
            [_node("LessOrEqual", ["x", "half"])],
            {"x": _rand()},
            initializers={"half": np.array(0.5, np.float32)},
            opset=18,
        ),
        "isnan_op20": Case([_node("IsNaN", ["x"])], {"x": np.array([1.0, np.nan, np.inf], np.float32)}, opset=20),
        "isinf_op20": Case([_node("IsInf", ["x"])], {"x": np.array([1.0, np.nan, -np.inf], np.float32)}, opset=20),
        "dropout_op7": Case([_node("Dropout", ["x"], ratio=0.3)], {"x": _rand()}, opset=7),
        "dropout_op7_mask": Case(
            [_node("Dropout", ["x"], ["y", "mask"], ratio=0.3)], {"x": _rand()}, outputs=["y", "mask"], opset=7
        ),
        "gelu_op20": Case([_node("Gelu", ["x"])], {"x": _rand()}, opset=20),
        "gelu_tanh_op20": Case([_node("Gelu", ["x"], approximate="tanh")], {"x": _rand()}, opset=20),
        "mish_op18": Case([_node("Mish", ["x"])], {"x": _rand()}, opset=18),
        "global_max_pool": Case([_node("GlobalMaxPool", ["x"])], {"x": _rand()}, opset=18),
        "average_pool_op19": Case(
            [_node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
            {"x": _rand()},
            opset=19,
        ),
        "average_pool_op19_unit_dilation": Case(
            [_node("AveragePool", ["x"], kernel_shape=[2, 2], dilations=[1, 1], count_include_pad=1)],
            {"x": _rand()},
            opset=19,
        ),
    }
)


@pytest.mark.parametrize("name", sorted(SIMPLE_CASES))
def test_simple_parity(name: str) -> None:
    assert_parity(SIMPLE_CASES[name])


# ------------------------------------------------------------------------------------------
# Reduce* 18 / 20
# ------------------------------------------------------------------------------------------
REDUCE_OPS = [
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
]
REDUCE_VARIANTS = {
    "hw_keep": (_ints(2, 3), 1, 0),
    "last_drop": (_ints(-1), 0, 0),
    "c_and_w_drop": (_ints(1, 3), 0, 0),
    "all_keep": (None, 1, 0),
    "all_drop": (None, 0, 0),
    "noop": (None, 1, 1),
}


def _reduce_case(op: str, variant: str, opset: int) -> Case:
    axes, keepdims, noop = REDUCE_VARIANTS[variant]
    inputs = ["x", "axes"] if axes is not None else ["x"]
    # positive for ReduceLogSum, near 1 for ReduceProd, few elements so that float32 summation
    # order (onnxruntime vs torch) stays far below the tolerance
    x = _rand((1, 2, 3, 5), 0.7, 1.3)
    return Case(
        [_node(op, inputs, keepdims=keepdims, noop_with_empty_axes=noop)],
        {"x": x},
        initializers={"axes": axes} if axes is not None else {},
        opset=opset,
    )


@pytest.mark.parametrize("variant", sorted(REDUCE_VARIANTS))
@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_18_parity(op: str, variant: str) -> None:
    assert_parity(_reduce_case(op, variant, 18))


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_20_parity(op: str) -> None:
    assert_parity(_reduce_case(op, "hw_keep", 20))
    assert_parity(_reduce_case(op, "all_drop", 20))


# ------------------------------------------------------------------------------------------
# Pad 2 / 18 / 19 / 21
# ------------------------------------------------------------------------------------------
def _pad_case(mode: str, pads: tuple[int, ...], axes: Optional[tuple[int, ...]], opset: int, value: float = 1.5) -> Case:
    inputs = ["x", "pads", "value"] + (["axes"] if axes is not None else [])
    initializers = {"pads": _ints(*pads), "value": np.array(value, np.float32)}
    if axes is not None:
        initializers["axes"] = _ints(*axes)
    return Case([_node("Pad", inputs, mode=mode)], {"x": _rand()}, initializers=initializers, opset=opset)


PAD_CASES = {
    "constant_hw_axes": ("constant", (1, 2, 3, 0), (2, 3), 18),
    "constant_negative_axes": ("constant", (0, 1, 2, 1), (-2, -1), 18),
    "constant_all_axes_channel": ("constant", (0, 1, 0, 0, 0, 2, 0, 1), None, 18),
    "constant_crop": ("constant", (0, 0, -1, 2, 0, 0, 1, -3), None, 18),
    "reflect_hw": ("reflect", (2, 3, 1, 4), (2, 3), 18),
    "reflect_channel": ("reflect", (1, 2), (1,), 19),
    "edge_hw": ("edge", (0, 0, 3, 1, 0, 0, 2, 5), None, 18),
    "edge_batch": ("edge", (1, 1), (0,), 21),
    "wrap_hw": ("wrap", (2, 1, 3, 4), (2, 3), 19),
    "wrap_op21": ("wrap", (1, 0, 0, 2), (-1, 1), 21),
}


@pytest.mark.parametrize("name", sorted(PAD_CASES))
def test_pad_parity(name: str) -> None:
    assert_parity(_pad_case(*PAD_CASES[name]))


def test_pad_without_value_or_axes() -> None:
    case = Case([_node("Pad", ["x", "pads"], mode="constant")], {"x": _rand()}, initializers={"pads": _ints(0, 0, 1, 1, 0, 0, 1, 1)})
    assert_parity(case)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_2_reads_value_attribute(mode: str) -> None:
    """Pad-2 (opset < 11): onnx2torch ignored the 'value' attribute; our replacement does not."""
    case = Case(
        [_node("Pad", ["x"], mode=mode, pads=[0, 1, 1, 2, 0, 0, 2, 1], value=-3.0)], {"x": _rand()}, opset=10
    )
    assert_parity(case)


# ------------------------------------------------------------------------------------------
# Resize 18 / 19
# ------------------------------------------------------------------------------------------
def _resize_case(
    opset: int = 18,
    scales: Optional[list[float]] = None,
    sizes: Optional[list[int]] = None,
    shape: tuple[int, ...] = (1, 2, 7, 9),
    **attrs: Any,
) -> Case:
    initializers: dict[str, np.ndarray] = {}
    inputs = ["x", "", ""]
    if scales is not None:
        initializers["scales"] = np.array(scales, np.float32)
        inputs[2] = "scales"
    if sizes is not None:
        initializers["sizes"] = np.array(sizes, I64)
        inputs = ["x", "", "", "sizes"]
    while inputs[-1] == "":
        inputs.pop()
    return Case([_node("Resize", inputs, **attrs)], {"x": _rand(shape)}, initializers=initializers, opset=opset)


COORDINATE_MODES = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "half_pixel_symmetric"]
RESIZE_GEOMETRIES = {
    "up2": {"scales": [1.0, 1.0, 2.0, 2.0]},
    "up_frac": {"scales": [1.0, 1.0, 1.7, 1.3]},
    "down": {"scales": [1.0, 1.0, 0.6, 0.45]},
    "sizes": {"sizes": [1, 2, 12, 5]},
    "axes_sizes": {"sizes": [5, 14], "axes": [2, 3]},
    "axes_scales_neg": {"scales": [2.5], "axes": [-1]},
}


@pytest.mark.parametrize("geometry", sorted(RESIZE_GEOMETRIES))
@pytest.mark.parametrize("coordinate_mode", COORDINATE_MODES)
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_parity(mode: str, coordinate_mode: str, geometry: str, request: pytest.FixtureRequest) -> None:
    opset = 19 if coordinate_mode == "half_pixel_symmetric" else 18
    if (mode, coordinate_mode, geometry) == ("nearest", "half_pixel_symmetric", "down"):
        # Known gap: here source coordinates land on exact x.5 ties in real arithmetic (7 * 0.6).
        # onnxruntime's nearest kernel resolves them as exact ties, while the formula it uses for
        # linear (which we follow, and match) gives x.5 + 2e-7 in float; we then pick the other
        # neighbour for one row. Only nearest + half_pixel_symmetric + non-dyadic scales.
        request.applymarker(pytest.mark.xfail(reason="float tie in half_pixel_symmetric nearest", strict=False))
    assert_parity(
        _resize_case(opset, mode=mode, coordinate_transformation_mode=coordinate_mode, **RESIZE_GEOMETRIES[geometry])
    )


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("geometry", ["up_frac", "down", "sizes"])
def test_resize_nearest_modes(nearest_mode: str, geometry: str) -> None:
    assert_parity(
        _resize_case(
            18, mode="nearest", nearest_mode=nearest_mode, coordinate_transformation_mode="asymmetric",
            **RESIZE_GEOMETRIES[geometry],
        )
    )
    assert_parity(_resize_case(18, mode="nearest", nearest_mode=nearest_mode, **RESIZE_GEOMETRIES[geometry]))


@pytest.mark.parametrize("exclude_outside", [0, 1])
@pytest.mark.parametrize("coordinate_mode", ["half_pixel", "align_corners", "asymmetric"])
@pytest.mark.parametrize("geometry", ["up_frac", "down"])
def test_resize_cubic(exclude_outside: int, coordinate_mode: str, geometry: str) -> None:
    assert_parity(
        _resize_case(
            18, mode="cubic", coordinate_transformation_mode=coordinate_mode, exclude_outside=exclude_outside,
            cubic_coeff_a=-0.5, **RESIZE_GEOMETRIES[geometry],
        )
    )


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_keep_aspect_ratio(policy: str, mode: str) -> None:
    assert_parity(_resize_case(18, mode=mode, sizes=[10, 10], axes=[2, 3], keep_aspect_ratio_policy=policy))


def test_resize_runtime_sizes() -> None:
    """sizes computed in the graph (here: a graph input) reach the module at run time."""
    case = Case(
        [_node("Resize", ["x", "", "", "sizes"], mode="linear")],
        {"x": _rand((1, 2, 7, 9)), "sizes": np.array([1, 2, 11, 4], I64)},
        opset=19,
    )
    assert_parity(case)


# ------------------------------------------------------------------------------------------
# Split 18
# ------------------------------------------------------------------------------------------
SPLIT_CASES = {
    "num_outputs_even": Case(
        [_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)], {"x": _rand((2, 6, 4))}, ["a", "b", "c"]
    ),
    "num_outputs_uneven": Case(
        [_node("Split", ["x"], ["a", "b", "c"], axis=-1, num_outputs=3)], {"x": _rand((2, 3, 8))}, ["a", "b", "c"]
    ),
    "split_input": Case(
        [_node("Split", ["x", "split"], ["a", "b"], axis=2)],
        {"x": _rand()},
        ["a", "b"],
        initializers={"split": _ints(3, 5)},
    ),
    "split_then_add": Case(
        [_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2), _node("Add", ["a", "b"])],
        {"x": _rand((2, 6, 4))},
    ),
}


@pytest.mark.parametrize("name", sorted(SPLIT_CASES))
def test_split_18_parity(name: str) -> None:
    assert_parity(SPLIT_CASES[name])


# ------------------------------------------------------------------------------------------
# What is rejected, with the node named in the message
# ------------------------------------------------------------------------------------------
REJECTED = {
    "reshape_allowzero_with_zero": (
        Case([_node("Reshape", ["x", "shape"], allowzero=1)], {"x": _rand()}, initializers={"shape": _ints(0, -1)}, opset=19),
        ("allowzero",),
    ),
    "reduce_dynamic_axes": (
        Case([_node("ReduceMean", ["x", "axes"])], {"x": _rand(), "axes": _ints(1)}, opset=18),
        ("axes", "constant"),
    ),
    "pad_dynamic_pads": (
        Case([_node("Pad", ["x", "pads"])], {"x": _rand(), "pads": _ints(0, 0, 1, 1, 0, 0, 1, 1)}, opset=18),
        ("pads", "constant"),
    ),
    "cast_float8": (
        Case([_node("Cast", ["x"], to=TensorProto.FLOAT8E4M3FN, saturate=1)], {"x": _rand()}, opset=19),
        ("FLOAT8E4M3FN",),
    ),
    "average_pool_dilated": (
        Case([_node("AveragePool", ["x"], kernel_shape=[2, 2], dilations=[2, 2])], {"x": _rand()}, opset=19),
        ("dilations",),
    ),
    "resize_tf_crop_and_resize": (
        _resize_case(18, mode="linear", coordinate_transformation_mode="tf_crop_and_resize", scales=[1, 1, 2, 2]),
        ("tf_crop_and_resize",),
    ),
    "resize_antialias_linear": (
        _resize_case(18, mode="linear", antialias=1, scales=[1, 1, 0.5, 0.5]),
        ("antialias",),
    ),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_with_message(name: str) -> None:
    case, words = REJECTED[name]
    assert_rejected(case, *words)


# ------------------------------------------------------------------------------------------
# Registry coverage
# ------------------------------------------------------------------------------------------
def test_every_classifier_op_has_a_converter_at_opset_18_to_21() -> None:
    required = ops.required_versions()
    assert ("Resize", 19) in required and ("Gelu", 20) in required and ("Reshape", 21) in required
    assert ops.missing_versions() == []


def test_registered_versions_are_in_the_onnx2torch_registry() -> None:
    from onnx2torch.node_converters.registry import get_converter

    added = ops.registered_versions()
    assert len(added) >= 50
    for entry in added:
        assert get_converter(entry.operation_type, entry.version).__auditor_converter__  # type: ignore[attr-defined]


def test_import_twice_is_harmless() -> None:
    before = ops.registered_versions()
    importlib.reload(importlib.import_module("converters.ops.reduce"))
    importlib.reload(importlib.import_module("converters.ops.newer_opsets"))
    importlib.reload(ops)
    assert ops.registered_versions() == before
    assert_parity(_reduce_case("ReduceMean", "hw_keep", 18))


PAD_13_CASES = {
    "reflect_with_value": (("reflect", (0, 0, 1, 2, 0, 0, 2, 1)), True),
    "edge_channel": (("edge", (0, 1, 1, 2, 0, 0, 2, 1)), False),
    "constant_value": (("constant", (0, 0, 1, 2, 0, 1, 2, 1)), True),
}


@pytest.mark.parametrize("name", sorted(PAD_13_CASES))
def test_pad_13_constant_inputs(name: str) -> None:
    """Pad-11/13 with constant pads use our module (onnx2torch's failed for these at run time)."""
    (mode, pads), with_value = PAD_13_CASES[name]
    initializers = {"pads": _ints(*pads)}
    if with_value:
        initializers["value"] = np.array(1.5, np.float32)
    inputs = ["x", "pads", "value"] if with_value else ["x", "pads"]
    assert_parity(Case([_node("Pad", inputs, mode=mode)], {"x": _rand()}, initializers=initializers, opset=13))


def test_pad_13_runtime_pads_still_use_onnx2torch() -> None:
    case = Case(
        [_node("Pad", ["x", "pads"], mode="constant")],
        {"x": _rand(), "pads": _ints(0, 0, 1, 2, 0, 0, 2, 1)},
        opset=13,
    )
    assert_parity(case)


def test_gradients_flow_through_resize_and_pad() -> None:
    """The converted modules stay trainable: the input receives a gradient through both."""
    case = Case(
        [
            _node("Pad", ["x", "pads"], ["p"], mode="reflect"),
            _node("Resize", ["p", "", "scales"], mode="linear", coordinate_transformation_mode="half_pixel"),
        ],
        {"x": _rand()},
        initializers={"pads": _ints(0, 0, 1, 1, 0, 0, 1, 1), "scales": np.array([1, 1, 1.5, 1.5], np.float32)},
        opset=19,
    )
    module = onnx2torch.convert(case.model())
    x = torch.from_numpy(case.inputs["x"]).requires_grad_(True)
    module(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
