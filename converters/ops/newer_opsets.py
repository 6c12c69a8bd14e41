"""Thin opset 19-21 delegations for ops whose new versions only widen the type list.

Each of these new since_versions adds element types (bfloat16, float8, int4/uint4, strings) to
the schema and changes nothing for float/int tensors, so the converter is onnx2torch's previous
one. Versions that change behaviour are handled in their family modules instead (Cast,
AveragePool, Reshape, Pad, Resize, Split, Reduce*).
"""

from __future__ import annotations

from ._common import delegate

delegate("Constant", (19, 21), to_version=13)  # 19: float8 values, 21: int4 values
delegate("ConstantOfShape", (20, 21), to_version=9)  # 20: float8/bfloat16 value, 21: int4
delegate("Identity", (19, 21), to_version=16)  # float8 / int4 (and optional types from 16)
delegate("Shape", (19, 21), to_version=15)  # float8 / int4 inputs; start/end unchanged since 15
delegate("Flatten", (21,), to_version=13)  # float8 / int4
delegate("Transpose", (21,), to_version=13)  # float8 / int4
delegate("Unsqueeze", (21,), to_version=13)  # float8 / int4; axes stays an input
delegate("IsNaN", (20,), to_version=13)  # float8
delegate("IsInf", (20,), to_version=10)  # float8, bfloat16, float16 inputs
