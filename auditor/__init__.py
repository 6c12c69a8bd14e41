"""auditor: find and remove backdoors in ONNX image classifiers without clean data.

The stable Python surface (docs/api.md)::

    from auditor import audit, scan, inspect, AuditOptions, ScanOptions

The names are imported on first use, so that ``import auditor`` (and the command line's start) does not
pay for torch until a function runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "audit", "scan", "inspect",
    "AuditOptions", "ScanOptions", "InspectOptions",
    "AuditResult", "ScanResult", "InspectResult",
    "__version__",
]

# name -> the module that defines it
_LAZY = {
    "audit": "auditor.api", "scan": "auditor.api", "inspect": "auditor.api",
    "AuditResult": "auditor.api", "ScanResult": "auditor.api", "InspectResult": "auditor.api",
    "AuditOptions": "auditor.options", "ScanOptions": "auditor.options", "InspectOptions": "auditor.options",
}

if TYPE_CHECKING:  # pragma: no cover
    from .api import AuditResult, InspectResult, ScanResult, audit, inspect, scan
    from .options import AuditOptions, InspectOptions, ScanOptions


def __getattr__(name: str) -> Any:
    """Import an API name on first use (PEP 562)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'auditor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
