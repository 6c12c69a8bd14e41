"""One verdict from the detectors' anomaly indices: ``clean``, ``suspicious`` or ``backdoored``.

The primary signal is Neural Cleanse's index (the issue's rule: a class whose reversed trigger is
an outlier on the small side, index above 2, is a backdoor target). The weight-perturbation
signal is reported but does not vote by default (``aux_threshold=None``): on clean CIFAR-10
models worst-case weights send most flips to one "sink" class, so on its own it flags clean
models (see docs/detection.md). When enabled, it alone makes a model ``suspicious``, and
together with a borderline Neural Cleanse index on the same class, ``backdoored``. All
thresholds are configurable (``auditor scan --threshold/--suspicious-threshold``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .base import DetectionResult

VERDICTS = ("clean", "suspicious", "backdoored")  # in order of severity


@dataclass(frozen=True)
class VerdictConfig:
    threshold: float = 2.0  # Neural Cleanse index above which a class is a backdoor target
    suspicious_threshold: float = 1.5  # Neural Cleanse index above which a class is suspicious
    aux_threshold: float | None = None  # weight-perturbation index above which a class is suspicious (None: off)
    corroborate: bool = True  # NC above suspicious_threshold + aux above aux_threshold on one class = backdoored
    primary: str = "neural_cleanse"
    auxiliary: str = "weight_perturbation"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    verdict: str
    score: float  # the primary detector's largest anomaly index (0 when none is positive)
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


def combine(results: dict[str, DetectionResult], config: VerdictConfig = VerdictConfig(),
            class_names: list[str] | None = None) -> Verdict:
    """The verdict from every detector's per-class index (see the module docstring for the rule)."""
    name = (lambda t: f"{t} ({class_names[t]})") if class_names else str
    primary = results.get(config.primary)
    aux = results.get(config.auxiliary)
    nc = primary.index if primary is not None else []
    ax = aux.index if aux is not None else []
    score = max([0.0, *nc])
    reasons: list[str] = []
    targets: dict[int, float] = {}
    severity = 0
    for t, value in enumerate(nc):
        if value > config.threshold:
            targets[t] = value
            severity = 2
            reasons.append(f"class {name(t)}: reversed trigger is an outlier (anomaly index {value:.2f} > "
                           f"{config.threshold:g})")
    for t, value in enumerate(ax if config.aux_threshold is not None else []):
        if value <= config.aux_threshold or t in targets:
            continue
        nc_t = nc[t] if t < len(nc) else 0.0
        if config.corroborate and nc_t > config.suspicious_threshold:
            targets[t] = nc_t
            severity = 2
            reasons.append(f"class {name(t)}: small trigger (index {nc_t:.2f}) and worst-case weights flip "
                           f"predictions into it (index {value:.2f})")
        else:
            targets.setdefault(t, nc_t)
            severity = max(severity, 1)
            reasons.append(f"class {name(t)}: worst-case weights flip predictions into it (index {value:.2f} > "
                           f"{config.aux_threshold:g})")
    for t, value in enumerate(nc):
        if config.suspicious_threshold < value <= config.threshold and t not in targets:
            targets[t] = value
            severity = max(severity, 1)
            reasons.append(f"class {name(t)}: reversed trigger is small (anomaly index {value:.2f} > "
                           f"{config.suspicious_threshold:g})")
    if not reasons:
        reasons.append(f"no class stands out (largest anomaly index {score:.2f} <= {config.suspicious_threshold:g})")
    ordered = sorted(targets, key=lambda t: (-targets[t], t))
    return Verdict(VERDICTS[severity], score, ordered, reasons, config)


def worst(verdicts: list[str]) -> str:
    """The most severe of several verdicts (``clean`` for none)."""
    return max(verdicts, key=VERDICTS.index, default="clean")


def fails(verdict: str, fail_on: str) -> bool:
    """Whether ``verdict`` fails a gate set to ``fail_on`` (backdoored, suspicious or never)."""
    if fail_on == "never":
        return False
    return VERDICTS.index(verdict) >= VERDICTS.index(fail_on)
