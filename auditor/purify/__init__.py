"""Backdoor removal on the converted graph: a recipe of steps (the default) or one whole method, behind ``Purifier``.

    purifier = get_purifier()                                  # the default recipe (DEFAULT_STEPS)
    purifier = get_purifier("recipe", steps="ibau,clp", rounds=5)
    purifier = get_purifier("ibau")                             # one step alone: the reference I-BAU rounds
    result = purifier.purify(classifier, synthetic_images, synthetic_labels)   # in place
    report = guarded_purify(classifier, purifier, train_x, train_y, holdout_x, holdout_y, GuardConfig())

The steps (``STEPS``) are one module each; ``auditor.purify.step`` says how to add one. Each purifier
takes real clean images the same way as synthetic ones (pass ``data_source="clean"``).
"""

from __future__ import annotations

from typing import Any

from auditor.errors import AuditorError

from .anp import ANP, AnchoredANP, AnchoredANPConfig, ANPConfig
from .base import ProgressFn, PurifyResult, Purifier, StepRecord
from .channel_zeroing import ChannelZeroing, ChannelZeroingConfig
from .clp import CLP, AnchoredCLPConfig, CLPConfig, CLPStep, channel_lipschitz, conv_bn_pairs
from .finetune import Finetune, FinetuneConfig, FinetuneStep
from .guard import GuardAttempt, GuardConfig, GuardReport, guarded_purify, interpolate, restore, snapshot
from .ibau import IBAU, IBAUConfig
from .patch_unlearning import PatchUnlearning, PatchUnlearningConfig
from .recipe import DEFAULT_STEPS, STEPS, Recipe, list_steps, parse_steps
from .signal_unlearning import SignalUnlearning, SignalUnlearningConfig
from .step import RecipeConfig, Step, StepContext

DEFAULT_PURIFIER = "recipe"

PURIFIERS: dict[str, type[Purifier]] = {cls.name: cls for cls in (Recipe, Finetune, CLP, ANP)}


def get_purifier(name: str = DEFAULT_PURIFIER, **config: Any) -> Purifier:
    """A purifier by registry name with its reference defaults unless overridden; a step name, or several
    joined by commas (``"patch,ibau"``), is a recipe of those steps."""
    cls = PURIFIERS.get(name)
    if cls is not None:
        return cls(**config)
    try:
        steps = parse_steps(name)
    except AuditorError:
        raise AuditorError(f"unknown purifier {name!r}; known: {', '.join(list_purifiers())}, or steps joined by "
                           f"commas from: {', '.join(list_steps())}") from None
    if "steps" in config:
        raise AuditorError(f"purifier {name!r} names its steps already; leave out the 'steps' option")
    return Recipe(steps=steps, **config)


def list_purifiers() -> list[str]:
    return sorted(PURIFIERS)


__all__ = ["ANP", "ANPConfig", "AnchoredANP", "AnchoredANPConfig", "AnchoredCLPConfig", "CLP", "CLPConfig", "CLPStep", "ChannelZeroing",
           "ChannelZeroingConfig", "DEFAULT_PURIFIER", "DEFAULT_STEPS", "Finetune", "FinetuneConfig", "FinetuneStep",
           "GuardAttempt", "GuardConfig", "GuardReport", "IBAU", "IBAUConfig", "PURIFIERS", "PatchUnlearning",
           "PatchUnlearningConfig", "ProgressFn", "PurifyResult", "Purifier", "Recipe", "RecipeConfig", "STEPS",
           "SignalUnlearning", "SignalUnlearningConfig", "Step", "StepContext", "StepRecord", "channel_lipschitz",
           "conv_bn_pairs", "get_purifier", "guarded_purify", "interpolate", "list_purifiers", "list_steps",
           "parse_steps", "restore", "snapshot"]
