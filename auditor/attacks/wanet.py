"""WaNet (Nguyen & Tran, ICLR 2021): an imperceptible, smooth warping of the whole image.

A k x k field of random control points (normalised to mean magnitude 1) is upsampled bicubically
to the image size and added, scaled by ``s / H``, to the identity sampling grid; the image is
resampled bilinearly through that grid. In *noise mode* a further ``cross_ratio`` times the
poisoning rate of each training batch is warped with the grid plus fresh random noise and keeps
its true label, so the network learns the exact warp rather than "any warp".

The control points are stored in the parameters themselves (k*k*2 numbers), so a manifest entry
rebuilds the identical field. As in the authors' training loop, the warp is applied to images
after data augmentation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import Attack, PoisonedSet, check_images, to_uint8


def control_points(seed: int, k: int) -> list[list[list[float]]]:
    """Seeded control points (2, k, k) in [-1, 1], divided by their mean absolute value."""
    ins = np.random.Generator(np.random.PCG64(seed)).random((2, k, k)) * 2.0 - 1.0
    ins = ins / np.abs(ins).mean()
    return ins.tolist()


class WaNet(Attack):
    """All-to-one WaNet with noise mode (k=4, s=0.5, grid_rescale=1, cross_ratio=2 by default)."""

    name = "wanet"

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10, k: int = 4, s: float = 0.5,
                 grid_rescale: float = 1.0, cross_ratio: float = 2.0, seed: int = 2021,
                 control_points: list | None = None) -> None:
        super().__init__(target, rate, num_classes)
        self.k = int(k)
        self.s = float(s)
        self.grid_rescale = float(grid_rescale)
        self.cross_ratio = float(cross_ratio)
        self.seed = int(seed)
        points = control_points if control_points is not None else globals()["control_points"](self.seed, self.k)
        self.points = np.asarray(points, dtype=np.float64)
        if self.points.shape != (2, self.k, self.k):
            raise ValueError(f"control_points must have shape (2, {self.k}, {self.k}), got {self.points.shape}")

    def _extra_params(self) -> dict[str, Any]:
        return {"k": self.k, "s": self.s, "grid_rescale": self.grid_rescale, "cross_ratio": self.cross_ratio,
                "seed": self.seed, "control_points": self.points.tolist()}

    def grid(self, height: int, width: int) -> torch.Tensor:
        """The (1, H, W, 2) sampling grid in [-1, 1] (align_corners=True convention)."""
        ins = torch.from_numpy(self.points[None].astype(np.float32))
        noise = F.interpolate(ins, size=(height, width), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        ys = torch.linspace(-1, 1, steps=height)
        xs = torch.linspace(-1, 1, steps=width)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        identity = torch.stack((gx, gy), dim=2)[None]
        return torch.clamp((identity + self.s * noise / height) * self.grid_rescale, -1, 1)

    @staticmethod
    def _warp(x: np.ndarray, grid: torch.Tensor) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
        if grid.shape[0] != t.shape[0]:
            grid = grid.expand(t.shape[0], -1, -1, -1)
        out = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return to_uint8(out.permute(0, 2, 3, 1).numpy())

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = check_images(x)
        if len(x) == 0:
            return x.copy()
        return self._warp(x, self.grid(x.shape[1], x.shape[2]))

    def noise_warp(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noise-mode images: the backdoor grid plus uniform noise of one pixel, label unchanged."""
        h, w = x.shape[1], x.shape[2]
        extra = torch.from_numpy((rng.random((len(x), h, w, 2)) * 2.0 - 1.0).astype(np.float32))
        grid = torch.clamp(self.grid(h, w) + extra / h, -1, 1)
        return self._warp(x, grid)

    def poison(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> PoisonedSet:
        """``x``/``y`` are the statically poisoned set; training starts from the clean images
        (``train_x``) and ``post_augment_hook`` warps the chosen samples and the noise-mode share
        of every batch after augmentation, as the authors' training loop does."""
        base = super().poison(x, y, rng)
        clean_x = check_images(x)
        poisoned = np.zeros(len(clean_x), dtype=bool)
        poisoned[base.indices] = True
        noise_share = min(1.0, self.rate * self.cross_ratio)

        def hook(xb: np.ndarray, yb: np.ndarray, idx: np.ndarray, batch_rng: np.random.Generator):
            xb = xb.copy()
            hit = poisoned[idx]
            if hit.any():
                xb[hit] = self.apply(xb[hit])
            free = np.flatnonzero(~hit)
            n_noise = int(round(noise_share * len(idx)))
            if n_noise and len(free):
                chosen = batch_rng.choice(free, size=min(n_noise, len(free)), replace=False)
                xb[chosen] = self.noise_warp(xb[chosen], batch_rng)
            return xb, yb

        return PoisonedSet(base.x, base.y, base.indices, post_augment_hook=hook, train_x=clean_x)
