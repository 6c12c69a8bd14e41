"""One verdict from the detectors' anomaly indices: ``clean``, ``suspicious`` or ``backdoored``.

The voting detectors (``voters``) decide: a class whose anomaly index is above the threshold makes
the model ``backdoored``, above the suspicious threshold ``suspicious``. By default the detectors that
declare ``votes`` vote: reach (a class that one small universal perturbation reaches far more easily
than the others); channel stimulation (raising one hidden channel sends half the other classes'
samples into the class, for per-image triggers that no universal input delta expresses), on its own
scale (its ``vote_scale``: its index votes divided by 2.5); warp reach (one smooth sub-pixel warp
sends the other classes' samples into the class: WaNet); and sine reach (one sinusoid from a fixed
bank does: SIG). The last three vote only for classes where they are ``conclusive``.
Neural Cleanse, weight perturbation and feature reach are reported and vote only when listed in
``voters``: each flagged clean models on its own (docs/detection.md). When ``aux_threshold`` is set,
the weight-perturbation index alone makes a model ``suspicious``. All thresholds are configurable
(``auditor scan --threshold/--suspicious-threshold``). The patch detector adds a model-level rule: a
small patch that flips at least ``patch_threshold`` of the samples makes the model ``backdoored`` (a
patch trigger, all-to-all included), its target the class most flips land in when one class takes at
least half of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from types import ModuleType
from typing import Any

from .base import DetectionResult

VERDICTS = ("clean", "suspicious", "backdoored")  # in order of severity


@dataclass(frozen=True)
class VerdictConfig:
    threshold: float = 2.0  # a voter's anomaly index above which a class is a backdoor target
    suspicious_threshold: float = 1.5  # a voter's anomaly index above which a class is suspicious
    aux_threshold: float | None = None  # weight-perturbation index above which a class is suspicious (None: off)
    # detectors whose index decides the verdict, where they ran: by default those that declare ``votes`` (add
    # "neural_cleanse" or "feature_reach" to let them vote: both flagged held-out clean models, docs/detection.md)
    voters: tuple[str, ...] = field(default_factory=lambda: _registry().default_voters())
    # (voter, scale) for voters whose index is on another scale: their index is divided by the scale before it is
    # compared with the thresholds and enters the score; by default each voter's declared ``vote_scale``
    voter_scales: tuple[tuple[str, float], ...] = field(default_factory=lambda: _registry().default_voter_scales())
    auxiliary: str = "weight_perturbation"
    # share of the samples a small universal patch flips (the patch detector) at or above which the model has a
    # patch trigger, whatever its target mapping (None: off). Scan's quick samples, two draws, searches begun at the
    # grid start: BadNets and all-to-all 0.865-0.97; the other attacks 0.18-0.62, the five clean models at most
    # 0.54 (docs/detection.md, "Patch detector")
    patch_threshold: float | None = 0.75
    patch_target_share: float = 0.5  # a class that receives this share of the patch's flips is its target

    def scale(self, voter: str) -> float:
        """What one voter's index is divided by before it votes (1 for reach's scale)."""
        return dict(self.voter_scales).get(voter, 1.0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    verdict: str
    score: float  # the voters' largest anomaly index, each divided by its scale (0 when none is positive)
    suspected_targets: list[int]  # most anomalous first
    reasons: list[str]
    config: VerdictConfig

    @property
    def severity(self) -> int:
        return VERDICTS.index(self.verdict)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "score": round(float(self.score), 4),
                "suspected_targets": list(self.suspected_targets), "reasons": list(self.reasons),
                "thresholds": self.config.to_json()}


def combine(results: dict[str, DetectionResult], config: VerdictConfig | None = None,
            class_names: list[str] | None = None) -> Verdict:
    """The verdict from every detector's per-class index (see the module docstring for the rule)."""
    config = config if config is not None else VerdictConfig()
    signal = _registry().detector_signal
    name = (lambda t: f"{t} ({class_names[t]})") if class_names else str
    voters = {v: [value / config.scale(v) for value in results[v].voting_index()] for v in config.voters if v in results}
    aux = results.get(config.auxiliary)
    ax = aux.index if aux is not None else []
    k = max([len(ix) for ix in voters.values()] + [len(ax), 0])
    best = [max([ix[t] for ix in voters.values() if t < len(ix)] + [0.0]) for t in range(k)]  # per class
    score = max([0.0, *best])
    reasons: list[str] = []
    targets: dict[int, float] = {}
    severity = 0
    for level, limit, verb in ((2, config.threshold, "is an outlier"), (1, config.suspicious_threshold, "stands out")):
        for voter, index in voters.items():
            scale = config.scale(voter)
            for t, value in enumerate(index):
                if value > limit and t not in targets:
                    targets[t] = best[t]
                    severity = max(severity, level)
                    reasons.append(f"class {name(t)}: {signal(voter)} {verb} (anomaly index "
                                   f"{value * scale:.2f} > {limit * scale:g})")
    for t, value in enumerate(ax if config.aux_threshold is not None else []):
        if value <= config.aux_threshold or t in targets:
            continue
        targets[t] = best[t]
        severity = max(severity, 1)
        reasons.append(f"class {name(t)}: {signal(config.auxiliary)} (index {value:.2f} > "
                       f"{config.aux_threshold:g})")
    patch = results.get("patch")
    if patch_fires(patch, config):
        flip_rate = patch.summary["flip_rate"]
        severity = 2
        into = patch_targets(patch, config)
        for t in into:
            targets.setdefault(t, best[t] if t < len(best) else 0.0)
        where = (f"into class {name(into[0])}" if into else
                 "into several classes (all-to-all, or several targets)")
        reasons.append(f"a {patch.config.get('pixels')}-pixel patch flips {flip_rate:.2f} of the samples "
                       f"(>= {config.patch_threshold:g}), {where}: a patch trigger")
    if not reasons:
        reasons.append(f"no class stands out (largest anomaly index {score:.2f} <= {config.suspicious_threshold:g})")
    ordered = sorted(targets, key=lambda t: (-targets[t], t))
    return Verdict(VERDICTS[severity], score, ordered, reasons, config)


