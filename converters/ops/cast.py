"""Cast 19/21 and CastLike 15/19/21.

Cast-19 adds float8 types and the ``saturate`` attribute, which only affects float8 targets;
Cast-21 adds int4/uint4. onnx2torch's Cast-13 has no mapping for those types, and training a
float8/int4 graph is out of scope, so we reject those targets with a message naming the node
and delegate every other Cast to Cast-13. CastLike has no onnx2torch converter at all.
"""

from __future__ import annotations

import torch
from onnx import TensorProto
from onnx2torch.node_converters.cast import TENSOR_TYPE_TO_TORCH_TYPE
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node
from torch import nn

from ._common import delegate, describe, register


def _type_name(onnx_dtype: int) -> str:
    try:
        return TensorProto.DataType.Name(onnx_dtype)
    except ValueError:
        return str(onnx_dtype)


def _reject_unmapped_target(node: OnnxNode, onnx_dtype: int) -> None:
    if onnx_dtype not in TENSOR_TYPE_TO_TORCH_TYPE:
        raise NotImplementedError(
            f"{describe(node)}: cast to {_type_name(onnx_dtype)} is not supported "
            "(float8/int4/bfloat16-style targets and 'saturate' are not converted)"
        )


def _check_cast(node: OnnxNode, graph: OnnxGraph) -> None:
    """Reject the targets where Cast-19/21 differ from Cast-13 (float8 with saturate, int4)."""
    del graph
    _reject_unmapped_target(node, int(node.attributes.get("to", 0)))


delegate("Cast", (19, 21), to_version=13, check=_check_cast)


class OnnxCastLike(nn.Module, OnnxToTorchModule):
    """Cast the first input to the dtype of the second (ONNX CastLike)."""

    def forward(self, input_tensor: torch.Tensor, target_type: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return input_tensor.to(target_type.dtype)


@register("CastLike", (15, 19, 21))
def _convert_cast_like(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """CastLike 15/19/21 (later versions only add float8/int4, rejected when the type is known)."""
    value_info = graph.value_info.get(node.input_values[1])
    if value_info is not None and value_info.type.tensor_type.elem_type:
        _reject_unmapped_target(node, int(value_info.type.tensor_type.elem_type))
    return OperationConverterResult(torch_module=OnnxCastLike(), onnx_mapping=onnx_mapping_from_node(node))
