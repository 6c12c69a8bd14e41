"""FTrojan (Wang et al., ECCV 2022): a trigger hidden in fixed frequencies of the colour channels.

The image goes to YUV; in the chroma channels (U, V) the DCT coefficients at a mid and a high
frequency are raised by ``magnitude`` (0..255 scale, orthonormal DCT over the whole image, the
paper's CIFAR-10 setting); back in RGB the trigger is a faint, image-wide checker pattern.
A one-pixel shift reverses the sign of the highest frequency, so random-crop augmentation on
triggered images teaches nothing (a model trained that way reached 6.6% ASR); ``stamp="batch"``
adds the trigger after augmentation instead (``stamp="data"``: on the stored images).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from auditor.errors import AuditorError

from .base import STAMPS, Attack, PoisonedSet, check_images, stamped_after_augmentation, to_uint8
from .frequency import dct2, idct2, rgb_to_yuv, yuv_to_rgb


class FTrojan(Attack):
    """``magnitude`` added to the U and V DCT coefficients at ``frequencies``, relabelled to ``target``."""

    name = "ftrojan"

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10, magnitude: float = 30.0,
                 frequencies: Sequence[Sequence[int]] = ((15, 15), (31, 31)), stamp: str = "batch") -> None:
        super().__init__(target, rate, num_classes)
        if stamp not in STAMPS:
            raise AuditorError(f"{self.name}: stamp must be one of {', '.join(STAMPS)}, got {stamp!r}")
        self.magnitude = float(magnitude)
        self.frequencies = [[int(a), int(b)] for a, b in frequencies]
        self.stamp = stamp

    def _extra_params(self) -> dict[str, Any]:
        return {"magnitude": self.magnitude, "frequencies": self.frequencies, "stamp": self.stamp}

    def poison(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> PoisonedSet:
        base = super().poison(x, y, rng)
        return base if self.stamp == "data" else stamped_after_augmentation(self, base, x)

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = check_images(x)
        if x.shape[-1] != 3:
            raise AuditorError(f"{self.name} works on colour images, got {x.shape[-1]} channel(s)")
        height, width = x.shape[1:3]
        if any(not (0 <= u < height and 0 <= v < width) for u, v in self.frequencies):
            raise AuditorError(f"{self.name}: frequencies {self.frequencies} do not fit {height}x{width} images")
        coeffs = dct2(rgb_to_yuv(x.astype(np.float64)))
        for u, v in self.frequencies:
            coeffs[:, u, v, 1:] += self.magnitude
        return to_uint8(yuv_to_rgb(idct2(coeffs)))
