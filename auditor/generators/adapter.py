"""From a generator's output to the input of any classifier described by a ``ModelSpec``.

Every generator (bundled or user-supplied) produces images at its own size, channel count and
value range; the classifier under audit wants its own. The adapter maps generator output to
images in [0, 1], NCHW, at the spec's (C, H, W) -- bilinear resize with antialiasing when
shrinking, ITU-R 601 luminance for one-channel models, channel repetition for the reverse -- and
then calls :meth:`ModelSpec.to_model_input` for value range, normalization and layout. Every step
is differentiable, because the inversion backpropagates a classifier's loss into the latent code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LUMA = (0.299, 0.587, 0.114)


def to_unit_range(images: torch.Tensor, output_range: tuple[float, float]) -> torch.Tensor:
    """Generator output in ``output_range`` -> [0, 1] (clamped: a few generators overshoot)."""
    lo, hi = float(output_range[0]), float(output_range[1])
    if hi <= lo:
        raise ValueError(f"output_range must be (low, high) with low < high, got {output_range}")
    x = images if (lo, hi) == (0.0, 1.0) else (images - lo) / (hi - lo)
    return x.clamp(0.0, 1.0)


def match_channels(images01: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB -> luminance for one-channel models; gray -> repeated RGB for three-channel ones."""
    have = images01.shape[1]
    if have == channels:
        return images01
    if have == 3 and channels == 1:
        weights = images01.new_tensor(LUMA).view(1, 3, 1, 1)
        return (images01 * weights).sum(dim=1, keepdim=True)
    if have == 1:
        return images01.expand(-1, channels, -1, -1)
    raise ValueError(f"cannot adapt {have}-channel generator output to a {channels}-channel model")


def resize(images01: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize; antialiased when shrinking so that small models do not see aliasing."""
    h, w = images01.shape[-2:]
    if (h, w) == (height, width):
        return images01
    shrinking = height < h or width < w
    out = F.interpolate(images01, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking)
    return out.clamp(0.0, 1.0)


class SpecAdapter(nn.Module):
    """Generator output -> classifier input for one ``ModelSpec``; ``images01`` gives the [0, 1] stage.

    ``output_range`` is the generator's value range ((-1, 1) for the bundled ones).
    """

    def __init__(self, spec: Any, output_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        self.spec = spec
        self.output_range = (float(output_range[0]), float(output_range[1]))

    def images01(self, generated: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], NCHW, at the spec's channels, height and width."""
        if generated.dim() != 4:
            raise ValueError(f"generator output must be NCHW, got shape {tuple(generated.shape)}")
        x = to_unit_range(generated, self.output_range)
        x = match_channels(x, self.spec.channels)
        return resize(x, self.spec.height, self.spec.width)

    def forward(self, generated: torch.Tensor) -> torch.Tensor:
        return self.spec.to_model_input(self.images01(generated))


def adapter_for(generator: nn.Module, spec: Any) -> SpecAdapter:
    """The adapter for a loaded generator (reads its ``output_range``, default (-1, 1))."""
    return SpecAdapter(spec, getattr(generator, "output_range", (-1.0, 1.0)))
