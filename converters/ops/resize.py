"""Resize 18/19, computed the way onnxruntime does instead of through F.interpolate.

F.interpolate's nearest mode is 'asymmetric + floor' only and its linear modes cover two of
ONNX's coordinate transformations, so onnx2torch's Resize-11/13 merely warns that results
"might differ significantly". Here every resized axis is interpolated separately from the
source coordinates ONNX defines (float32, same formulas and order as onnxruntime), which is
exact for nearest and matches linear/cubic to float rounding, for any axis. The result stays
differentiable with respect to the input, which fine-tuning needs.

Supported: mode nearest (all four nearest_mode values), linear, cubic (cubic_coeff_a,
exclude_outside); coordinate_transformation_mode half_pixel, half_pixel_symmetric,
pytorch_half_pixel, align_corners, asymmetric; keep_aspect_ratio_policy stretch, not_larger,
not_smaller; the axes attribute. Rejected with a message: tf_crop_and_resize (needs roi and
extrapolation) and antialias=1 for linear/cubic.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OnnxToTorchModule, OperationConverterResult
from torch import nn

from ._common import constant_input, describe, is_constant, optional_input, register

_COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_MODES = ("nearest", "linear", "cubic")
_POLICIES = ("stretch", "not_larger", "not_smaller")


def _f32(value: float) -> np.float32:
    return np.float32(value)


class OnnxResize18(nn.Module, OnnxToTorchModule):
    """ONNX Resize (opset 18/19 attributes) with scales/sizes fixed at conversion or given at run time."""

    def __init__(  # pylint: disable=too-many-arguments
        self,
        mode: str,
        coordinate_transformation_mode: str,
        nearest_mode: str,
        cubic_coeff_a: float,
        exclude_outside: bool,
        axes: Optional[list[int]],
        keep_aspect_ratio_policy: str,
        static_scales: Optional[list[float]],
        static_sizes: Optional[list[int]],
    ):
        super().__init__()
        self.mode = mode
        self.coordinate_transformation_mode = coordinate_transformation_mode
        self.nearest_mode = nearest_mode
        self.cubic_coeff_a = cubic_coeff_a
        self.exclude_outside = exclude_outside
        self.axes = axes
        self.keep_aspect_ratio_policy = keep_aspect_ratio_policy
        self.static_scales = static_scales
        self.static_sizes = static_sizes

    # -- output geometry -------------------------------------------------------------------
    def _geometry(
        self, shape: list[int], scales: Optional[list[float]], sizes: Optional[list[int]]
    ) -> list[tuple[int, int, np.float32]]:
        """(axis, output length, float32 scale) for every axis that is resized."""
        rank = len(shape)
        axes = [axis % rank for axis in self.axes] if self.axes else list(range(rank))
        if sizes is not None:
            if len(sizes) != len(axes):
                raise RuntimeError(f"Resize: {len(sizes)} sizes for {len(axes)} axes")
            axis_scales = [_f32(size) / _f32(shape[axis]) for axis, size in zip(axes, sizes)]
            if self.keep_aspect_ratio_policy != "stretch":
                pick = min if self.keep_aspect_ratio_policy == "not_larger" else max
                common = pick(axis_scales)
                axis_scales = [common] * len(axes)
                sizes = [int(np.floor(common * _f32(shape[axis]) + _f32(0.5))) for axis in axes]
            return list(zip(axes, sizes, axis_scales))
        if scales is None:
            raise RuntimeError("Resize: neither scales nor sizes is given")
        if len(scales) != len(axes):
            raise RuntimeError(f"Resize: {len(scales)} scales for {len(axes)} axes")
        return [(axis, int(_f32(scale) * _f32(shape[axis])), _f32(scale)) for axis, scale in zip(axes, scales)]

    def _source_coordinates(self, length_in: int, length_out: int, scale: np.float32, device: torch.device):
        """Position in the input of every output element, as onnxruntime computes it (float32)."""
        x = torch.arange(length_out, dtype=torch.float32, device=device)
        scale_t = torch.tensor(scale, dtype=torch.float32, device=device)
        mode = self.coordinate_transformation_mode
        if mode == "asymmetric":
            return x / scale_t
        if mode == "align_corners":
            if length_out == 1:
                return torch.zeros_like(x)
            return x * float(length_in - 1) / float(length_out - 1)
        if mode == "pytorch_half_pixel" and length_out == 1:
            return torch.zeros_like(x)
        if mode == "half_pixel_symmetric":
            output_width = scale * _f32(length_in)
            adjustment = _f32(length_out) / output_width
            center = _f32(length_in) / _f32(2)
            offset = float(center * (_f32(1) - adjustment))
            # onnxruntime evaluates this one in double (its 0.5 literals are doubles) and rounds
            # to float at the end; doing the same keeps exact ties (x.5) for nearest rounding.
            x64 = x.to(torch.float64)
            return (offset + (x64 + 0.5) / float(scale) - 0.5).to(torch.float32)
        return (x + 0.5) / scale_t - 0.5

    # -- one axis --------------------------------------------------------------------------
    def _nearest(self, data: torch.Tensor, axis: int, coords: torch.Tensor) -> torch.Tensor:
        floor = torch.floor(coords)
        if self.nearest_mode == "floor":
            index = floor
        elif self.nearest_mode == "ceil":
            index = torch.ceil(coords)
        else:
            tie = (coords - floor) == 0.5
            tie_choice = floor if self.nearest_mode == "round_prefer_floor" else floor + 1
            index = torch.where(tie, tie_choice, torch.round(coords))
        index = index.to(torch.int64).clamp(0, data.shape[axis] - 1)
        return torch.index_select(data, axis, index)

    def _weighted(self, data: torch.Tensor, axis: int, taps: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        shape = [1] * data.dim()
        shape[axis] = -1
        result = None
        for index, weight in taps:
            term = torch.index_select(data, axis, index) * weight.to(data.dtype).reshape(shape)
            result = term if result is None else result + term
        return result

    def _linear(self, data: torch.Tensor, axis: int, coords: torch.Tensor) -> torch.Tensor:
        length = data.shape[axis]
        coords = coords.clamp(0.0, float(length - 1))
        low = torch.floor(coords)
        frac = coords - low
        low_i = low.to(torch.int64)
        high_i = (low_i + 1).clamp(max=length - 1)
        return self._weighted(data, axis, [(low_i, 1.0 - frac), (high_i, frac)])

    def _cubic(self, data: torch.Tensor, axis: int, coords: torch.Tensor) -> torch.Tensor:
        length = data.shape[axis]
        a = self.cubic_coeff_a
        low = torch.floor(coords)
        t = coords - low
        distances = [t + 1.0, t, 1.0 - t, 2.0 - t]
        weights = []
        for d in distances:
            near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
            far = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
            weights.append(torch.where(d <= 1.0, near, far))
        indices = [low.to(torch.int64) + offset for offset in (-1, 0, 1, 2)]
        if self.exclude_outside:
            inside = [((i >= 0) & (i < length)).to(coords.dtype) for i in indices]
            weights = [w * m for w, m in zip(weights, inside)]
            total = sum(weights)
            weights = [w / total for w in weights]
        taps = [(i.clamp(0, length - 1), w) for i, w in zip(indices, weights)]
        return self._weighted(data, axis, taps)

    def forward(  # noqa: D102
        self,
        input_tensor: torch.Tensor,
        scales: Optional[torch.Tensor] = None,
        sizes: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        scale_list = self.static_scales if scales is None or scales.numel() == 0 else scales.tolist()
        size_list = self.static_sizes if sizes is None or sizes.numel() == 0 else [int(s) for s in sizes.tolist()]
        output = input_tensor
        for axis, length_out, scale in self._geometry(list(input_tensor.shape), scale_list, size_list):
            length_in = output.shape[axis]
            if length_out == length_in and scale == 1.0:
                continue  # identity along this axis for every coordinate mode
            coords = self._source_coordinates(length_in, length_out, scale, output.device)
            if self.mode == "nearest":
                output = self._nearest(output, axis, coords)
            elif self.mode == "linear":
                output = self._linear(output, axis, coords)
            else:
                output = self._cubic(output, axis, coords)
        return output


def _constant_list(node: OnnxNode, graph: OnnxGraph, index: int, what: str) -> Optional[list[float]]:
    value = constant_input(node, graph, index, what)
    if value is None or value.numel() == 0:
        return None
    return value.reshape(-1).tolist()


@register("Resize", (18, 19))
def _convert_resize(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Resize-18 (axes, keep_aspect_ratio_policy, antialias) and 19 (half_pixel_symmetric)."""
    attrs = node.attributes
    mode = attrs.get("mode", "nearest")
    coordinate_mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest_mode = attrs.get("nearest_mode", "round_prefer_floor")
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if mode not in _MODES:
        raise NotImplementedError(f"{describe(node)}: mode {mode!r} is not supported")
    if coordinate_mode not in _COORDINATE_MODES:
        raise NotImplementedError(
            f"{describe(node)}: coordinate_transformation_mode {coordinate_mode!r} is not supported "
            f"(supported: {', '.join(_COORDINATE_MODES)})"
        )
    if nearest_mode not in _NEAREST_MODES:
        raise NotImplementedError(f"{describe(node)}: nearest_mode {nearest_mode!r} is not supported")
    if policy not in _POLICIES:
        raise NotImplementedError(f"{describe(node)}: keep_aspect_ratio_policy {policy!r} is not supported")
    if attrs.get("antialias", 0) and mode != "nearest":
        raise NotImplementedError(f"{describe(node)}: antialias=1 with mode {mode!r} is not supported")

    # Constant scales/sizes are read now; computed ones are passed to forward at run time.
    mapped = [node.input_values[0], "", ""]
    static: dict[int, Optional[list[float]]] = {2: None, 3: None}
    for index, what in ((2, "scales"), (3, "sizes")):
        name = optional_input(node, index)
        if name is None:
            continue
        if is_constant(name, graph):
            static[index] = _constant_list(node, graph, index, what)
        else:
            mapped[index - 1] = name
    while mapped[-1] == "":
        mapped.pop()

    module = OnnxResize18(
        mode=mode,
        coordinate_transformation_mode=coordinate_mode,
        nearest_mode=nearest_mode,
        cubic_coeff_a=float(attrs.get("cubic_coeff_a", -0.75)),
        exclude_outside=bool(attrs.get("exclude_outside", 0)),
        axes=list(attrs["axes"]) if "axes" in attrs else None,
        keep_aspect_ratio_policy=policy,
        static_scales=static[2],
        static_sizes=None if static[3] is None else [int(size) for size in static[3]],
    )
    return OperationConverterResult(
        torch_module=module, onnx_mapping=OnnxMapping(inputs=tuple(mapped), outputs=node.output_values)
    )
