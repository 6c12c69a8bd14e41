"""Compact CIFAR classifiers that train in minutes on a CPU, and the wrappers that export them.

The sample zoo is all ``ResNet9``; the held-apart models (``auditor.zoo.recipes.HELD_APART_RECIPES``)
use the VGG-, MobileNet- and PreAct-ResNet-style nets and LeNet-5 below, so that what the audit's
defaults were tuned on and what they are judged on differ in architecture too.

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


class VGGSmall(nn.Module):
    """VGG-style plain stack: conv-BN-ReLU layers between max-pools, then a two-layer fully-connected head.

    No skip connections and an FC head: the other end of the design space from ResNet-9, which is
    why the held-apart families use it.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), num_classes: int = 10, in_channels: int = 3,
                 hidden: int = 256) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.features = nn.Sequential(
            _conv_bn(in_channels, w0, pool=True),
            _conv_bn(w0, w1, pool=True),
            _conv_bn(w1, w2), _conv_bn(w2, w2, pool=True),
            _conv_bn(w2, w3, pool=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Linear(w3, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expansion, 3x3 depthwise convolution, 1x1 projection, hard-swish."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.skip = stride == 1 and c_in == c_out
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.Hardswish(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.skip else out


class MobileNetSmall(nn.Module):
    """MobileNet-style net for 32x32 inputs: depthwise separable inverted residuals with hard-swish."""

    # (output channels, stride, expansion) per block
    # (output channels, stride, expansion) per block; the first block halves the resolution at once,
    # as MobileNets do, because depthwise layers at full resolution are slow on a CPU
    BLOCKS: tuple[tuple[int, int, int], ...] = ((24, 2, 3), (24, 1, 3), (40, 2, 3), (40, 1, 3), (80, 2, 3),
                                                 (80, 1, 3), (96, 1, 3))

    def __init__(self, num_classes: int = 10, in_channels: int = 3, stem: int = 16, last: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                   nn.Hardswish(inplace=True)]
        c = stem
        for c_out, stride, expand in self.BLOCKS:
            layers.append(InvertedResidual(c, c_out, stride, expand))
            c = c_out
        layers += [nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.Hardswish(inplace=True),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class PreActBlock(nn.Module):
    """Pre-activation residual block (BN-ReLU-conv twice), with a 1x1 shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    """PreAct-ResNet-18 (He et al., 2016), BackdoorBench's default CIFAR network, at a chosen base width."""

    def __init__(self, width: int = 16, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        c = width
        for stage, stride in enumerate((1, 2, 2, 2)):
            c_out = width * 2 ** stage
            blocks += [PreActBlock(c, c_out, stride), PreActBlock(c_out, c_out, 1)]
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling, for 28x28 digits: the classic grey-image net."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True), nn.Linear(120, 84),
                                        nn.ReLU(inplace=True), nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_arch(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Architectures by the names the manifest records."""
    if name == "lenet5":
        return LeNet5(num_classes, in_channels)
    if name == "vgg-small":
        return VGGSmall(num_classes=num_classes, in_channels=in_channels)
    if name == "mobilenet-hs":
        return MobileNetSmall(num_classes=num_classes, in_channels=in_channels)
    if name == "preact-resnet18-w16":
        return PreActResNet18(16, num_classes, in_channels)
    if name == "resnet9-w16":
        return ResNet9((16, 32, 64, 128), num_classes, in_channels)
    if name == "resnet9-w24":
        return ResNet9((24, 48, 96, 192), num_classes, in_channels)
    if name == "resnet9-w32":
        return ResNet9((32, 64, 128, 256), num_classes, in_channels)
    if name == "resnet9-tiny":  # for --quick runs and tests only
        return ResNet9((4, 8, 8, 16), num_classes, in_channels)
    raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")


ARCHITECTURES: tuple[str, ...] = ("resnet9-w16", "resnet9-w24", "resnet9-w32", "resnet9-tiny", "vgg-small",
                                  "mobilenet-hs", "preact-resnet18-w16", "lenet5")


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
