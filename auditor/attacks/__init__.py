"""Backdoor attacks used to build the sample zoo and to measure ASR; never imported by the audit path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor.errors import AuditorError

from .badnets import BadNets, BadNetsAllToAll
from .base import Attack, PoisonedSet
from .blended import Blended
from .input_aware import InputAware
from .sig import SIG
from .wanet import WaNet

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (BadNets, BadNetsAllToAll, Blended, SIG, WaNet, InputAware)
}


def get_attack(name: str, **kwargs: Any) -> Attack:
    """An attack by registry name with its default (BackdoorBench) settings unless overridden."""
    try:
        cls = ATTACKS[name]
    except KeyError:
        raise AuditorError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}") from None
    return cls(**kwargs)


def attack_from_params(params: dict[str, Any], base_dir: str | Path | None = None) -> Attack:
    """Rebuild an attack from the JSON a manifest stores (``Attack.params()``)."""
    name = params.get("name")
    if name not in ATTACKS:
        raise AuditorError(f"unknown attack {name!r} in parameters; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name].from_params(params, base_dir)


__all__ = ["ATTACKS", "Attack", "PoisonedSet", "attack_from_params", "get_attack",
           "BadNets", "BadNetsAllToAll", "Blended", "SIG", "WaNet", "InputAware"]
