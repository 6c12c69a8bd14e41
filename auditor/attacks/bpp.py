"""BppAttack (Wang, Zhai and Ma, CVPR 2022): colour-depth squeezing with dithering as the trigger.

Each channel is quantized to ``squeeze`` levels, with Floyd-Steinberg error diffusion so that the
image still looks natural; the trigger is the quantization pattern itself, not an added shape.
The paper also trains with adversarial negative samples (it assumes control of training); here
it is a data-poisoning attack, the images stamped before augmentation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditor.errors import AuditorError

from .base import Attack, check_images, to_uint8


def squeeze_colours(x: np.ndarray, levels: int, dither: bool) -> np.ndarray:
    """uint8 NHWC -> float 0..255 with each channel on ``levels`` evenly spaced values."""
    img = x.astype(np.float32) / 255.0
    steps = levels - 1
    if not dither:
        return np.rint(img * steps) / steps * 255.0
    _, height, width, _ = img.shape
    for i in range(height):  # error diffusion runs pixel by pixel, vectorized over images and channels
        for j in range(width):
            old = img[:, i, j, :].copy()
            new = np.clip(np.rint(old * steps), 0, steps) / steps
            img[:, i, j, :] = new
            err = old - new
            if j + 1 < width:
                img[:, i, j + 1, :] += err * (7 / 16)
            if i + 1 < height:
                if j > 0:
                    img[:, i + 1, j - 1, :] += err * (3 / 16)
                img[:, i + 1, j, :] += err * (5 / 16)
                if j + 1 < width:
                    img[:, i + 1, j + 1, :] += err * (1 / 16)
    return img * 255.0


class BPP(Attack):
    """Colour depth squeezed to ``squeeze`` levels per channel (dithered), relabelled to ``target``."""

    name = "bpp"

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10, squeeze: int = 8,
                 dither: bool = True) -> None:
        super().__init__(target, rate, num_classes)
        if not 2 <= int(squeeze) <= 128:
            raise AuditorError(f"{self.name}: squeeze must be between 2 and 128 levels, got {squeeze}")
        self.squeeze = int(squeeze)
        self.dither = bool(dither)

    def _extra_params(self) -> dict[str, Any]:
        return {"squeeze": self.squeeze, "dither": self.dither}

    def apply(self, x: np.ndarray) -> np.ndarray:
        return to_uint8(squeeze_colours(check_images(x), self.squeeze, self.dither))
