"""Split 18: either the ``split`` input or the new ``num_outputs`` attribute.

onnx2torch's Split-13 divides by the number of outputs with floor division, which is wrong for
uneven splits; Split-18 defines uneven ``num_outputs`` splits as ceil-sized chunks with a
smaller last one, which is what this module computes.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node
from torch import nn

from ._common import describe, optional_input, register


class OnnxSplit18(nn.Module, OnnxToTorchModule):
    """Split along ``axis`` by explicit sizes (input) or into ``num_outputs`` ceil-sized chunks."""

    def __init__(self, axis: int, num_outputs: int):
        super().__init__()
        self.axis = axis
        self.num_outputs = num_outputs

    def _chunk_sizes(self, length: int) -> list[int]:
        chunk = -(-length // self.num_outputs)  # ceil division
        sizes = []
        remaining = length
        for _ in range(self.num_outputs):
            sizes.append(min(chunk, remaining))
            remaining -= sizes[-1]
        return sizes

    def forward(  # noqa: D102
        self, input_tensor: torch.Tensor, split: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, tuple[torch.Tensor, ...]]:
        if split is not None and split.numel() > 0:
            sizes = [int(size) for size in split.tolist()]
        else:
            sizes = self._chunk_sizes(input_tensor.shape[self.axis])
        parts = torch.split(input_tensor, sizes, dim=self.axis)
        # onnx2torch indexes the result only for nodes with several outputs.
        return parts[0] if self.num_outputs == 1 else tuple(parts)


@register("Split", (18,))
def _convert_split_18(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Split-18: with no split input, num_outputs (required then) sets the chunking."""
    del graph
    num_outputs = len(node.output_values)
    declared = node.attributes.get("num_outputs")
    if optional_input(node, 1) is None:
        if declared is None:
            raise NotImplementedError(f"{describe(node)}: neither a split input nor num_outputs is given")
        if int(declared) != num_outputs:
            raise NotImplementedError(
                f"{describe(node)}: num_outputs={declared} but the node has {num_outputs} outputs"
            )
    return OperationConverterResult(
        torch_module=OnnxSplit18(axis=int(node.attributes.get("axis", 0)), num_outputs=num_outputs),
        onnx_mapping=onnx_mapping_from_node(node),
    )
