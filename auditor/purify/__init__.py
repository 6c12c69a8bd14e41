"""Backdoor removal on the converted graph, one class per method behind ``Purifier`` (like the attacks).

    purifier = get_purifier("ibau", rounds=3)
    result = purifier.purify(classifier, synthetic_images, synthetic_labels)   # in place
    report = guarded_purify(classifier, purifier, train_x, train_y, holdout_x, holdout_y, GuardConfig())

Each purifier takes real clean images the same way as synthetic ones (pass ``data_source="clean"``).
"""

from __future__ import annotations

from typing import Any

from auditor.errors import AuditorError

from .anp import ANP, ANPConfig
from .base import ProgressFn, PurifyResult, Purifier
from .clp import CLP, CLPConfig, channel_lipschitz, conv_bn_pairs
from .finetune import Finetune, FinetuneConfig
from .guard import GuardAttempt, GuardConfig, GuardReport, guarded_purify, interpolate, restore, snapshot
from .ibau import IBAU, IBAUConfig

DEFAULT_PURIFIER = "ibau"

PURIFIERS: dict[str, type[Purifier]] = {cls.name: cls for cls in (IBAU, Finetune, CLP, ANP)}


def get_purifier(name: str = DEFAULT_PURIFIER, **config: Any) -> Purifier:
    """A purifier by registry name with its reference defaults unless overridden."""
    try:
        cls = PURIFIERS[name]
    except KeyError:
        raise AuditorError(f"unknown purifier {name!r}; known: {', '.join(list_purifiers())}") from None
    return cls(**config)


def list_purifiers() -> list[str]:
    return sorted(PURIFIERS)


__all__ = ["ANP", "ANPConfig", "CLP", "CLPConfig", "DEFAULT_PURIFIER", "Finetune", "FinetuneConfig", "GuardAttempt", "GuardConfig",
           "GuardReport", "IBAU", "IBAUConfig", "PURIFIERS", "ProgressFn", "PurifyResult", "Purifier",
           "channel_lipschitz", "conv_bn_pairs", "get_purifier", "guarded_purify", "interpolate", "list_purifiers", "restore",
           "snapshot"]
