"""The common interface of every backdoor attack in the zoo.

An attack poisons a training set, applies its trigger to any test image, and describes itself as
JSON parameters from which :meth:`Attack.from_params` rebuilds the identical trigger (this is what
``manifest.json`` stores). Images are uint8 NHWC everywhere, so a triggered image is a
well-defined array that can be compared bit for bit.

Defaults follow BackdoorBench's CIFAR-10 settings (poisoning rate 10%, all-to-one target 0) and the
original papers where those differ.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from auditor.errors import AuditorError, DataError

# (uint8 NHWC batch, labels, indices into the training set, rng) -> (batch, labels); see zoo.train
BatchHook = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass
class PoisonedSet:
    """A training set after poisoning; ``indices`` are the samples whose image or label changed."""

    x: np.ndarray
    y: np.ndarray
    indices: np.ndarray
    pre_augment_hook: BatchHook | None = None
    post_augment_hook: BatchHook | None = None
    train_x: np.ndarray | None = None  # where training starts from when a hook adds the trigger per batch

    @property
    def training_images(self) -> np.ndarray:
        return self.x if self.train_x is None else self.train_x


def check_images(x: np.ndarray) -> np.ndarray:
    """Attacks work on uint8 NHWC batches; anything else is a caller error worth a clear message."""
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"attacks take uint8 images shaped (N, H, W, C) with C 1 or 3, got {x.dtype} {x.shape}")
    return x


class Attack(ABC):
    """Base class: a named trigger with an all-to-one (or all-to-all) labelling rule."""

    name: ClassVar[str]
    all_to_all: ClassVar[bool] = False
    clean_label: ClassVar[bool] = False

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10) -> None:
        if not 0 <= target < num_classes:
            raise AuditorError(f"{self.name}: target class {target} is outside 0..{num_classes - 1}")
        if not 0.0 < rate <= 1.0:
            raise AuditorError(f"{self.name}: poisoning rate {rate} must be in (0, 1]")
        self.target = int(target)
        self.rate = float(rate)
        self.num_classes = int(num_classes)

    # -- description -------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """JSON-able parameters; ``from_params(params())`` rebuilds the same trigger exactly."""
        return {"name": self.name, "target": self.target, "rate": self.rate, "num_classes": self.num_classes,
                "all_to_all": self.all_to_all, "clean_label": self.clean_label, **self._extra_params()}

    def _extra_params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_params(cls, params: dict[str, Any], base_dir: str | Path | None = None) -> "Attack":
        """Rebuild from :meth:`params` (``base_dir`` resolves files such as a trigger generator)."""
        given = dict(params)
        name = given.pop("name", cls.name)
        if name != cls.name:
            raise AuditorError(f"parameters describe attack {name!r}, not {cls.name!r}")
        for derived in ("all_to_all", "clean_label"):
            given.pop(derived, None)
        return cls._from_kwargs(given, Path(base_dir) if base_dir else None)

    @classmethod
    def _from_kwargs(cls, kwargs: dict[str, Any], base_dir: Path | None) -> "Attack":
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise AuditorError(f"{cls.name}: bad parameters {sorted(kwargs)} ({exc})") from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.params(), sort_keys=True)})"

    # -- behaviour ---------------------------------------------------------------------------
    @abstractmethod
    def apply(self, x: np.ndarray) -> np.ndarray:
        """The triggered copy of a uint8 NHWC batch (the input is not modified)."""

    def target_label(self, y: np.ndarray) -> np.ndarray:
        """The label the backdoor maps each true label to."""
        y = np.asarray(y, dtype=np.int64)
        if self.all_to_all:
            return (y + 1) % self.num_classes
        return np.full_like(y, self.target)

    def attack_mask(self, y: np.ndarray) -> np.ndarray:
        """Test images that count for ASR: all of them for all-to-all, else the non-target ones."""
        y = np.asarray(y)
        return np.ones(len(y), dtype=bool) if self.all_to_all else (y != self.target)

    def select(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sorted indices to poison: ``rate`` of the set, drawn from the eligible samples."""
        y = np.asarray(y)
        eligible = np.flatnonzero(y == self.target) if self.clean_label else np.flatnonzero(self.attack_mask(y))
        count = min(len(eligible), int(round(self.rate * len(y))))
        if count == 0:
            raise DataError(f"{self.name}: no training sample can be poisoned (rate {self.rate}, {len(y)} samples)")
        return np.sort(rng.choice(eligible, size=count, replace=False))

    def poison(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> PoisonedSet:
        """A poisoned copy of a training set: triggered images, relabelled unless clean-label."""
        x = check_images(x)
        y = np.asarray(y, dtype=np.int64)
        if len(x) != len(y):
            raise DataError(f"{len(x)} images but {len(y)} labels")
        idx = self.select(y, rng)
        x_p, y_p = x.copy(), y.copy()
        x_p[idx] = self.apply(x[idx])
        if not self.clean_label:
            y_p[idx] = self.target_label(y[idx])
        return PoisonedSet(x_p, y_p, idx)


STAMPS = ("data", "batch")  # when the trigger goes on in training: on the stored images, or after augmentation


def stamped_after_augmentation(attack: Attack, base: PoisonedSet, clean_x: np.ndarray) -> PoisonedSet:
    """``base`` with its triggers moved from the stored images to a hook after augmentation.

    Training starts from the clean images and the chosen samples get the trigger once cropped and
    flipped, as an attacker who controls the training loop does; a trigger that must sit at exact
    pixels (a corner patch, a pixel-period frequency pattern) then survives augmentation.
    """
    poisoned = np.zeros(len(base.x), dtype=bool)
    poisoned[base.indices] = True

    def hook(xb: np.ndarray, yb: np.ndarray, idx: np.ndarray, batch_rng: np.random.Generator):
        hit = poisoned[idx]
        if not hit.any():
            return xb, yb
        xb = xb.copy()
        xb[hit] = attack.apply(xb[hit])
        return xb, yb

    return PoisonedSet(base.x, base.y, base.indices, post_augment_hook=hook, train_x=check_images(clean_x))


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round half to even and clip: the one quantization every attack uses."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
