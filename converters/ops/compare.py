"""GreaterOrEqual/LessOrEqual 16 and Equal 19.

These versions only widen the type list (bfloat16 at 16, strings at 19); for numeric tensors
the result is identical, so they delegate to onnx2torch's previous converter.
"""

from __future__ import annotations

from ._common import delegate

delegate("GreaterOrEqual", (16,), to_version=12)
delegate("LessOrEqual", (16,), to_version=12)
delegate("Equal", (19,), to_version=13)
