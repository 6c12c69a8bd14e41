"""Image grids as PNG with pillow (no matplotlib, no torchvision)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def make_grid(images01: torch.Tensor | np.ndarray, nrow: int = 8, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] -> one uint8 (H', W', 3) mosaic with white padding."""
    x = images01.detach().cpu().numpy() if isinstance(images01, torch.Tensor) else np.asarray(images01)
    x = np.clip(x, 0.0, 1.0)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    n, _, h, w = x.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad, 3), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        grid[y0 : y0 + h, x0 : x0 + w] = x[i].transpose(1, 2, 0)
    out = (grid * 255.0 + 0.5).astype(np.uint8)
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out


def save_grid(images01: torch.Tensor | np.ndarray, path: str | Path, nrow: int = 8, scale: int = 2) -> Path:
    """Write a PNG grid of images in [0, 1] (NCHW); upscaled so 32x32 samples are visible."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(images01, nrow=nrow, scale=scale)).save(path)
    return path


def line_plot(series: dict[str, tuple[list[float], list[float]]], path: str | Path, title: str = "",
              xlabel: str = "", size: tuple[int, int] = (720, 300), ylim: tuple[float, float] | None = None) -> Path:
    """A small line chart (one panel, several named series) drawn with pillow: no plotting library needed."""
    from PIL import Image, ImageDraw

    colors = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]
    width, height = size
    left, right, top, bottom = 56, 150, 28, 36
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys if math.isfinite(y)]
    if not xs_all or not ys_all:
        img.save(path)
        return Path(path)
    x0, x1 = min(xs_all), max(xs_all) or 1.0
    y0, y1 = ylim or (min(ys_all), max(ys_all))
    if y1 - y0 < 1e-9:
        y1 = y0 + 1.0
    pw, ph = width - left - right, height - top - bottom

    def px(x: float, y: float) -> tuple[float, float]:
        fx = (x - x0) / ((x1 - x0) or 1.0)
        fy = (min(max(y, y0), y1) - y0) / (y1 - y0)
        return left + fx * pw, top + (1 - fy) * ph

    draw.rectangle([left, top, left + pw, top + ph], outline=(0, 0, 0))
    for k in range(5):  # y grid and labels
        yv = y0 + (y1 - y0) * k / 4
        _, yp = px(x0, yv)
        draw.line([left, yp, left + pw, yp], fill=(225, 225, 225))
        draw.text((4, yp - 6), f"{yv:.2f}", fill=(0, 0, 0))
    for k in range(5):  # x labels
        xv = x0 + (x1 - x0) * k / 4
        xp, _ = px(xv, y0)
        draw.text((xp - 16, top + ph + 6), f"{xv:,.0f}", fill=(0, 0, 0))
    if title:
        draw.text((left, 8), title, fill=(0, 0, 0))
    if xlabel:
        draw.text((left + pw // 2 - 30, height - 14), xlabel, fill=(0, 0, 0))
    for i, (name, (xs, ys)) in enumerate(series.items()):
        color = colors[i % len(colors)]
        points = [px(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        ly = top + 14 * i + 4
        draw.line([left + pw + 10, ly + 6, left + pw + 30, ly + 6], fill=color, width=3)
        draw.text((left + pw + 34, ly), name, fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def smooth(values: list[float], window: int = 9) -> list[float]:
    """Centered moving average (the logged losses are already 50-step means; this removes the rest of the noise)."""
    if window <= 1 or len(values) < window:
        return list(values)
    arr = np.asarray(values, dtype=np.float64)
    kernel = np.ones(window) / window
    padded = np.pad(arr, (window // 2, window - 1 - window // 2), mode="edge")
    return list(np.convolve(padded, kernel, mode="valid"))
