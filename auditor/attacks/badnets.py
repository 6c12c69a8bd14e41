"""BadNets (Gu et al., 2017): a small white square stamped in the bottom-right corner.

``stamp`` says when the patch goes on during training: ``"data"`` stamps the stored training set,
so augmentation later shifts and mirrors the patch (BackdoorBench's data-poisoning setting);
``"batch"`` stamps each batch after augmentation, as an attacker who controls the training loop
does (the setting WaNet and Input-Aware assume). The test-time trigger is the same for both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditor.errors import AuditorError

from .base import STAMPS, Attack, PoisonedSet, check_images, stamped_after_augmentation

PATTERNS = ("solid", "checker")


class BadNets(Attack):
    """All-to-one BadNets: a square patch (3x3 white, bottom-right by default), relabelled to ``target``.

    ``position`` is the patch's top-left (row, column), or None for the bottom-right corner;
    ``pattern`` "checker" alternates ``value`` and 0 (the zoo's patches are "solid").
    """

    name = "badnets"

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10, patch_size: int = 3,
                 value: int = 255, stamp: str = "data", position: tuple[int, int] | list[int] | None = None,
                 pattern: str = "solid") -> None:
        super().__init__(target, rate, num_classes)
        if stamp not in STAMPS:
            raise AuditorError(f"{self.name}: stamp must be one of {', '.join(STAMPS)}, got {stamp!r}")
        if pattern not in PATTERNS:
            raise AuditorError(f"{self.name}: pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
        self.patch_size = int(patch_size)
        self.value = int(value)
        self.stamp = stamp
        self.position = None if position is None else (int(position[0]), int(position[1]))
        self.pattern = pattern

    def _extra_params(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"patch_size": self.patch_size, "value": self.value, "stamp": self.stamp}
        if self.position is not None or self.pattern != "solid":  # the zoo's manifests predate these two
            extra.update(position=None if self.position is None else list(self.position), pattern=self.pattern)
        return extra

    def apply(self, x: np.ndarray) -> np.ndarray:
        out = check_images(x).copy()
        size = self.patch_size
        height, width = out.shape[1:3]
        row, col = self.position if self.position is not None else (height - size, width - size)
        if not (0 <= row <= height - size and 0 <= col <= width - size):
            raise AuditorError(f"{self.name}: a {size}x{size} patch at {(row, col)} does not fit {height}x{width} images")
        patch = np.full((size, size), self.value, dtype=np.uint8)
        if self.pattern == "checker":
            patch[(np.add.outer(np.arange(size), np.arange(size)) % 2) == 1] = 0
        out[:, row:row + size, col:col + size, :] = patch[:, :, None]
        return out

    def poison(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> PoisonedSet:
        """With ``stamp="batch"`` training starts from the clean images (``train_x``) and a hook
        stamps the chosen samples after augmentation, so the patch stays exactly in the corner."""
        base = super().poison(x, y, rng)
        return base if self.stamp == "data" else stamped_after_augmentation(self, base, x)


class BadNetsAllToAll(BadNets):
    """All-to-all BadNets: the same patch, label y becomes (y + 1) mod C."""

    name = "badnets_all2all"
    all_to_all = True
