"""Pad 18/19/21 (``axes`` input; 19 adds ``wrap``) and fixes for onnx2torch's Pad-2/11/13.

One module handles every mode on any axis: constant padding (and negative pads, which crop)
through ``F.pad``, reflect/edge/wrap through an index map per axis, so it also pads the batch
and channel axes that ``F.pad``'s reflect/replicate modes cannot.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OnnxToTorchModule, OperationConverterResult
from torch import nn

from ._common import (
    constant_input,
    constant_ints,
    describe,
    is_constant,
    optional_input,
    original_converter,
    register,
    replace,
)

_MODES = ("constant", "reflect", "edge", "wrap")


def _source_indices(length: int, before: int, after: int, mode: str, device: torch.device) -> torch.Tensor:
    """Index into an axis of ``length`` for every output position of a reflect/edge/wrap pad.

    Negative ``before``/``after`` simply start/stop inside the axis, which is ONNX's cropping.
    """
    positions = torch.arange(-before, length + after, device=device)
    if mode == "edge":
        return positions.clamp(0, length - 1)
    if mode == "wrap":
        return torch.remainder(positions, length)
    # reflect: mirror without repeating the edge element, period 2 * (length - 1)
    if length == 1:
        return torch.zeros_like(positions)
    period = 2 * (length - 1)
    folded = torch.remainder(positions, period)
    return torch.where(folded < length, folded, period - folded)


class OnnxPadGeneric(nn.Module, OnnxToTorchModule):
    """ONNX Pad with constant pads, value and axes (None = all axes)."""

    def __init__(self, pads: list[int], mode: str, value: float, axes: Optional[list[int]]):
        super().__init__()
        self.pads = list(pads)
        self.mode = mode
        self.value = value
        self.axes = None if axes is None else list(axes)

    def _per_axis(self, rank: int) -> dict[int, tuple[int, int]]:
        axes = list(range(rank)) if self.axes is None else [axis % rank for axis in self.axes]
        count = len(axes)
        if len(self.pads) != 2 * count:
            raise RuntimeError(f"Pad: {len(self.pads)} pads for {count} axes (need {2 * count})")
        return {axis: (self.pads[i], self.pads[i + count]) for i, axis in enumerate(axes)}

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        per_axis = self._per_axis(input_tensor.dim())
        if self.mode == "constant":
            torch_pads: list[int] = []
            for axis in reversed(range(input_tensor.dim())):  # F.pad lists the last axis first
                torch_pads.extend(per_axis.get(axis, (0, 0)))
            return F.pad(input_tensor, torch_pads, mode="constant", value=self.value)
        output = input_tensor
        for axis, (before, after) in per_axis.items():
            if before == 0 and after == 0:
                continue
            index = _source_indices(output.shape[axis], before, after, self.mode, output.device)
            output = torch.index_select(output, axis, index)
        return output


def _mode(node: OnnxNode) -> str:
    mode = node.attributes.get("mode", "constant")
    if mode not in _MODES:
        raise NotImplementedError(f"{describe(node)}: pad mode {mode!r} is not supported")
    return mode


@register("Pad", (18, 19, 21))
def _convert_pad_18(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Pad-18/19/21: pads, constant_value and axes are inputs and must be constants here.

    19 adds mode='wrap' and 21 only new types, so one converter serves all three.
    """
    pads = constant_ints(node, graph, 1, "pads")
    if pads is None:
        raise NotImplementedError(f"{describe(node)}: the pads input is missing")
    value_tensor = constant_input(node, graph, 2, "constant_value")
    value = 0.0 if value_tensor is None or value_tensor.numel() == 0 else float(value_tensor.reshape(-1)[0])
    axes = constant_ints(node, graph, 3, "axes")
    return OperationConverterResult(
        torch_module=OnnxPadGeneric(pads=pads, mode=_mode(node), value=value, axes=axes),
        onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values),
    )


# onnx2torch's Pad-2 converter reads the attribute 'constant_value', but Pad-2 names it 'value',
# so every non-zero pad value was silently dropped (and reflect/edge could not pad N or C).
# add_converter cannot re-register a key, hence the explicit replacement.
@replace("Pad", 2, "reads the pad value from 'value' (onnx2torch read 'constant_value' and ignored it)")
def _convert_pad_2(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Pad-2: pads, mode and value are attributes."""
    del graph
    if "pads" not in node.attributes:
        raise NotImplementedError(f"{describe(node)}: the pads attribute is missing")
    mode = _mode(node)
    if mode == "wrap":
        raise NotImplementedError(f"{describe(node)}: mode 'wrap' only exists from Pad-19")
    return OperationConverterResult(
        torch_module=OnnxPadGeneric(
            pads=list(node.attributes["pads"]),
            mode=mode,
            value=float(node.attributes.get("value", 0.0)),
            axes=None,
        ),
        onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values),
    )


_pad_11 = original_converter("Pad", 11)  # onnx2torch's, kept for pads computed at run time


def _convert_pad_11(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Pad-11/13 (pads and constant_value inputs, no axes).

    With constant inputs (the usual export) this is the Pad-18 module: onnx2torch's
    OnnxPadDynamic passes the value input to F.pad even for reflect/edge, which raises at run
    time ("Padding mode 'reflect' doesn't take in value argument"), and cannot pad the batch or
    channel axis in reflect/edge mode. Pads computed at run time still go to onnx2torch's code.
    """
    inputs_constant = all(
        optional_input(node, index) is None or is_constant(node.input_values[index], graph) for index in (1, 2)
    )
    if inputs_constant and optional_input(node, 1) is not None:
        return _convert_pad_18(node, graph)
    return _pad_11(node, graph)


for _version in (11, 13):
    replace("Pad", _version, "constant pads use the Pad-18 module (reflect/edge with a value input failed at run time)")(
        _convert_pad_11
    )
