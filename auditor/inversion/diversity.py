"""How diverse is a set of class samples, measured without the suspect model?

A diversity figure computed in the suspect model's feature space can be fooled by the model
itself (a backdoored model may spread features where the images do not differ). These figures
use only the pixels: each image becomes an 8x8 grey thumbnail (area average), standardized per
image (zero mean, unit variance), so brightness and contrast shifts do not count as diversity
while a different object, pose or layout does.

- ``spread``: within-class mean pairwise RMS distance of the thumbnails. Two unrelated images
  score about 1.41 (sqrt(2)); an image and itself 0.
- ``near_duplicates``: share of samples whose nearest same-class neighbour has a thumbnail
  correlation of at least ``DUPLICATE_CORRELATION``: the same picture with small variations.

``relative_spread`` divides the spread of each class by that of a reference set (real images of
the same class) where one is given: 1.0 means as diverse as real data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

THUMBNAIL = 8
DUPLICATE_CORRELATION = 0.95


def thumbnails(images01: torch.Tensor, size: int = THUMBNAIL) -> torch.Tensor:
    """(N, C, H, W) images in [0, 1] -> (N, size*size) per-image standardized grey thumbnails."""
    grey = images01.float().mean(1, keepdim=True)
    small = F.adaptive_avg_pool2d(grey, size).flatten(1)
    small = small - small.mean(1, keepdim=True)
    return small / small.std(1, keepdim=True, unbiased=False).clamp_min(1e-6)


def _class_figures(features: torch.Tensor) -> tuple[float, float]:
    """(mean pairwise RMS distance, near-duplicate share) of one class's thumbnails."""
    n, dim = features.shape
    distances = torch.cdist(features, features) / math.sqrt(dim)
    spread = float(distances.sum() / (n * (n - 1)))
    correlation = 1.0 - distances.pow(2) / 2.0  # standardized vectors: ||a-b||^2 / dim = 2 (1 - r)
    correlation.fill_diagonal_(-1.0)
    duplicates = float((correlation.max(1).values >= DUPLICATE_CORRELATION).float().mean())
    return spread, duplicates


def pixel_diversity(images01: torch.Tensor, labels: torch.Tensor, num_classes: int, max_per_class: int = 200,
                    reference: dict | None = None) -> dict:
    """Per-class and overall spread and near-duplicate share; ``reference`` is another call's
    result (real images) to express each class's spread relative to it."""
    per_class: dict[str, dict] = {}
    for c in range(num_classes):
        chosen = images01[labels == c][:max_per_class]
        if len(chosen) < 2:
            continue
        spread, duplicates = _class_figures(thumbnails(chosen))
        entry = {"n": len(chosen), "spread": round(spread, 4), "near_duplicates": round(duplicates, 4)}
        ref = (reference or {}).get("per_class", {}).get(str(c))
        if ref and ref["spread"] > 0:
            entry["relative_spread"] = round(spread / ref["spread"], 4)
        per_class[str(c)] = entry
    return {"per_class": per_class, **_overall(per_class)}


def _overall(per_class: dict[str, dict]) -> dict:
    if not per_class:
        return {"spread": 0.0, "near_duplicates": 0.0}
    entries = list(per_class.values())
    total = sum(e["n"] for e in entries)
    out = {
        "spread": round(sum(e["spread"] for e in entries) / len(entries), 4),
        "near_duplicates": round(sum(e["near_duplicates"] * e["n"] for e in entries) / total, 4),
    }
    relative = [e["relative_spread"] for e in entries if "relative_spread" in e]
    if relative:
        out["relative_spread"] = round(sum(relative) / len(relative), 4)
        out["worst_relative_spread"] = round(min(relative), 4)
    return out
