"""onnx2torch converters for operators that onnx2torch 1.5.15 lacks (mostly opset 18-21).

Importing this package registers them in onnx2torch's own registry, once: family modules are
ordinary modules, so a second ``import converters.ops`` is a no-op, and ``_common.register``
tolerates re-registration of our own entries. ``registered_versions()`` lists what we added;
``required_versions()`` lists the (op, since_version) pairs that classifier models exported at
opset 18-21 can contain, computed from ``onnx.defs`` rather than written by hand.
"""

from __future__ import annotations

from typing import Iterable

from .._compat import import_onnx2torch

import_onnx2torch()  # must precede every onnx2torch import below (torchvision stand-in)

from onnx import defs  # noqa: E402
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription  # noqa: E402

from . import (  # noqa: E402,F401  (imported for their registrations)
    activations,
    cast,
    compare,
    dropout,
    newer_opsets,
    normalization,
    pad,
    pooling,
    reduce,
    resize,
    shape_ops,
    split,
)
from ._common import Registration, registrations  # noqa: E402

__all__ = ["CLASSIFIER_OPS", "Registration", "missing_versions", "registered_versions", "required_versions"]

# Operators seen in exported image classifiers (CNNs, ViTs, MobileNets, EfficientNets, ...).
CLASSIFIER_OPS: tuple[str, ...] = (
    "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "LayerNormalization",
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu",
    "Erf", "Mish", "Softplus", "Elu", "Softmax", "LogSoftmax",
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal",
    "Min", "Max", "Sum", "Mean", "MatMul", "Gemm",
    "GlobalAveragePool", "GlobalMaxPool", "MaxPool", "AveragePool",
    "Concat", "Slice", "Gather", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
    "Shape", "Size", "Constant", "ConstantOfShape", "Cast", "CastLike", "Pad", "Resize", "Split",
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    "Where", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or",
    "Expand", "Tile", "Range", "Identity", "Dropout", "Floor", "Ceil", "Round",
    "ArgMax", "ArgMin", "TopK", "Einsum", "CumSum", "DepthToSpace", "IsNaN", "IsInf",
)


def required_versions(ops: Iterable[str] = CLASSIFIER_OPS, opsets: Iterable[int] = range(18, 22)) -> list[tuple[str, int]]:
    """(op, since_version) that ``get_converter`` looks up for a model at each opset in ``opsets``."""
    needed = set()
    for op in ops:
        for opset in opsets:
            try:
                needed.add((op, defs.get_schema(op, max_inclusive_version=opset).since_version))
            except defs.SchemaError:  # the op does not exist yet at this opset (Gelu before 20)
                continue
    return sorted(needed)


def missing_versions(ops: Iterable[str] = CLASSIFIER_OPS, opsets: Iterable[int] = range(18, 22)) -> list[tuple[str, int]]:
    """The required (op, since_version) pairs that still have no converter in onnx2torch's registry."""
    return [
        (op, version)
        for op, version in required_versions(ops, opsets)
        if OperationDescription(defs.ONNX_DOMAIN, op, version) not in _CONVERTER_REGISTRY
    ]


def registered_versions() -> list[Registration]:
    """What this package added to (or replaced in) onnx2torch's registry, for reports."""
    return registrations()
