"""AveragePool 19 and GlobalMaxPool 1.

AveragePool-19 adds ``dilations``; torch's AvgPool has no dilation, so dilated pools are
rejected and the rest delegate to onnx2torch's AveragePool-11. onnx2torch has no GlobalMaxPool.
"""

from __future__ import annotations

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node
from torch import nn

from ._common import delegate, describe, register


def _check_no_dilation(node: OnnxNode, graph: OnnxGraph) -> None:
    """AveragePool-19 equals AveragePool-11 exactly when every dilation is 1."""
    del graph
    dilations = node.attributes.get("dilations")
    if dilations and any(d != 1 for d in dilations):
        raise NotImplementedError(f"{describe(node)}: AveragePool with dilations={dilations} is not supported")


delegate("AveragePool", (19,), to_version=11, check=_check_no_dilation)


class OnnxGlobalMaxPool(nn.Module, OnnxToTorchModule):
    """Max over every spatial axis (all axes after N, C), keeping them as size 1."""

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.amax(input_tensor, dim=tuple(range(2, input_tensor.dim())), keepdim=True)


@register("GlobalMaxPool", (1,))
def _convert_global_max_pool(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """GlobalMaxPool-1 (its only version)."""
    del graph
    return OperationConverterResult(torch_module=OnnxGlobalMaxPool(), onnx_mapping=onnx_mapping_from_node(node))
