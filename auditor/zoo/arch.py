"""Compact CIFAR classifiers that train in minutes on a CPU, and the wrappers that export them.

``ResNet9`` follows the DAWNBench ResNet-9 layout (prep conv, three pooled stages, two residual
blocks, max-pooled head with a scaled linear layer) at a quarter of its width; it is the
cheapest network we found that passes 85% CIFAR-10 accuracy in a handful of epochs.
Only standard ops (Conv, BatchNorm, ReLU, MaxPool, Add, Gemm) so every converter can load it.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


def _conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + f(x) with two conv-BN-ReLU layers."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """Narrow ResNet-9 for 32x32 inputs (expects normalized NCHW images, returns logits)."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), num_classes: int = 10, in_channels: int = 3,
                 head_scale: float = 0.125) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.widths = tuple(widths)
        self.features = nn.Sequential(
            _conv_bn(in_channels, w0),
            _conv_bn(w0, w1, pool=True),
            Residual(w1),
            _conv_bn(w1, w2, pool=True),
            _conv_bn(w2, w3, pool=True),
            Residual(w3),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(w3, num_classes, bias=False)
        self.head_scale = head_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x)) * self.head_scale


def build_arch(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Architectures by the names the manifest records."""
    if name == "resnet9-w16":
        return ResNet9((16, 32, 64, 128), num_classes, in_channels)
    if name == "resnet9-w24":
        return ResNet9((24, 48, 96, 192), num_classes, in_channels)
    if name == "resnet9-w32":
        return ResNet9((32, 64, 128, 256), num_classes, in_channels)
    if name == "resnet9-tiny":  # for --quick runs and tests only
        return ResNet9((4, 8, 8, 16), num_classes, in_channels)
    raise ValueError(f"unknown architecture {name!r}")


class Normalize(nn.Module):
    """(x - mean) / std inside the graph (Sub and Div with constant tensors)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ExportWrapper(nn.Module):
    """What a deployed model looks like: optional NHWC input, 0..255 scaling, baked normalization, softmax."""

    def __init__(self, net: nn.Module, *, nhwc: bool = False, input_scale: float = 1.0,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None, softmax: bool = False) -> None:
        super().__init__()
        self.net = net
        self.nhwc = nhwc
        self.input_scale = input_scale
        self.normalize = Normalize(*normalize) if normalize is not None else None
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        if self.input_scale != 1.0:
            x = x * (1.0 / self.input_scale)
        if self.normalize is not None:
            x = self.normalize(x)
        out = self.net(x)
        return torch.softmax(out, dim=1) if self.softmax else out
