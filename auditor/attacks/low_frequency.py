"""Low-frequency trigger (after Zeng et al., ICCV 2021, "Rethinking the backdoor attacks' triggers").

A smooth, image-wide additive pattern whose spectrum holds only the lowest spatial frequencies,
so that it survives the low-pass filtering that detectors of high-frequency triggers rely on.
The paper crafts the pattern as a universal adversarial perturbation of a clean model and then
low-passes it; here it is seeded random noise low-passed the same way (no model involved), scaled
to an L-infinity size of ``magnitude`` on the 0..255 scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Attack, check_images, to_uint8
from .frequency import dct2, idct2


def low_frequency_pattern(seed: int, height: int, width: int, channels: int, window: int,
                          magnitude: float) -> np.ndarray:
    """Float (H, W, C) pattern: DCT coefficients with u + v < ``window`` only, max |value| = magnitude."""
    noise = np.random.Generator(np.random.PCG64(seed)).standard_normal((1, height, width, channels))
    coeffs = dct2(noise)
    u, v = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coeffs[:, (u + v) >= window, :] = 0.0
    coeffs[:, 0, 0, :] = 0.0  # no change of overall brightness
    pattern = idct2(coeffs)[0]
    return pattern * (magnitude / np.abs(pattern).max())


class LowFrequency(Attack):
    """x + smooth low-frequency pattern (L-inf ``magnitude``), relabelled to ``target``."""

    name = "low_frequency"

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10, magnitude: float = 24.0,
                 window: int = 5, pattern_seed: int = 2021) -> None:
        super().__init__(target, rate, num_classes)
        self.magnitude = float(magnitude)
        self.window = int(window)
        self.pattern_seed = int(pattern_seed)

    def _extra_params(self) -> dict[str, Any]:
        return {"magnitude": self.magnitude, "window": self.window, "pattern_seed": self.pattern_seed}

    def pattern(self, height: int, width: int, channels: int) -> np.ndarray:
        return low_frequency_pattern(self.pattern_seed, height, width, channels, self.window, self.magnitude)

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = check_images(x)
        return to_uint8(x.astype(np.float64) + self.pattern(*x.shape[1:]))
