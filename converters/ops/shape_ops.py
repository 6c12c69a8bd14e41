"""Reshape with ``allowzero`` (opset 14, 19, 21) and Size (every version).

onnx2torch 1.5.15 rejects every Reshape with ``allowzero=1`` and has no Size converter at all.
The plain opset 19/21 delegations of Flatten, Transpose, Unsqueeze and Shape live in
``newer_opsets``.
"""

from __future__ import annotations

import torch
from onnx2torch.node_converters.reshape import OnnxReshape
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node
from torch import nn

from ._common import constant_ints, describe, is_constant, original_converter, register, replace

_reshape_14 = original_converter("Reshape", 14)  # captured before we replace the entry below


class ReshapeAllowZero(nn.Module, OnnxToTorchModule):
    """Reshape to a shape computed at run time, with ONNX allowzero=1 semantics."""

    def forward(self, input_tensor: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return torch.reshape(input_tensor, [int(v) for v in shape.tolist()])


def _convert_reshape(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Reshape 14/19/21; 19 and 21 only add types, so all three share this.

    allowzero=0 goes to onnx2torch's converter unchanged. allowzero=1 only differs when the shape
    holds a 0 (then 0 means an empty dimension instead of "copy the input dimension"), so a
    constant shape without zeros is the ordinary reshape; everything else is rejected.
    """
    if node.attributes.get("allowzero", 0) == 0:
        return _reshape_14(node, graph)
    if not is_constant(node.input_values[1], graph):
        # torch.reshape treats 0 as an empty dimension and -1 as inferred: allowzero=1 exactly.
        return OperationConverterResult(torch_module=ReshapeAllowZero(), onnx_mapping=onnx_mapping_from_node(node))
    shape = constant_ints(node, graph, 1, "shape, needed to check allowzero=1")
    if shape is None or 0 in shape:
        raise NotImplementedError(
            f"{describe(node)}: allowzero=1 with a 0 in the target shape {shape} (an empty dimension) "
            "is not supported"
        )
    return OperationConverterResult(torch_module=OnnxReshape(), onnx_mapping=onnx_mapping_from_node(node))


# Replaces onnx2torch's Reshape-14, which raises for every allowzero=1 node although the
# attribute is a no-op unless the shape contains 0; allowzero=0 still runs onnx2torch's code.
replace("Reshape", 14, "support allowzero=1 when the constant shape has no 0")(_convert_reshape)
register("Reshape", (19, 21), how="new (allowzero=0 delegates to Reshape-14)")(_convert_reshape)


class OnnxSize(nn.Module, OnnxToTorchModule):
    """Number of elements as an int64 scalar, like ONNX Size."""

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.tensor(input_tensor.numel(), dtype=torch.int64, device=input_tensor.device)


@register("Size", (1, 13, 19, 21))
def _convert_size(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Size: later versions only add input types; the output is always an int64 scalar."""
    del graph
    return OperationConverterResult(torch_module=OnnxSize(), onnx_mapping=onnx_mapping_from_node(node))
