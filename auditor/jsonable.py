"""Plain-JSON conversion for report records."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor


def jsonable(value: Any, digits: int = 6) -> Any:
    """Plain Python types only (floats rounded, non-finite ones as strings), so that json.dumps never
    fails and the same run gives byte-identical JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, digits) for v in value]
    if isinstance(value, Tensor):
        return jsonable(value.tolist(), digits)
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else str(value)
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    return str(value)
