"""SIG (Barni et al., 2019): a clean-label attack with a horizontal sinusoidal signal.

Only target-class training images get the signal and they keep their (correct) labels; at test
time the signal is added to any image. ``rate`` is a share of the whole training set, drawn from
the target class and capped at its size (BackdoorBench's convention: 10% of CIFAR-10 is every
target-class image).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Attack, check_images, to_uint8


class SIG(Attack):
    """x' = clip(x + delta * sin(2 pi j f / W)), j the column index, on the 0-255 scale."""

    name = "sig"
    clean_label = True

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10, delta: float = 20.0,
                 frequency: float = 6.0) -> None:
        super().__init__(target, rate, num_classes)
        self.delta = float(delta)
        self.frequency = float(frequency)

    def _extra_params(self) -> dict[str, Any]:
        return {"delta": self.delta, "frequency": self.frequency}

    def signal(self, height: int, width: int) -> np.ndarray:
        columns = np.arange(width, dtype=np.float64)
        row = self.delta * np.sin(2.0 * np.pi * columns * self.frequency / width)
        return np.broadcast_to(row, (height, width)).astype(np.float32)

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = check_images(x)
        signal = self.signal(x.shape[1], x.shape[2])[None, :, :, None]
        return to_uint8(x.astype(np.float32) + signal)
