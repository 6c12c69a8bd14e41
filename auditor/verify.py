"""Verification: is the purified model safe to ship?

Two pieces of evidence, and the purified model passes only when both are clean:

1. **Residuals of what the audit found.** Every trigger a detector found on the *original* model
   for a class it suspects (reach's universal perturbation, Neural Cleanse's mask and pattern, the
   patch, the sinusoid, the warp) is applied again to the purified model. Its residual is the share
   of probe samples of other classes that it still sends into the target (for a patch with no
   single target: the share it still flips). The probe is samples purification never trained on:
   the synthetic holdout and unconditioned generator samples, labelled by the original model. A
   trigger that still works fails the audit, however clean a re-scan looks.
2. **A fresh look.** The purified model is re-scanned on samples inverted from the purified model
   itself, with another seed, so that the re-scan does not inherit what the original model's
   samples carry; each class's reach before and after is reported.

The verdict on the purified model is the worse of the two (a working residual counts as
``backdoored``), and the report names the evidence that decided it.

Patch evidence into one class does not decide alone. A purification that removed a targeted backdoor
often leaves the model open to a searched small patch into the former target, more than a clean
model is, so the patch search cannot tell a removed backdoor from a kept one; the targeted triggers
(reach's perturbation, Neural Cleanse's mask and pattern) can, and they are carried for that class
too (figures: docs/verification.md, "Calibration against real outcomes"). A patch that flips samples
into several classes (all-to-all) still decides alone: no targeted detector sees it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from .detect import DetectionResult, Verdict, combine
from .detect.verdict import VERDICTS, patch_fires, patch_targets
from .model import Classifier
from .universal import perturb, stamp

Apply = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class VerificationConfig:
    residual_threshold: float = 0.5  # a carried trigger still sending this share of other classes into its target fails
    batch_size: int = 250  # probe images per forward pass


@dataclass
class CarriedTrigger:
    """A trigger found on the original model, as a function of the images."""

    source: str  # the detector that found it
    target: int | None  # the class it sends samples into (None: it flips samples into several classes)
    apply: Apply = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.source} → {'several classes' if self.target is None else f'class {self.target}'}"


@dataclass
class Residual:
    source: str
    target: int | None
    before: float  # share on the original model
    after: float  # share on the purified model
    still_works: bool  # after >= the residual threshold
    decides: bool = True  # False for a patch into one class: it fails the model only with a targeted trigger

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "before": round(self.before, 4),
                "after": round(self.after, 4), "still_works": self.still_works, "decides": self.decides}


def carried_triggers(results: dict[str, DetectionResult], verdict: Verdict) -> list[CarriedTrigger]:
    """The triggers the detection found for the classes its verdict suspects, plus the patch when
    the patch rule fired: what verification re-applies to the purified model."""
    targets = list(verdict.suspected_targets)
    triggers: list[CarriedTrigger] = []
    for t in targets:
        reach = results.get("reach")
        if reach is not None and "delta" in reach.images:
            delta = reach.images["delta"][t]
            triggers.append(CarriedTrigger("reach", t, lambda x, d=delta: perturb(x, d.to(x.device))))
        nc = results.get("neural_cleanse")
        if nc is not None and "mask" in nc.images:
            mask, pattern = nc.images["mask"][t], nc.images["pattern"][t]
            triggers.append(CarriedTrigger("neural_cleanse", t, lambda x, m=mask, p=pattern:
                                           stamp(x, m.to(x.device), p.to(x.device))))
        sine = results.get("sine_reach")
        if sine is not None and "signal" in sine.images and bool(sine.images["signal"][t].abs().sum() > 0):
            wave = sine.images["signal"][t]
            triggers.append(CarriedTrigger("sine_reach", t, lambda x, w=wave: perturb(x, w.to(x.device))))
        warp = results.get("warp_reach")
        if warp is not None and "parameters" in warp.images and bool(warp.images["parameters"][t].abs().sum() > 0):
            from .detect.trigger_family import WarpReach

            params = warp.images["parameters"][t : t + 1]
            detector = WarpReach()
            triggers.append(CarriedTrigger("warp_reach", t, lambda x, p=params, w=detector:
                                           w.apply(x, p.to(x.device)).clamp(0.0, 1.0)))
    patch = results.get("patch")
    if patch is not None and "mask" in patch.images and patch_fires(patch, verdict.config):
        into = patch_targets(patch, verdict.config)
        mask, pattern = patch.images["mask"], patch.images["pattern"]
        triggers.append(CarriedTrigger("patch", into[0] if into else None, lambda x, m=mask, p=pattern:
                                       stamp(x, m.to(x.device), p.to(x.device))))
    return triggers


@torch.no_grad()
def trigger_share(classifier: Classifier, trigger: CarriedTrigger, images01: Tensor, labels: Tensor,
                  batch_size: int = 250) -> float:
    """What the trigger adds: of the samples not of its target, the share the triggered images send
    into the target (for a trigger without one: off their label), minus the share the untouched
    images already go there, so that a model's own bias towards a class is not a residual."""
    keep = labels != trigger.target if trigger.target is not None else torch.ones_like(labels, dtype=torch.bool)
    x, y = images01[keep], labels[keep]
    if len(x) == 0:
        return 0.0
    lift = 0
    for begin in range(0, len(x), batch_size):
        batch = x[begin : begin + batch_size].to(classifier.device)
        want = y[begin : begin + batch_size]
        for sign, images in ((1, trigger.apply(batch)), (-1, batch)):
            pred = classifier(images).argmax(1).cpu()
            lift += sign * int((pred == trigger.target).sum() if trigger.target is not None else (pred != want).sum())
    return max(lift, 0) / len(x)


