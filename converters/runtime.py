"""onnxruntime sessions with an explicit, checked choice of execution provider.

onnxruntime and onnxruntime-gpu install the same module; the GPU build also runs without CUDA
by falling back to the CPU after logging errors. We ask for CUDA only when it is really usable
and say in one log line when we fall back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

_LOG = logging.getLogger(__name__)
_warned_fallback = False


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelError(
            "onnxruntime is not installed: pip install 'auditor[cpu]' (or 'auditor[gpu]' on a CUDA machine)"
        ) from exc
    return onnxruntime


def available_providers(device: str = "auto") -> list[str]:
    """Providers to ask for: CUDA first when requested/auto and compiled in, CPU always."""
    ort = _ort()
    have = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def create_session(model: str | Path | bytes, device: str = "auto") -> Any:
    """An InferenceSession on CUDA when usable, else CPU (the fallback is logged once)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the GPU build logs errors for missing CUDA libraries; we report ourselves
    source = str(model) if isinstance(model, Path) else model
    providers = available_providers(device)
    if "CUDAExecutionProvider" in providers:
        try:
            session = ort.InferenceSession(source, sess_options=options, providers=providers)
            if "CUDAExecutionProvider" in session.get_providers():
                return session
        except Exception as exc:  # a broken CUDA install: fall back below
            _LOG.debug("CUDA session failed: %s", exc)
        _warn_fallback("the CUDA provider is installed but not usable here (driver or libraries missing)")
    elif device == "cuda":
        _warn_fallback("this onnxruntime build has no CUDA provider (install auditor[gpu])")
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load the model: {_short(exc)}") from exc


def _warn_fallback(reason: str) -> None:
    global _warned_fallback
    if not _warned_fallback:
        _LOG.warning("onnxruntime: %s; running on CPU", reason)
        _warned_fallback = True


def run_session(session: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run the single-input model in batches and return the first output, float32."""
    name = session.get_inputs()[0].name
    outs = []
    for start in range(0, len(x), batch_size):
        chunk = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
        outs.append(session.run(None, {name: chunk})[0])
    return np.concatenate(outs, axis=0).astype(np.float32, copy=False)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
