"""Reduce* at opset 18 (axes moved from attribute to optional input) and ReduceMax/Min 20.

onnx2torch 1.5.15 stops at 13 for all of them except ReduceSum (whose axes input arrived at 13
and which has no 18). ReduceMax/ReduceMin 20 only add boolean inputs, same float semantics,
so they share the 18 converter.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OnnxToTorchModule, OperationConverterResult
from torch import nn

from ._common import constant_ints, register

Reduction = Callable[[torch.Tensor, list[int], bool], torch.Tensor]


def _prod(x: torch.Tensor, dims: list[int], keepdim: bool) -> torch.Tensor:
    """torch.prod takes one dim at a time; reduce the highest first so indices stay valid."""
    for dim in sorted(dims, reverse=True):
        x = torch.prod(x, dim=dim, keepdim=keepdim)
    return x


# With noop_with_empty_axes=1 and no axes, ONNX skips the reduction but still applies the
# element-wise part of the op ("ReduceSumSquare acts as a vanilla Square").
_ELEMENTWISE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ReduceL1": torch.abs,
    "ReduceL2": lambda x: torch.sqrt(x * x),
    "ReduceLogSum": torch.log,
    "ReduceSumSquare": lambda x: x * x,
}

_REDUCTIONS: dict[str, Reduction] = {
    "ReduceMean": lambda x, d, k: torch.mean(x, dim=d, keepdim=k),
    "ReduceMax": lambda x, d, k: torch.amax(x, dim=d, keepdim=k),
    "ReduceMin": lambda x, d, k: torch.amin(x, dim=d, keepdim=k),
    "ReduceProd": _prod,
    "ReduceL1": lambda x, d, k: torch.sum(torch.abs(x), dim=d, keepdim=k),
    "ReduceL2": lambda x, d, k: torch.sqrt(torch.sum(x * x, dim=d, keepdim=k)),
    "ReduceLogSum": lambda x, d, k: torch.log(torch.sum(x, dim=d, keepdim=k)),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
    "ReduceSumSquare": lambda x, d, k: torch.sum(x * x, dim=d, keepdim=k),
}


class OnnxReduce18(nn.Module, OnnxToTorchModule):
    """A Reduce* node with constant axes; empty axes reduce everything unless noop_with_empty_axes."""

    def __init__(self, operation_type: str, axes: Optional[list[int]], keepdims: bool, noop_with_empty_axes: bool):
        super().__init__()
        self.operation_type = operation_type
        self.axes = list(axes) if axes else []
        self.keepdims = keepdims
        self.noop_with_empty_axes = noop_with_empty_axes

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        reduction = _REDUCTIONS[self.operation_type]
        if not self.axes and self.noop_with_empty_axes:
            elementwise = _ELEMENTWISE.get(self.operation_type)
            return input_tensor if elementwise is None else elementwise(input_tensor)
        if input_tensor.dim() == 0:  # a scalar reduces to (a function of) itself, still 0-d
            return reduction(input_tensor.reshape(1), [0], False)
        rank = input_tensor.dim()
        dims = sorted(axis % rank for axis in self.axes) if self.axes else list(range(rank))
        return reduction(input_tensor, dims, self.keepdims)


def _convert_reduce(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Reduce*-18/20: axes come from the optional second input, which must be constant."""
    axes = constant_ints(node, graph, 1, "axes")
    return OperationConverterResult(
        torch_module=OnnxReduce18(
            operation_type=node.operation_type,
            axes=axes,
            keepdims=bool(node.attributes.get("keepdims", 1)),
            noop_with_empty_axes=bool(node.attributes.get("noop_with_empty_axes", 0)),
        ),
        onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values),
    )


for _op in _REDUCTIONS:
    register(_op, (18,))(_convert_reduce)
# 20 adds bool inputs only; for numeric tensors it is the 18 operator.
register("ReduceMax", (20,), how="new (same code as ReduceMax-18; 20 only adds bool)")(_convert_reduce)
register("ReduceMin", (20,), how="new (same code as ReduceMin-18; 20 only adds bool)")(_convert_reduce)