@dataclass
class Verification:
    """The verdict on the purified model and what decided it."""

    verdict: str  # clean, suspicious or backdoored
    passes: bool
    decided_by: list[str]
    residuals: list[Residual]
    rescan: Verdict | None
    reach: list[dict[str, Any]]  # per class: reach on the original's samples and on the purified model's own

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "passes": self.passes, "decided_by": list(self.decided_by),
                "residuals": [r.to_json() for r in self.residuals], "reach": self.reach}


def residuals_before(classifier: Classifier, triggers: list[CarriedTrigger], images01: Tensor, labels: Tensor,
                     config: VerificationConfig = VerificationConfig()) -> list[float]:
    return [trigger_share(classifier, t, images01, labels, config.batch_size) for t in triggers]


def verify(classifier: Classifier, triggers: list[CarriedTrigger], before: list[float], probe: Tensor,
           probe_labels: Tensor, rescan: Verdict | None, reach_before: DetectionResult | None,
           reach_after: DetectionResult | None, config: VerificationConfig = VerificationConfig(),
           notes: tuple[str, ...] = ()) -> Verification:
    """Combine the residuals on the purified ``classifier`` with the fresh re-scan's verdict (``notes``: what was
    set aside from the re-scan, shown when nothing failed the model)."""
    residuals = []
    for trigger, share_before in zip(triggers, before):
        after = trigger_share(classifier, trigger, probe, probe_labels, config.batch_size)
        residuals.append(Residual(trigger.source, trigger.target, share_before, after,
                                  after >= config.residual_threshold, decides=not _single_target_patch(trigger)))
    decided_by = [f"the {r.source} trigger found on the original model still sends {r.after:.0%} of the probe "
                  f"samples {'into class ' + str(r.target) if r.target is not None else 'off their label'} "
                  f"(was {r.before:.0%}; fails at {config.residual_threshold:.0%})"
                  for r in residuals if r.still_works and r.decides]
    severity = 2 if decided_by else 0
    set_aside = [f"the {r.source} trigger still sends {r.after:.0%} into class {r.target}, but a patch into one "
                 "class does not decide alone" for r in residuals if r.still_works and not r.decides]
    if rescan is not None and rescan.verdict != "clean":
        severity = max(severity, rescan.severity)
        decided_by.append(f"the fresh re-scan of the purified model says {rescan.verdict}: " + "; ".join(rescan.reasons))
    if not decided_by:
        carried = "no carried trigger that decides alone still works" if set_aside else "no carried trigger works any more"
        fresh = "" if rescan is None else (" and nothing in the fresh re-scan decides" if notes
                                          else " and the fresh re-scan is clean")
        decided_by.append(f"{carried} ({len(residuals)} re-applied){fresh}")
        decided_by += set_aside + list(notes)
    return Verification(VERDICTS[severity], severity == 0, decided_by, residuals, rescan,
                        _reach_table(reach_before, reach_after))


def _single_target_patch(trigger: CarriedTrigger) -> bool:
    return trigger.source == "patch" and trigger.target is not None


def without_single_target_patch(results: dict[str, DetectionResult], verdict: Verdict,
                                class_names: list[str] | None = None) -> tuple[Verdict, tuple[str, ...]]:
    """The fresh re-scan's verdict with its patch rule set aside when the patch sends its flips into one class:
    on a purified model that rule alone cannot tell a removed backdoor from a kept one (module docstring); the
    voting detectors still decide, and so does a patch whose flips spread over several classes."""
    patch = results.get("patch")
    if not patch_fires(patch, verdict.config):
        return verdict, ()
    into = patch_targets(patch, verdict.config)
    if not into:
        return verdict, ()
    without = combine(results, dataclasses.replace(verdict.config, patch_threshold=None), class_names)
    if without.severity >= verdict.severity:
        return verdict, ()
    return without, (f"the fresh re-scan's patch rule (a patch flips {patch.summary['flip_rate']:.2f} of the samples "
                     f"into class {into[0]}) does not decide alone on a purified model",)


def _reach_table(before: DetectionResult | None, after: DetectionResult | None) -> list[dict[str, Any]]:
    if before is None or after is None:
        return []
    return [{"class": t, "before": round(float(b["reach"]), 4), "after": round(float(a["reach"]), 4)}
            for t, (b, a) in enumerate(zip(before.per_class, after.per_class))]
