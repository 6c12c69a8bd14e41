"""Import onnx2torch whether torchvision is present, missing or broken.

onnx2torch imports torchvision at import time, only for its NonMaxSuppression and RoiAlign
converters. PyPI's torchvision next to a CPU torch build fails with
``operator torchvision::nms does not exist``; with no torchvision the import fails outright.
Classifiers never use those two operators, so a stand-in module is enough while onnx2torch
imports, and it is removed afterwards: a stand-in left in ``sys.modules`` makes ``torch.onnx``
fail later on ``torchvision.__spec__ is None``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from typing import Any

_LOG = logging.getLogger(__name__)
_onnx2torch: Any = None


def _drop_modules(prefix: str) -> dict[str, types.ModuleType]:
    removed = {}
    for name in list(sys.modules):
        if name == prefix or name.startswith(prefix + "."):
            removed[name] = sys.modules.pop(name)
    return removed


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("torchvision is not usable in this environment (needed only for NMS/RoiAlign)")


def import_onnx2torch() -> Any:
    """Return the onnx2torch module, importing it once behind a torchvision guard."""
    global _onnx2torch
    if _onnx2torch is not None:
        return _onnx2torch
    try:
        _onnx2torch = importlib.import_module("onnx2torch")
        return _onnx2torch
    except (ImportError, RuntimeError, OSError, AttributeError) as exc:
        _LOG.debug("onnx2torch import failed (%s); retrying with a torchvision stand-in", exc)
    _drop_modules("onnx2torch")
    saved = _drop_modules("torchvision")
    stub = types.ModuleType("torchvision")
    stub_ops = types.ModuleType("torchvision.ops")
    stub_ops.nms = _unavailable  # type: ignore[attr-defined]
    stub_ops.roi_align = _unavailable  # type: ignore[attr-defined]
    stub.ops = stub_ops  # type: ignore[attr-defined]
    sys.modules["torchvision"] = stub
    sys.modules["torchvision.ops"] = stub_ops
    try:
        _onnx2torch = importlib.import_module("onnx2torch")
    finally:
        for name in ("torchvision", "torchvision.ops"):
            sys.modules.pop(name, None)
        # A broken torchvision stays out of sys.modules so that later imports fail cleanly
        # (ImportError/RuntimeError) instead of finding a half-initialised module.
        del saved
    return _onnx2torch
