"""Adaptive-Blend (Qi et al., ICLR 2023, "Revisiting the assumption of latent separability").

Built to defeat defenses that separate poisoned from clean samples in the model's latent space:
- the blend pattern is cut into ``pieces`` x ``pieces`` tiles and each poisoned training image
  carries a random ``keep`` share of them, at a lower opacity (``train_alpha``) than at test time;
- ``cover_rate`` more images carry the same partial trigger but keep their true label
  ("conservatism"), so that the trigger alone is not a perfect shortcut.
At test time the whole pattern is blended at ``alpha``. The paper blends a fixed picture; here the
pattern is a seeded random colour image, smoothed, so nothing has to be downloaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditor.errors import AuditorError

from .base import Attack, PoisonedSet, check_images, to_uint8


def smooth_colour_pattern(seed: int, height: int, width: int, channels: int, cells: int = 8) -> np.ndarray:
    """uint8 (H, W, C): a cells x cells random colour image, bilinearly enlarged."""
    coarse = np.random.Generator(np.random.PCG64(seed)).integers(0, 256, size=(cells, cells, channels)).astype(np.float64)
    rows = np.linspace(0, cells - 1, height)
    cols = np.linspace(0, cells - 1, width)
    r0 = np.minimum(np.floor(rows).astype(int), cells - 2)
    c0 = np.minimum(np.floor(cols).astype(int), cells - 2)
    fr = (rows - r0)[:, None, None]
    fc = (cols - c0)[None, :, None]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    return to_uint8(top * (1 - fr) + bottom * fr)


class AdaptiveBlend(Attack):
    """Partial, low-opacity blends in training (plus label-keeping cover samples); the full blend at test."""

    name = "adaptive_blend"

    def __init__(self, target: int = 0, rate: float = 0.05, num_classes: int = 10, alpha: float = 0.2,
                 train_alpha: float = 0.15, pieces: int = 4, keep: float = 0.5, cover_rate: float = 0.05,
                 pattern_seed: int = 2023) -> None:
        super().__init__(target, rate, num_classes)
        if not 0.0 < keep <= 1.0 or not 0.0 <= cover_rate < 1.0:
            raise AuditorError(f"{self.name}: keep must be in (0, 1] and cover_rate in [0, 1)")
        self.alpha = float(alpha)
        self.train_alpha = float(train_alpha)
        self.pieces = int(pieces)
        self.keep = float(keep)
        self.cover_rate = float(cover_rate)
        self.pattern_seed = int(pattern_seed)

    def _extra_params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "train_alpha": self.train_alpha, "pieces": self.pieces, "keep": self.keep,
                "cover_rate": self.cover_rate, "pattern_seed": self.pattern_seed}

    def _blend(self, x: np.ndarray, alpha: float, mask: np.ndarray | None) -> np.ndarray:
        pattern = smooth_colour_pattern(self.pattern_seed, *x.shape[1:]).astype(np.float64)
        weight = alpha if mask is None else alpha * mask[..., None]
        return to_uint8((1.0 - weight) * x.astype(np.float64) + weight * pattern)

    def _piece_masks(self, count: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """(count, H, W) 0/1 masks, each keeping a random ``keep`` share of the tiles (at least one)."""
        tiles = self.pieces * self.pieces
        kept = max(1, int(round(self.keep * tiles)))
        grid = np.zeros((count, tiles))
        for row in grid:
            row[rng.choice(tiles, size=kept, replace=False)] = 1.0
        grid = grid.reshape(count, self.pieces, self.pieces)
        rows = np.minimum(np.arange(height) * self.pieces // height, self.pieces - 1)
        cols = np.minimum(np.arange(width) * self.pieces // width, self.pieces - 1)
        return grid[:, rows][:, :, cols]

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self._blend(check_images(x), self.alpha, None)

    def poison(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> PoisonedSet:
        x = check_images(x)
        y = np.asarray(y, dtype=np.int64)
        idx = self.select(y, rng)
        rest = np.setdiff1d(np.arange(len(y)), idx)
        cover = np.sort(rng.choice(rest, size=min(len(rest), int(round(self.cover_rate * len(y)))), replace=False))
        x_p, y_p = x.copy(), y.copy()
        for chosen in (idx, cover):
            masks = self._piece_masks(len(chosen), *x.shape[1:3], rng)
            x_p[chosen] = self._blend(x[chosen], self.train_alpha, masks)
        y_p[idx] = self.target
        return PoisonedSet(x_p, y_p, np.sort(np.concatenate([idx, cover])))
