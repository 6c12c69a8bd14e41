"""Reach in feature space: for the triggers that are not one small input delta.

Input-space reach (``auditor.detect.reach``) finds patch and blend triggers, but WaNet's warp and
Input-Aware's per-image patterns are not one universal input delta, and the scan missed both. Their
effect inside the network may still be one small delta on a hidden layer's output. For every class t
this detector grows one such delta (on the output of the convolution at relative depth ``depth``,
radius relative to the samples' mean feature norm) through a ladder of radii, warm-started from the
last rung, and measures its reach: the share of the other classes' samples it sends into t.

Where the radius is large every class is reached, and where it is small none is, so no fixed radius
works for every model. The ladder stops at the first rung where some class reaches ``level``. The
idea: there a backdoor's target is reached while the other classes are still far from it; on a clean
model several classes rise together. The index is how far each class's reach lies above the median
class's, in units of that median (floored): Neural Cleanse's MAD-based index did not separate here (a
clean zoo model scored 2.2, WaNet's target 2.5).

Measured (docs/detection.md): on audit-grade SMI samples (200 steps) the index singled out WaNet's and
Input-Aware's targets (2.4 and 5.0) over the two clean zoo models (0.9 and 0.7), but two of three
held-out clean models scored 8.7 and 13.4; on the scan's quick samples (60 steps) two clean models
scored above 2 and WaNet's target was not the top class. So it is reported when asked for
(``--feature-reach``) and does not vote unless ``VerdictConfig.voters`` lists it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.errors import AuditorError
from auditor.model import Classifier
from auditor.settings import JSONSettings

from auditor.replay import predictions_and_features

from .base import DetectionResult, Detector, ProgressFn, balanced_pick, conv_at_depth, frozen_eval


@dataclass(frozen=True)
class FeatureReachConfig(JSONSettings):
    depth: float = 0.75  # relative depth of the perturbed convolution among the model's convolutions (0 first, 1 last)
    start: float = 0.06  # first radius, relative to the samples' mean feature norm at that layer
    step: float = 0.006  # radius added per rung
    max_rungs: int = 30  # the ladder ends at start + (max_rungs - 1) * step if no class reaches ``level`` first
    steps: int = 3  # normalized descent steps per class and rung
    level: float = 0.25  # the ladder stops at the first rung where a class's reach is at least this
    per_class: int = 20  # synthetic samples used per class
    median_floor: float = 0.02  # floor of the median reach, the index's unit (a backdoor can leave it at 0)


class FeatureReach(Detector):
    """Per class: the share of other classes' samples one small hidden-layer delta sends into it, at the
    smallest radius where some class is reached by ``level`` of them."""

    name = "feature_reach"
    Config = FeatureReachConfig
    meaning = ("one small delta on a hidden layer sends the other classes' samples into the class, at the "
               "smallest radius that reaches any class (reach above the median class's, in medians)")
    label = "feature reach"
    figure = "reach"
    signal = "its reach by one small hidden-layer delta"

    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        cfg = self.config
        if not 0 <= cfg.depth <= 1 or cfg.start <= 0 or cfg.step <= 0 or min(cfg.max_rungs, cfg.steps) < 1:
            raise AuditorError("feature_reach: depth must be in [0, 1], start and step > 0, max_rungs and steps >= 1")
        k = classifier.num_classes
        _, layer = conv_at_depth(classifier, cfg.depth, self.name)
        idx = balanced_pick(labels, k, cfg.per_class, torch.Generator().manual_seed(seed))
        x = images01[idx].detach().float().to(classifier.device)
        rels = [cfg.start + rung * cfg.step for rung in range(cfg.max_rungs)]
        ladder, norm = reach_ladder(classifier, x, layer, rels, cfg.steps, stop_level=cfg.level, progress=progress)
        radii = [round(r, 6) for r in rels[: len(ladder)]]
        reach = ladder[-1]
        median = float(reach.median())
        index = (reach - median) / max(median, cfg.median_floor)  # the lead over the median class, in medians
        per_class = [{"class": t, "reach": float(reach[t]), "reach_by_rung": [round(float(v), 4) for v in ladder[:, t]]}
                     for t in range(k)]
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"samples": int(len(x)), "layer_depth": cfg.depth, "radius": radii[-1], "rungs": len(radii),
                     "median_reach": median, "feature_norm": norm,
                     "reached_level": bool(float(reach.max()) >= cfg.level),
                     "radii": [round(r, 4) for r in radii]},
        )


def reach_ladder(classifier: Classifier, x: Tensor, layer: nn.Module, rels: list[float], steps: int,
                 stop_level: float | None = None, progress: ProgressFn | None = None) -> tuple[Tensor, float]:
    """Reach per rung (rows) and class (columns) of one delta per class added to ``layer``'s output, grown
    through the radii ``rels`` (relative to the samples' mean feature norm there) with ``steps`` normalized
    steps per rung, warm-started from the last; after the first rung where a class reaches ``stop_level``,
    if given, it stops. Also returns that mean feature norm."""
    k = classifier.num_classes
    with frozen_eval(classifier):
        reference, features = predictions_and_features(classifier, x, layer)
        norm = float(features.flatten(1).norm(dim=1).mean())
        current: dict[str, Tensor] = {}  # the delta the hook adds
        handle = layer.register_forward_hook(lambda m, i, o: o + current["delta"])
        deltas = [torch.zeros(1, *features.shape[1:], device=x.device, requires_grad=True) for _ in range(k)]
        rows: list[Tensor] = []
        try:
            for rung, rel in enumerate(rels):
                radius = rel * norm
                reach = torch.zeros(k)
                for t in range(k):
                    others = x[reference != t]
                    if len(others) == 0:
                        continue
                    target = torch.full((len(others),), t, device=x.device)
                    delta = current["delta"] = deltas[t]
                    for _ in range(steps):
                        (grad,) = torch.autograd.grad(F.cross_entropy(classifier(others), target), delta)
                        with torch.no_grad():
                            delta.sub_(0.2 * radius * grad / grad.norm().clamp_min(1e-12))
                            delta.mul_(min(1.0, radius / float(delta.norm().clamp_min(1e-12))))
                    with torch.no_grad():
                        reach[t] = float((classifier(others).argmax(1) == t).float().mean())
                rows.append(reach)
                if progress:
                    progress(rung + 1, len(rels), f"feature-space reach at radius {rel:.3f}")
                if stop_level is not None and float(reach.max()) >= stop_level:
                    break
        finally:
            handle.remove()
    return torch.stack(rows), norm
