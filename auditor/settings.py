"""Settings of a registered part (detector, purifier, purification step): a frozen dataclass with overrides."""

from __future__ import annotations

import dataclasses
from typing import Any

from auditor.errors import AuditorError


def configured(config_class: type, config: Any | None, overrides: dict[str, Any], kind: str, name: str) -> Any:
    """``config`` (else ``config_class``'s defaults) with ``overrides`` applied; an unknown option is an
    ``AuditorError`` that names ``kind`` and ``name`` and lists the known options."""
    config = config if config is not None else config_class()
    try:
        return dataclasses.replace(config, **overrides)
    except TypeError as exc:
        known = ", ".join(f.name for f in dataclasses.fields(config_class))
        raise AuditorError(f"bad option for {kind} {name!r} ({exc}); known: {known}") from None


class JSONSettings:
    """``to_json`` for a settings dataclass (a detector's config): its fields as a dict."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
