"""How large a margin can any input give each class? (MM-BD, Wang et al., IEEE S&P 2024)

Backdoor training teaches the model that a trigger, whatever the rest of the image, means the
target class, and it learns that with an abnormally large logit margin: the maximum over all
inputs of ``z_t(x) - max_{k != t} z_k(x)`` is far larger for the target than for natural classes.
The statistic needs no samples at all (projected gradient ascent from random images), and it
does not care what the trigger looks like: patch, blend, warp or clean-label signal. Scored with
the anomaly index on the high side, and with MM-BD's p-value of the largest margin under a Gamma
distribution fitted to the other classes' margins.

Measured on the zoo (docs/detection.md) it found no backdoor's target and gave a clean model the
largest index: on 78k-parameter networks natural classes reach margins as large as a trigger
gives. It is in the registry for larger models and for comparison (``--detector max_margin``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.errors import AuditorError
from auditor.model import Classifier
from auditor.settings import JSONSettings

from .base import DetectionResult, Detector, ProgressFn, anomaly_index, frozen_eval


@dataclass(frozen=True)
class MaxMarginConfig(JSONSettings):
    starts: int = 8  # random starting images per class; the class's statistic is the best of them
    steps: int = 300  # projected Adam ascent steps on the pixels (MM-BD: 300)
    lr: float = 0.05  # Adam step in [0, 1] pixel units
    floor: float = 0.05  # MAD floor of the anomaly index, relative to the median margin


class MaxMargin(Detector):
    """Per class: the largest logit margin any input in [0, 1] reaches (no samples needed)."""

    name = "max_margin"
    Config = MaxMarginConfig
    meaning = "some input gives the class an abnormally large logit margin (anomaly index, high side)"
    label = "max margin"
    figure = "max_margin"
    signal = "some input gives it an abnormally large logit margin"
    uses_samples = False

    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        cfg = self.config
        k = classifier.num_classes
        if k < 3:
            raise AuditorError(f"{self.name}: needs at least 3 classes for an outlier test, the model has {k}")
        margins = class_max_margins(classifier, cfg.starts, cfg.steps, cfg.lr, seed=seed, progress=progress)
        best = margins.max(1).values
        index = anomaly_index(best, side="high", floor=cfg.floor)
        top = int(best.argmax())
        p = gamma_tail(best, top)
        per_class = [{"class": t, "max_margin": float(best[t])} for t in range(k)]
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"median_margin": float(best.median()), "top_class": top, "p_value": p},
        )


def class_max_margins(classifier: Classifier, starts: int, steps: int, lr: float, *, seed: int = 0,
                      progress: ProgressFn | None = None) -> Tensor:
    """(K, starts) margins z_t - max_{k != t} z_k reached by projected Adam ascent from uniform noise."""
    k = classifier.num_classes
    draw = torch.Generator().manual_seed(seed)
    x = torch.rand((k * starts, *classifier.spec.image_shape), generator=draw).to(classifier.device)
    target = torch.arange(k, device=classifier.device).repeat_interleave(starts)
    x.requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    with frozen_eval(classifier):
        for step in range(steps):
            margin = _margin(classifier(x), target)
            optimizer.zero_grad(set_to_none=True)
            (-margin.sum()).backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            if progress and (step + 1) % 20 == 0:
                progress(step + 1, steps, "margin ascent")
        with torch.no_grad():
            final = _margin(classifier(x), target)
    return final.detach().cpu().view(k, starts)


def _margin(logits: Tensor, target: Tensor) -> Tensor:
    own = logits.gather(1, target[:, None])[:, 0]
    others = logits.scatter(1, target[:, None], float("-inf"))
    return own - others.max(1).values


def gamma_tail(values: Tensor, top: int) -> float:
    """MM-BD's p-value: chance that the largest of K-1 draws from a Gamma fitted (by moments) to
    the other classes' statistics exceeds the top class's statistic."""
    rest = torch.cat([values[:top], values[top + 1:]]).double().clamp_min(1e-6)
    mean, var = rest.mean(), rest.var().clamp_min(1e-12)
    shape, scale = mean * mean / var, var / mean
    cdf = torch.special.gammainc(shape, values[top].double().clamp_min(0) / scale)
    return float(1.0 - cdf ** len(rest))
