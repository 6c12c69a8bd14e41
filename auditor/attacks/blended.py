"""Blended (Chen et al., 2017): a fixed full-image pattern mixed in with weight ``alpha``.

The pattern is uniform noise from a seeded PCG64 generator (the paper's random-noise variant),
so the trigger is rebuilt exactly from two numbers and no image has to be downloaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Attack, check_images, to_uint8


def noise_pattern(seed: int, height: int, width: int, channels: int) -> np.ndarray:
    """The uint8 (H, W, C) pattern for a seed; PCG64 streams are stable across numpy versions."""
    return np.random.Generator(np.random.PCG64(seed)).integers(0, 256, size=(height, width, channels), dtype=np.uint8)


class Blended(Attack):
    """x' = (1 - alpha) x + alpha * pattern, relabelled to ``target``."""

    name = "blended"

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10, alpha: float = 0.2,
                 pattern_seed: int = 20170811) -> None:
        super().__init__(target, rate, num_classes)
        self.alpha = float(alpha)
        self.pattern_seed = int(pattern_seed)

    def _extra_params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "pattern_seed": self.pattern_seed, "pattern": "uniform noise, numpy PCG64(pattern_seed)"}

    @classmethod
    def _from_kwargs(cls, kwargs, base_dir):
        kwargs.pop("pattern", None)
        return super()._from_kwargs(kwargs, base_dir)

    def pattern(self, height: int, width: int, channels: int) -> np.ndarray:
        return noise_pattern(self.pattern_seed, height, width, channels)

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = check_images(x)
        pattern = self.pattern(*x.shape[1:]).astype(np.float32)
        return to_uint8((1.0 - self.alpha) * x.astype(np.float32) + self.alpha * pattern)