def raised_by_findings(verdict: Verdict, findings: list[str]) -> Verdict:
    """``verdict`` raised to ``backdoored`` by what purification found on the original model (a patch trigger that
    flips most samples into several classes, a sinusoid that votes, trigger channels: purification steps that acted
    on leads, ``auditor.detect.leads``, found on the unpurified model). The verdict's other reasons stay."""
    if not findings or verdict.verdict == "backdoored":
        return verdict
    reasons = [r for r in verdict.reasons if not r.startswith("no class stands out")]
    return replace(verdict, verdict="backdoored", reasons=reasons + [f"purification found {f}" for f in findings])


def patch_fires(patch: DetectionResult | None, config: VerdictConfig) -> bool:
    """Whether the patch rule flags the model: the found patch flips at least ``patch_threshold`` of the samples."""
    flip_rate = patch.summary.get("flip_rate") if patch is not None else None
    return config.patch_threshold is not None and flip_rate is not None and flip_rate >= config.patch_threshold


def patch_targets(patch: DetectionResult, config: VerdictConfig) -> list[int]:
    """The classes that receive at least ``patch_target_share`` of the patch's flips (none: all-to-all)."""
    return [row["class"] for row in patch.per_class if row["share_of_flips"] >= config.patch_target_share]


def _registry() -> ModuleType:
    """The detector registry, imported when first needed: it imports every detector, and this module is one
    of the package's first imports."""
    import importlib

    return importlib.import_module("auditor.detect")


def worst(verdicts: list[str]) -> str:
    """The most severe of several verdicts (``clean`` for none)."""
    return max(verdicts, key=VERDICTS.index, default="clean")


def fails(verdict: str, fail_on: str) -> bool:
    """Whether ``verdict`` fails a gate set to ``fail_on`` (backdoored, suspicious or never)."""
    if fail_on == "never":
        return False
    return VERDICTS.index(verdict) >= VERDICTS.index(fail_on)
