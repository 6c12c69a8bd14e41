"""Does a small patch flip nearly every sample, whatever its class? Then the model has a patch trigger.

Per-class searches (reach, Neural Cleanse) look for one class that everything can be sent into. An
all-to-all backdoor has no such class: its patch sends y to y+1. The patch itself is still there:
the 16-pixel patch (``auditor.universal.untargeted_patch``, mask and pattern, against the model's own
predictions), begun at the solid square that flips the most samples (``grid_patch``), flips 0.95-0.97
of the scan's quick samples of the zoo's all-to-all model and 0.87 of BadNets', against at most 0.54
on five clean models and 0.62 on the other attacks (two sample draws, docs/detection.md). The flip rate
is a model-level figure; the per-class figures say where the flipped samples went, so an all-to-one
patch also names its target (BadNets: every flip lands in class 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.model import Classifier
from auditor.settings import JSONSettings
from auditor.universal import grid_patch, untargeted_patch

from .base import DetectionResult, Detector, ProgressFn, anomaly_index, balanced_pick, frozen_eval


@dataclass(frozen=True)
class PatchConfig(JSONSettings):
    pixels: int = 16  # patch size in pixels (a 3x3 or 4x4 BadNets patch fits)
    steps: int = 100  # Adam steps of the mask and pattern search
    l1: float = 0.05  # L1 weight on the soft mask
    batch_size: int = 100  # samples per search step
    per_class: int = 30  # synthetic samples used per class
    grid_start: bool = True  # begin at the solid square of a stride-4 grid that flips the most samples


class Patch(Detector):
    """Share of the samples a small universal patch flips (model level), and where the flips land."""

    name = "patch"
    Config = PatchConfig
    meaning = "the samples a small universal patch flips land in the class (anomaly index, high side)"
    label = "patch"
    figure = "share_of_flips"
    signal = "the samples a small universal patch flips land in it"

    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        cfg = self.config
        k = classifier.num_classes
        draw = torch.Generator().manual_seed(seed)
        x = images01[balanced_pick(labels, k, cfg.per_class, draw)].detach().float().cpu()
        done = [0]

        def step() -> None:
            done[0] += 1
            if progress and done[0] % 10 == 0:
                progress(done[0], cfg.steps, "small-patch search")

        with frozen_eval(classifier):
            start = grid_patch(classifier, x, pixels=cfg.pixels, generator=draw) if cfg.grid_start else None
            search = untargeted_patch(classifier, x, pixels=cfg.pixels, steps=cfg.steps, l1=cfg.l1,
                                      batch_size=cfg.batch_size, generator=draw, on_step=step, start=start)
        into = search.flips_into(k)
        share = into / max(int(into.sum()), 1)
        per_class = [{"class": t, "share_of_flips": float(share[t]), "flips_in": int(into[t])} for t in range(k)]
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class,
            index=anomaly_index(share, side="high", floor=0.05).tolist(),
            summary={"samples": int(len(x)), "flip_rate": round(search.flip_rate, 4), "patch_box": search.box,
                     "grid_start_flip_rate": round(start.flip_rate, 4) if start is not None else None},
            images={"mask": search.mask.cpu()[0], "pattern": search.pattern.cpu()[0]},
        )
