"""Gelu 20 and Mish 18: element-wise activations onnx2torch 1.5.15 does not know.

Exporters emit Gelu as one node from opset 20 (before that as an Erf/Tanh pattern that
onnx2torch converts already) and Mish from opset 18.
"""

from __future__ import annotations

from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
from torch import nn

from ._common import describe, register


@register("Gelu", (20,))
def _convert_gelu(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Gelu-20: ``approximate`` is 'none' (erf) or 'tanh', the same two variants as torch."""
    del graph
    approximate = node.attributes.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise NotImplementedError(f"{describe(node)}: unknown approximate={approximate!r}")
    return OperationConverterResult(
        torch_module=nn.GELU(approximate=approximate), onnx_mapping=onnx_mapping_from_node(node)
    )


@register("Mish", (18,))
def _convert_mish(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Mish-18: x * tanh(softplus(x)), exactly torch.nn.Mish."""
    del graph
    return OperationConverterResult(torch_module=nn.Mish(), onnx_mapping=onnx_mapping_from_node(node))
