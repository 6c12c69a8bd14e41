"""LayerNormalization with the normalized shape taken from the scale tensor.

onnx2torch 1.5.15 reads the normalized shape from the input's shape inference; with a dynamic
(or unknown) dimension it builds ``nn.LayerNorm(normalized_shape=[0])``, which fails at run
time. The scale initializer always has exactly the normalized shape, so we take it from there.
"""

from __future__ import annotations

from torch import nn

from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

from ._common import original_converter, replace


_ONNX2TORCH_LAYER_NORM = original_converter("LayerNormalization", 17)  # captured before replacing it


@replace("LayerNormalization", 17, why="normalized shape from the scale, not from shape inference")
def _layer_norm(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    inputs = node.input_values
    constant_affine = all(name in graph.initializers for name in inputs[1:] if name)
    if not constant_affine:
        return _ONNX2TORCH_LAYER_NORM(node, graph)
    scale = graph.initializers[inputs[1]].to_torch()
    module = nn.LayerNorm(normalized_shape=tuple(scale.shape), eps=node.attributes.get("epsilon", 1e-5))
    module.weight.data = scale
    bias_name = inputs[2] if len(inputs) > 2 and inputs[2] else None
    if bias_name is None:
        module.bias = None
    else:
        module.bias.data = graph.initializers[bias_name].to_torch()
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(inputs=(inputs[0],), outputs=node.output_values))
