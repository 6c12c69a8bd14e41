"""The guard: a purified model must not silently lose its accuracy.

Agreement between the original and the purified model is measured on synthetic samples held out
from purification (no clean data is needed). A run that agrees too little is undone and retried
with the purifier's milder config; when no attempt passes, the original model is restored (or the
mildest attempt kept, if the caller asks for that) and the report says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from auditor.errors import AuditorError
from auditor.model import Classifier

from auditor.jsonable import jsonable

from .base import ProgressFn, PurifyResult, Purifier, predict_logits


@dataclass(frozen=True)
class GuardConfig:
    # The measurements behind these thresholds are in docs/purification.md ("The guard").
    min_agreement: float = 0.9  # holdout agreement with the original model's predictions needed to accept
    min_prior_agreement: float = 0.75  # prior-probe agreement needed where no detection ran
    min_prior_agreement_backdoored: float | None = 0.70  # ... where a backdoor was found (detection or purifier)
    min_prior_agreement_unflagged: float | None = 0.85  # ... where the detection found none (clean or suspicious)
    unflagged_interpolation: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)  # the ladder then
    max_backoffs: int = 3  # milder retries after the first attempt
    interpolation: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5)  # shares of a failed change tried before a rerun
    max_accuracy_drop: float | None = None  # also bound the drop in holdout accuracy vs given labels, if set
    on_exhausted: Literal["restore", "accept_mildest"] = "restore"  # when no attempt passes

    def for_verdict(self, verdict: str | None) -> "GuardConfig":
        """The thresholds for a model the detection judged ``verdict`` (None: no detection ran)."""
        if verdict == "backdoored" and self.min_prior_agreement_backdoored is not None:
            return dataclasses.replace(self, min_prior_agreement=self.min_prior_agreement_backdoored)
        if verdict in ("clean", "suspicious") and self.min_prior_agreement_unflagged is not None:
            return dataclasses.replace(self, min_prior_agreement=self.min_prior_agreement_unflagged,
                                       interpolation=self.unflagged_interpolation)
        return self

    def prior_threshold(self, result: PurifyResult) -> float:
        """The prior-probe threshold for one attempt: a backdoor the purifier found buys the detected budget."""
        if result.findings and self.min_prior_agreement_backdoored is not None:
            return min(self.min_prior_agreement, self.min_prior_agreement_backdoored)
        return self.min_prior_agreement


@dataclass
class GuardAttempt:
    attempt: int
    purifier: str
    config: dict[str, Any]
    agreement: float  # holdout: purified prediction == original prediction
    prior_agreement: float | None  # the same on the prior probe (None without one)
    accuracy: float | None  # holdout: purified prediction == given label (None without labels)
    passed: bool
    result: PurifyResult
    interpolation: float = 1.0  # share of the attempt's weight change kept (1.0: the purifier's own weights)
    prior_threshold: float | None = None  # the prior agreement this attempt needed (None without a prior probe)


@dataclass
class GuardReport:
    """Every attempt, and what the guard finally did to the model."""

    status: Literal["accepted", "accepted_after_backoff", "accepted_mildest_below_threshold", "rejected"]
    message: str
    guard: dict[str, Any]
    original_accuracy: float | None
    holdout_size: int
    prior_size: int = 0
    attempts: list[GuardAttempt] = field(default_factory=list)
    final: PurifyResult | None = None  # the result whose weights the model now holds (None when restored)

    @property
    def purified(self) -> bool:
        return self.status != "rejected"

    def to_json(self) -> dict[str, Any]:
        return jsonable({
            "status": self.status,
            "message": self.message,
            "guard": self.guard,
            "original_accuracy": self.original_accuracy,
            "holdout_size": self.holdout_size,
            "attempts": [{**{k: v for k, v in dataclasses.asdict(a).items() if k != "result"},
                          "result": a.result.to_json()} for a in self.attempts],
            "final": self.final.to_json() if self.final is not None else None,
        })


def snapshot(classifier: Classifier) -> dict[str, Tensor]:
    """Copies of every parameter and buffer (frozen ones too, so any accidental change is undone)."""
    state = {f"p:{n}": p.detach().clone() for n, p in classifier.network.named_parameters()}
    state.update({f"b:{n}": b.detach().clone() for n, b in classifier.network.named_buffers()})
    return state


@torch.no_grad()
def restore(classifier: Classifier, state: dict[str, Tensor]) -> None:
    """Copy the snapshot back in place (the Parameter objects stay the ones write-back knows)."""
    for name, param in classifier.network.named_parameters():
        param.copy_(state[f"p:{name}"])
    for name, buffer in classifier.network.named_buffers():
        buffer.copy_(state[f"b:{name}"])


def guarded_purify(
    classifier: Classifier,
    purifier: Purifier,
    train_images: Tensor,
    train_labels: Tensor | None,
    holdout_images: Tensor,
    holdout_labels: Tensor | None = None,
    guard: GuardConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    seed: int = 0,
    data_source: str = "synthetic",
    anchors: Tensor | None = None,
    prior_images: Tensor | None = None,
) -> GuardReport:
    """Purify, check agreement on the holdout (and the prior probe ``prior_images``, unlabelled images
    far from the class modes), back off with milder configs; never keep a silent loss."""
    guard = guard or GuardConfig()
    if not all(0 < alpha < 1 for alpha in guard.interpolation):
        raise AuditorError(f"guard interpolation shares must lie strictly between 0 and 1, got {guard.interpolation}")
    if len(holdout_images) == 0:
        raise AuditorError("the guard needs held-out samples to measure agreement")
    if holdout_labels is not None and len(holdout_labels) != len(holdout_images):
        raise AuditorError(f"{len(holdout_labels)} holdout labels for {len(holdout_images)} images")
    classifier.eval()
    original_state = snapshot(classifier)
    holdout_images = holdout_images.detach().float().cpu()
    original_pred = predict_logits(classifier, holdout_images).argmax(1)
    original_accuracy = _accuracy(original_pred, holdout_labels)
    if prior_images is not None and len(prior_images):
        prior_images = prior_images.detach().float().cpu()
        prior_pred = predict_logits(classifier, prior_images).argmax(1)
    else:
        prior_images = None
    report = GuardReport("rejected", "", dataclasses.asdict(guard), original_accuracy, len(holdout_images),
                         0 if prior_images is None else len(prior_images))

    def check(attempt: int, result: PurifyResult, alpha: float) -> GuardAttempt:
        """Measure the model as it now is against the thresholds, and record the attempt."""
        logits = predict_logits(classifier, holdout_images)
        finite = bool(torch.isfinite(logits).all()) and all(bool(torch.isfinite(p).all())
                                                             for p in classifier.trainable_parameters())
        pred = logits.argmax(1)
        agree = float((pred == original_pred).float().mean()) if finite else 0.0
        accuracy = _accuracy(pred, holdout_labels) if finite else 0.0 if holdout_labels is not None else None
        if not finite and alpha == 1.0:
            result.notes.append("non-finite weights or logits after purification")
        prior_agree = None
        if prior_images is not None:
            prior_agree = (float((predict_logits(classifier, prior_images).argmax(1) == prior_pred).float().mean())
                           if finite else 0.0)
        passed = finite and agree >= guard.min_agreement
        threshold = guard.prior_threshold(result) if prior_agree is not None else None
        if prior_agree is not None:
            passed = passed and prior_agree >= threshold
        if passed and guard.max_accuracy_drop is not None and accuracy is not None and original_accuracy is not None:
            passed = original_accuracy - accuracy <= guard.max_accuracy_drop
        entry = GuardAttempt(attempt, current.name, current.describe(), agree, prior_agree, accuracy,
                             passed, result, alpha, threshold)
        report.attempts.append(entry)
        return entry

    # Interpolation stops just above the thresholds, so it needs the prior probe: the holdout alone (SMI samples,
    # confident by construction) agreed 0.91 with a model at 51% clean accuracy that interpolation produced
    # (pixel inversion, BadNets; docs/purification.md). Without the probe, back off by rerunning only.
    ladder = guard.interpolation if prior_images is not None else ()
    current = purifier
    for attempt in range(guard.max_backoffs + 1):
        if attempt:
            restore(classifier, original_state)
            current = current.milder()
        try:
            result = current.purify(classifier, train_images, train_labels, progress=progress,
                                    generator=torch.Generator().manual_seed(seed), data_source=data_source,
                                    anchors=anchors)
        except BaseException:
            restore(classifier, original_state)  # never leave a half-purified model behind
            raise
        checked = check(attempt, result, 1.0)
        if not checked.passed and checked.agreement > 0:  # finite: try keeping part of the change first
            purified_state = snapshot(classifier)
            for alpha in ladder:
                interpolate(classifier, original_state, purified_state, alpha)
                checked = check(attempt, result, alpha)
                if checked.passed:
                    result.notes.append(f"guard: kept {alpha:g} of the weight change (interpolated towards the "
                                        "original, pruned weights still zero)")
                    break
        if checked.passed:
            result.backoffs = _backoffs(report)
            report.final = result
            report.status = "accepted" if len(report.attempts) == 1 else "accepted_after_backoff"
            how = []
            if attempt:
                how.append(f"{attempt} back-off(s) to a milder config")
            if checked.interpolation < 1.0:
                how.append(f"interpolation to {checked.interpolation:g} of the weight change")
            report.message = (f"{current.name}: holdout agreement {checked.agreement:.3f} >= {guard.min_agreement}"
                              + (f", prior agreement {checked.prior_agreement:.3f} >= {checked.prior_threshold:g}"
                                 if checked.prior_agreement is not None else "")
                              + (f" after {' and '.join(how)}" if how else ""))
            return report

    last = report.attempts[-1]
    if guard.on_exhausted == "accept_mildest":
        last.result.backoffs = _backoffs(report)
        report.final = last.result
        report.status = "accepted_mildest_below_threshold"
        report.message = (f"{purifier.name}: no attempt reached agreement {guard.min_agreement}; kept the mildest "
                          f"(agreement {last.agreement:.3f}) as asked")
    else:
        restore(classifier, original_state)
        report.status = "rejected"
        report.message = (f"guard rejected purification: {purifier.name} never reached holdout agreement "
                          f"{guard.min_agreement}" + (f" with prior agreement {last.prior_threshold:g}"
                                                      if prior_images is not None else "")
                          + f" in {len(report.attempts)} attempt(s) (best holdout "
                          f"{max(a.agreement for a in report.attempts):.3f}"
                          + (f", best prior {max(a.prior_agreement or 0.0 for a in report.attempts):.3f}"
                             if prior_images is not None else "") + "); the original model is kept")
    return report


@torch.no_grad()
def interpolate(classifier: Classifier, original: dict[str, Tensor], purified: dict[str, Tensor], alpha: float) -> None:
    """Set every parameter to original + alpha * (purified - original), in place; entries that the
    purification set to exactly zero (pruned channels and neurons; training never lands on 0.0) stay zero."""
    for name, param in classifier.network.named_parameters():
        before, after = original[f"p:{name}"], purified[f"p:{name}"]
        mixed = before + alpha * (after - before)
        param.copy_(torch.where((after == 0) & (before != 0), torch.zeros_like(mixed), mixed))
    for name, buffer in classifier.network.named_buffers():
        buffer.copy_(purified[f"b:{name}"])


def _accuracy(pred: Tensor, labels: Tensor | None) -> float | None:
    return None if labels is None else float((pred == labels.long().cpu()).float().mean())


def _backoffs(report: GuardReport) -> list[dict[str, Any]]:
    """The failed attempts before the kept one, as back-off events for the PurifyResult."""
    return [{"attempt": a.attempt, "interpolation": a.interpolation, "config": a.config, "agreement": a.agreement,
             "prior_agreement": a.prior_agreement, "accuracy": a.accuracy,
             "reason": "holdout agreement/accuracy below the guard's threshold"}
            for a in report.attempts if not a.passed]
