"""Neural Cleanse (Wang et al., S&P 2019) on synthetic samples, all classes optimized at once.

For every class t a mask m_t (H x W, in [0, 1]) and a pattern p_t (C x H x W, in [0, 1]) are
optimized so that ``(1 - m_t) * x + m_t * p_t`` is classified as t for samples x of the *other*
classes, minimizing ``CE + lambda_t * |m_t|_1``. Each ``lambda_t`` follows NC's schedule: raised
while the trigger reaches the target attack success, lowered while it does not, and the smallest
mask that reached the target is kept. A backdoor target needs a much smaller trigger than any
natural class, so its norm is an outlier on the low side of the median (anomaly index > 2).

Differences from the paper, for speed on a CPU: the K optimizations share one batch per step
(the K masks and patterns are independent parameters, so summing their losses does not couple
them), the samples come from stabilized model inversion instead of clean data, and the run is a
few hundred steps instead of NC's epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.model import Classifier
from auditor.settings import JSONSettings

from .base import DetectionResult, Detector, ProgressFn, anomaly_index, balanced_pick


@dataclass(frozen=True)
class NeuralCleanseConfig(JSONSettings):
    steps: int = 150  # optimization steps (each updates all K triggers)
    batch_per_class: int = 12  # samples of other classes drawn per target class per step
    per_class: int = 30  # synthetic samples used per class (the pool the batches come from)
    lr: float = 0.1  # Adam, betas (0.5, 0.9) as in NC
    init_lambda: float = 1e-3  # weight of |m|_1 at the start
    lambda_up: float = 1.5  # NC's cost multiplier when the target success is reached
    lambda_down: float = 1.5 ** 1.5  # NC's divisor when it is not
    patience: int = 5  # steps above / below the target success before lambda moves
    target_asr: float = 0.95  # attack success a trigger must reach on its batch to count
    init_mask: float = 0.25  # initial mask value (a little noise is added, seeded)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class NeuralCleanse(Detector):
    """Per class: the smallest (mask, pattern) trigger that flips other classes into it."""

    name = "neural_cleanse"
    Config = NeuralCleanseConfig
    meaning = "the class is reached with an unusually small trigger (anomaly index of the mask L1 norm, low side)"
    label = "NC"
    figure = "mask_l1"
    signal = "its reversed trigger"

    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        cfg = self.config
        device = classifier.device
        k = classifier.num_classes
        c, h, w = images01.shape[1:]
        generator = torch.Generator().manual_seed(seed)
        pool_idx = balanced_pick(labels, k, cfg.per_class, generator)
        pool, pool_labels = images01[pool_idx], labels[pool_idx]
        sources = [torch.nonzero(pool_labels != t)[:, 0] for t in range(k)]
        degenerate = [t for t in range(k) if len(sources[t]) == 0]
        for t in degenerate:  # every sample is labelled t (a collapsed model): nothing to flip, use them all
            sources[t] = torch.arange(len(pool_labels))

        was_training = classifier.training
        classifier.eval()
        requires = {n: p.requires_grad for n, p in classifier.named_parameters()}
        classifier.requires_grad_(False)
        try:
            mask_logit = (torch.full((k, 1, h, w), _logit(cfg.init_mask))
                          + 0.1 * torch.randn(k, 1, h, w, generator=generator)).to(device).requires_grad_(True)
            pattern_logit = (torch.randn(k, c, h, w, generator=generator) * 0.5).to(device).requires_grad_(True)
            optimizer = torch.optim.Adam([mask_logit, pattern_logit], lr=cfg.lr, betas=(0.5, 0.9))
            lam = torch.full((k,), cfg.init_lambda, dtype=torch.float64)
            up = torch.zeros(k, dtype=torch.long)
            down = torch.zeros(k, dtype=torch.long)
            best_norm = torch.full((k,), float("inf"))
            best_mask = torch.sigmoid(mask_logit.detach()).cpu()
            best_pattern = torch.sigmoid(pattern_logit.detach()).cpu()
            targets = torch.arange(k).repeat_interleave(cfg.batch_per_class)
            b = cfg.batch_per_class
            for step in range(cfg.steps):
                idx = torch.cat([s[torch.randint(len(s), (b,), generator=generator)] for s in sources])
                x = pool[idx].to(device)
                y = targets.to(device)
                mask = torch.sigmoid(mask_logit)
                pattern = torch.sigmoid(pattern_logit)
                stamped = (1 - mask[y]) * x + mask[y] * pattern[y]
                logits = classifier(stamped)
                ce = F.cross_entropy(logits, y, reduction="none").view(k, b).mean(1)
                norms = mask.flatten(1).sum(1)
                loss = (ce + lam.to(device).float() * norms).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    asr = (logits.argmax(1) == y).float().view(k, b).mean(1).cpu()
                    norms_cpu = norms.detach().cpu()
                    reached = asr >= cfg.target_asr
                    better = reached & (norms_cpu < best_norm)
                    if better.any():
                        best_norm[better] = norms_cpu[better]
                        best_mask[better] = mask.detach().cpu()[better]
                        best_pattern[better] = pattern.detach().cpu()[better]
                    up = torch.where(reached, up + 1, torch.zeros_like(up))
                    down = torch.where(reached, torch.zeros_like(down), down + 1)
                    lam = torch.where(up >= cfg.patience, lam * cfg.lambda_up, lam)
                    lam = torch.where(down >= cfg.patience, lam / cfg.lambda_down, lam)
                    up = torch.where(up >= cfg.patience, torch.zeros_like(up), up)
                    down = torch.where(down >= cfg.patience, torch.zeros_like(down), down)
                if progress:
                    progress(step + 1, cfg.steps, f"trigger norm {float(norms_cpu.median()):.1f}")
            never = torch.isinf(best_norm)
            if never.any():  # never reached the target: keep the last trigger, its norm counts as is
                final_mask = torch.sigmoid(mask_logit.detach()).cpu()
                best_mask[never] = final_mask[never]
                best_pattern[never] = torch.sigmoid(pattern_logit.detach()).cpu()[never]
                best_norm[never] = final_mask[never].flatten(1).sum(1)
            final_asr = _attack_success(classifier, pool, pool_labels, best_mask, best_pattern)
        finally:
            classifier.train(was_training)
            for name, p in classifier.named_parameters():
                p.requires_grad_(requires[name])

        index = anomaly_index(best_norm, side="low")
        per_class = [{
            "class": t,
            "mask_l1": float(best_norm[t]),
            "mask_fraction": float(best_norm[t]) / (h * w),
            "attack_success": float(final_asr[t]),
            "reached_target": bool(not never[t]),
            "lambda": float(lam[t]),
        } for t in range(k)]
        norms_sorted = best_norm.double()
        median = float(norms_sorted.median())
        mad = float((norms_sorted - median).abs().median())
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"median_mask_l1": median, "mad_mask_l1": mad, "samples": int(len(pool)),
                     "image_pixels": h * w},
            images={"mask": best_mask, "pattern": best_pattern},
            notes=[f"class {t} never reached {cfg.target_asr:.0%} attack success" for t in range(k) if never[t]]
            + [f"every sample is labelled {t}: its trigger is not meaningful" for t in degenerate],
        )


@torch.no_grad()
def _attack_success(classifier: Classifier, pool: Tensor, pool_labels: Tensor, masks: Tensor,
                    patterns: Tensor) -> Tensor:
    """Share of the other classes' samples that each class's trigger flips into that class."""
    device = classifier.device
    out = torch.zeros(len(masks))
    for t in range(len(masks)):
        others = pool_labels != t
        x = (pool[others] if others.any() else pool).to(device)
        stamped = (1 - masks[t].to(device)) * x + masks[t].to(device) * patterns[t].to(device)
        out[t] = (classifier(stamped).argmax(1) == t).float().mean().cpu()
    return out


def trigger_images(result: DetectionResult) -> Tensor:
    """(K, C, H, W) pictures of each reversed trigger: mask * pattern on black."""
    return result.images["mask"] * result.images["pattern"]
