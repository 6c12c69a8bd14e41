"""How easily can one small universal perturbation send everything into a class?

A backdoor is a shortcut into its target class. For every class t this detector fits a targeted
universal perturbation (one delta for all samples, L2-bounded, ``auditor.universal``) on the
synthetic samples of the other classes and measures its reach: the share of them it sends into
t. The backdoor's target is reached far more easily than any natural class (zoo BadNets model:
97% against 12-29% at L2 2), so reach is scored with the Neural Cleanse anomaly index on the high
side. The same search is I-BAU's targeted inner problem, so scan and purification agree on which
class they suspect.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.model import Classifier
from auditor.settings import JSONSettings
from auditor.universal import targeted_universal

from .base import DetectionResult, Detector, ProgressFn, anomaly_index, balanced_pick, frozen_eval


REACH_MAD_FLOOR = 0.15  # the floor on the MAD of reach's anomaly index (why: beside its use in Reach._detect)


@dataclass(frozen=True)
class ReachConfig(JSONSettings):
    radius: float = 2.0  # L2 bound of the perturbation in [0, 1] image space (32x32x3: rms 0.036, about 9/255)
    steps: int = 30  # normalized descent steps per class
    step_size: float = 0.5  # L2 length of each step
    batch_size: int = 100
    per_class: int = 50  # synthetic samples used per class


class Reach(Detector):
    """Per class: the share of other classes' samples one small universal perturbation sends into it."""

    name = "reach"
    Config = ReachConfig
    meaning = "one small universal perturbation sends the other classes' samples into the class (anomaly index, high side)"
    label = "reach"
    figure = "reach"
    signal = "its reach by one small universal perturbation"
    votes = True

    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        cfg = self.config
        k = classifier.num_classes
        draw = torch.Generator().manual_seed(seed)
        idx = balanced_pick(labels, k, cfg.per_class, draw)
        x, y = images01[idx].detach().float().cpu(), labels[idx].cpu()
        shares, norms, deltas = [], [], []
        with frozen_eval(classifier):  # only delta is optimized: no weight gradients are built
            for t in range(k):
                delta, share = targeted_universal(classifier, x[y != t], t, radius=cfg.radius, steps=cfg.steps,
                                                  step_size=cfg.step_size, batch_size=cfg.batch_size, generator=draw)
                shares.append(share)
                norms.append(float(delta.norm()))
                deltas.append(delta.cpu()[0])
                if progress:
                    progress(t + 1, k, f"universal perturbation towards class {t}")
        share_t = torch.tensor(shares)
        # Natural classes differ in reach by tens of points on scan-sized sample sets (0.17-0.77 on the
        # zoo's clean and backdoored models); the floor on the MAD keeps that spread from looking
        # anomalous: with it no clean zoo model is flagged (floor 0.05 flagged both), while the
        # BadNets and Blended targets (reach 0.98) stay above 2.9 (docs/detection.md).
        index = anomaly_index(share_t, side="high", floor=REACH_MAD_FLOOR)
        per_class = [{"class": t, "reach": float(shares[t]), "delta_l2": norms[t]} for t in range(k)]
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"samples": int(len(x)), "median_reach": float(share_t.median())},
            images={"delta": torch.stack(deltas)},
        )
