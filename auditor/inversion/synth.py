"""Synthesized samples: in memory, on disk (``synth.npz`` + JSON summary) and as a grid picture.

Images are kept as uint8 both in memory and on disk, so that a set reloaded from ``synth.npz``
purifies exactly like the one that was just made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.errors import AuditorError


def quantize(images01: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> the nearest uint8 level, back as float (what a saved image holds)."""
    return (images01.clamp(0, 1) * 255).round() / 255


@dataclass
class SynthSet:
    images01: torch.Tensor  # (N, C, H, W) float in [0, 1], uint8 levels
    labels: torch.Tensor  # (N,) int64: the class each sample was synthesized for
    scores: dict[str, torch.Tensor] = field(default_factory=dict)  # per-sample figures
    summary: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "SynthSet":
        return SynthSet(self.images01[index], self.labels[index], {k: v[index] for k, v in self.scores.items()},
                        dict(self.summary))

    def split(self, holdout_fraction: float, seed: int = 0) -> tuple["SynthSet", "SynthSet"]:
        """(train, holdout), stratified by class: the guard measures agreement on the holdout."""
        generator = torch.Generator().manual_seed(seed)
        train_idx, hold_idx = [], []
        for c in self.labels.unique():
            idx = torch.nonzero(self.labels == c)[:, 0]
            idx = idx[torch.randperm(len(idx), generator=generator)]
            n_hold = int(round(len(idx) * holdout_fraction))
            if holdout_fraction > 0 and len(idx) > 1:
                n_hold = min(max(n_hold, 1), len(idx) - 1)  # every class is represented on both sides
            hold_idx.append(idx[:n_hold])
            train_idx.append(idx[n_hold:])
        return self.subset(torch.cat(train_idx).sort().values), self.subset(torch.cat(hold_idx).sort().values)

    def save(self, path: str | Path, layout: str = "NCHW") -> Path:
        path = Path(path)
        images = (self.images01.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        if layout == "NHWC":
            images = images.transpose(0, 2, 3, 1)
        arrays = {f"score_{k}": v.numpy() for k, v in self.scores.items()}
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, images=images, labels=self.labels.numpy(), layout=np.asarray(layout),
                            summary=np.asarray(json.dumps(self.summary)), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SynthSet":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                images = data["images"]
                layout = str(data["layout"]) if "layout" in data else "NCHW"
                labels = torch.from_numpy(data["labels"].astype(np.int64))
                scores = {k[6:]: torch.from_numpy(data[k]) for k in data.files if k.startswith("score_")}
                summary = json.loads(str(data["summary"])) if "summary" in data else {}
        except (OSError, KeyError, ValueError) as exc:
            raise AuditorError(f"{path}: not a synthetic-sample file from `auditor invert` ({exc})") from exc
        if images.dtype != np.uint8 or images.ndim != 4:
            raise AuditorError(f"{path}: 'images' must be uint8 (N, C, H, W) or (N, H, W, C)")
        if layout == "NHWC":
            images = images.transpose(0, 3, 1, 2)
        return cls(torch.from_numpy(np.ascontiguousarray(images)).float() / 255, labels, scores, summary)


def class_grid(images01: torch.Tensor, labels: torch.Tensor, num_classes: int, per_row: int = 10) -> np.ndarray:
    """One row per class, ``per_row`` samples each, as an (H, W, 3) uint8 array."""
    c, h, w = images01.shape[1:]
    pad = 2
    grid = np.full((num_classes * (h + pad) + pad, per_row * (w + pad) + pad, 3), 255, np.uint8)
    for k in range(num_classes):
        idx = torch.nonzero(labels == k)[:, 0][:per_row]
        for j, i in enumerate(idx.tolist()):
            img = (images01[i].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            if c == 1:
                img = np.repeat(img, 3, axis=2)
            y0, x0 = pad + k * (h + pad), pad + j * (w + pad)
            grid[y0 : y0 + h, x0 : x0 + w] = img[:, :, :3]
    return grid


def save_class_grid(images01: torch.Tensor, labels: torch.Tensor, num_classes: int, path: str | Path,
                    per_row: int = 10, scale: int = 2) -> Path:
    from PIL import Image

    grid = class_grid(images01, labels, num_classes, per_row)
    image = Image.fromarray(grid)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path = Path(path)
    image.save(path)
    return path
