"""Pictures for the reports: the reversed triggers as one grid, and PNG files as data URIs."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import torch


def trigger_grid(masks: torch.Tensor, patterns: torch.Tensor, pad: int = 2) -> np.ndarray:
    """(H, W, 3) uint8: one column per class; rows are the mask, the pattern, and mask x pattern.

    The mask rows are scaled per class to their own maximum: a backdoor trigger is a few pixels
    with small values, invisible at true scale."""
    k, c, h, w = patterns.shape
    peak = masks.flatten(1).amax(1).clamp_min(1e-6).view(k, 1, 1, 1)
    shown = (masks / peak).expand(k, 3, h, w)
    rows = [shown, patterns if c == 3 else patterns.expand(k, 3, h, w)]
    rows.append(shown * rows[1])
    grid = np.full((3 * (h + pad) + pad, k * (w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for t in range(k):
            img = (row[t].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            y0, x0 = pad + r * (h + pad), pad + t * (w + pad)
            grid[y0 : y0 + h, x0 : x0 + w] = img
    return grid


def save_trigger_grid(masks: torch.Tensor, patterns: torch.Tensor, path: str | Path, scale: int = 3) -> Path:
    from PIL import Image

    image = Image.fromarray(trigger_grid(masks, patterns))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path = Path(path)
    image.save(path)
    return path


def data_uri(path: str | Path) -> str | None:
    """``data:image/png;base64,...`` for a PNG file, or None when it is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
