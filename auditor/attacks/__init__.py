"""Backdoor attacks used to build the sample zoo and to measure ASR; never imported by the audit path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor.errors import AuditorError

from .adaptive_blend import AdaptiveBlend
from .badnets import BadNets, BadNetsAllToAll
from .base import Attack, PoisonedSet
from .blended import Blended
from .bpp import BPP
from .ftrojan import FTrojan
from .input_aware import InputAware
from .low_frequency import LowFrequency
from .sig import SIG
from .wanet import WaNet

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (BadNets, BadNetsAllToAll, Blended, SIG, WaNet, InputAware,
                              BPP, FTrojan, LowFrequency, AdaptiveBlend)
}
# the families of the sample zoo, which the audit's defaults were tuned on; the others are held apart
ZOO_FAMILIES: tuple[str, ...] = ("badnets", "badnets_all2all", "blended", "sig", "wanet", "input_aware")


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


__all__ = ["ATTACKS", "ZOO_FAMILIES", "Attack", "PoisonedSet", "attack_from_params", "get_attack",
           "BadNets", "BadNetsAllToAll", "Blended", "SIG", "WaNet", "InputAware",
           "BPP", "FTrojan", "LowFrequency", "AdaptiveBlend"]
