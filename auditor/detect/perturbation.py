"""Where do predictions go when the weights are pushed to their worst case?

The inner problem of stabilized inversion perturbs the weights adversarially (one ascent step,
per layer relative to its norm). On a backdoored model such perturbations tend to wake the
backdoor (the observation behind Adversarial Neuron Pruning, Wu & Wang 2021): the predictions
that flip go disproportionately to the target class. For every class t this detector measures
the share of synthetic samples of the other classes that flip *into* t under the worst-case
weights, over a few radii, and scores it with the same anomaly index as Neural Cleanse, on the
high side. It costs a few forward/backward passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from auditor.inversion.stability import named_trainable
from auditor.model import Classifier
from auditor.settings import JSONSettings

from .base import DetectionResult, Detector, ProgressFn, anomaly_index, balanced_pick


@dataclass(frozen=True)
class WeightPerturbationConfig(JSONSettings):
    radii: tuple[float, ...] = (0.02, 0.05, 0.1)  # per-layer relative radius of the worst-case weights
    ascent_steps: int = 3  # ascent steps per radius (projected back onto the radius)
    per_class: int = 30  # synthetic samples used per class


class WeightPerturbation(Detector):
    """Per class: the share of other classes' samples that flip into it under worst-case weights."""

    name = "weight_perturbation"
    Config = WeightPerturbationConfig
    meaning = "predictions flip into the class under worst-case weight perturbations (anomaly index, high side)"
    label = "weight perturbation"
    figure = "flip_in_share"
    signal = "worst-case weights flip predictions into it"

    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        cfg = self.config
        k = classifier.num_classes
        device = classifier.device
        idx = balanced_pick(labels, k, cfg.per_class, torch.Generator().manual_seed(seed))
        x = images01[idx].to(device)
        was_training = classifier.training
        classifier.eval()
        try:
            with torch.no_grad():
                reference = classifier(x).argmax(1)
            into = torch.zeros(k)
            flipped_total = 0
            per_radius = []
            for r, radius in enumerate(cfg.radii):
                params = _worst_case(classifier, x, reference, radius, cfg.ascent_steps)
                with torch.no_grad():
                    pred = functional_call(classifier, params, (x,), strict=False).argmax(1)
                flips = (pred != reference).cpu()
                counts = torch.bincount(pred.cpu()[flips], minlength=k).float()
                into += counts
                flipped_total += int(flips.sum())
                per_radius.append({"radius": radius, "flipped": float(flips.float().mean())})
                if progress:
                    progress(r + 1, len(cfg.radii), f"radius {radius}")
        finally:
            classifier.train(was_training)
        ref = reference.cpu()
        others = torch.tensor([float((ref != t).sum()) for t in range(k)]).clamp_min(1) * len(cfg.radii)
        share = into / others
        index = anomaly_index(share, side="high", floor=0.01)  # a share of 1% is the resolution that matters
        per_class = [{"class": t, "flip_in_share": float(share[t]), "flips_in": int(into[t]),
                      "predicted_as": int((ref == t).sum())} for t in range(k)]
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"samples": int(len(x)), "flipped_total": flipped_total, "per_radius": per_radius},
        )


def _worst_case(classifier: Classifier, x: Tensor, y: Tensor, radius: float, steps: int) -> dict[str, Tensor]:
    """Projected gradient ascent on CE over the weights, each layer within ``radius * |theta_l|``."""
    base = {n: p.detach() for n, p in named_trainable(classifier).items()}
    delta = {n: torch.zeros_like(p) for n, p in base.items()}
    budget = {n: radius * p.norm() for n, p in base.items()}
    for _ in range(max(steps, 1)):
        for d in delta.values():
            d.requires_grad_(True)
        params = {n: base[n] + delta[n] for n in base}
        loss = F.cross_entropy(functional_call(classifier, params, (x,), strict=False), y)
        grads = torch.autograd.grad(loss, list(delta.values()), allow_unused=True)
        with torch.no_grad():
            for (n, d), g in zip(delta.items(), grads):
                if g is None:
                    continue
                step = d + budget[n] / max(steps, 1) * g / (g.norm() + 1e-12)
                norm = step.norm()
                delta[n] = (step * torch.clamp(budget[n] / (norm + 1e-12), max=1.0)).detach()
    return {n: base[n] + delta[n].detach() for n in base}
