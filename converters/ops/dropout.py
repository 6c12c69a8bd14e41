"""Dropout 1/6/7 (ratio attribute; onnx2torch starts at 10).

At inference Dropout is the identity, which is what onnxruntime computes; during fine-tuning the
module drops with the node's ratio, like onnx2torch's own Dropout-10. The optional mask output
is returned too (schema type T; zeros at inference, as onnxruntime computes it) so that a
graph reading it still converts.
"""

from __future__ import annotations

from typing import Union

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node
from torch import nn

from ._common import register


class OnnxDropoutWithMask(nn.Module, OnnxToTorchModule):
    """Dropout that can also return the pre-10 mask (same dtype as the input, schema type T).

    At inference onnxruntime runs Dropout 1-9 as an identity that fills the mask with zeros;
    we return the same so a converted graph agrees with the runtime it was validated on.
    While training, the mask is 1 where an element was kept.
    """

    def __init__(self, ratio: float, with_mask: bool):
        super().__init__()
        self.ratio = ratio
        self.with_mask = with_mask

    def forward(  # noqa: D102
        self, input_tensor: torch.Tensor
    ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if not self.training or self.ratio == 0.0:
            output = input_tensor
            mask = torch.zeros_like(input_tensor)
        else:
            keep = (torch.rand_like(input_tensor) >= self.ratio).to(input_tensor.dtype)
            output = input_tensor * keep / (1.0 - self.ratio)
            mask = keep
        return (output, mask) if self.with_mask else output


@register("Dropout", (1, 6, 7))
def _convert_dropout(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Dropout before 10: ``ratio`` (and, before 7, the ignored ``is_test``) are attributes."""
    del graph
    # Any second output slot (even an empty name) makes onnx2torch index the result, so then
    # the module must return a tuple.
    with_mask = len(node.output_values) > 1
    module = OnnxDropoutWithMask(float(node.attributes.get("ratio", 0.5)), with_mask=with_mask)
    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))
