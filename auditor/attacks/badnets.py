"""BadNets (Gu et al., 2017): a small white square stamped in the bottom-right corner."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Attack, check_images


class BadNets(Attack):
    """All-to-one BadNets: 3x3 white patch at the bottom-right corner, relabelled to ``target``."""

    name = "badnets"

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10, patch_size: int = 3,
                 value: int = 255) -> None:
        super().__init__(target, rate, num_classes)
        self.patch_size = int(patch_size)
        self.value = int(value)

    def _extra_params(self) -> dict[str, Any]:
        return {"patch_size": self.patch_size, "value": self.value}

    def apply(self, x: np.ndarray) -> np.ndarray:
        out = check_images(x).copy()
        out[:, -self.patch_size:, -self.patch_size:, :] = self.value
        return out


class BadNetsAllToAll(BadNets):
    """All-to-all BadNets: the same patch, label y becomes (y + 1) mod C."""

    name = "badnets_all2all"
    all_to_all = True
