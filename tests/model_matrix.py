"""Small classifiers and export styles that together cover what third-party ONNX files look like.

Used by the converter tests (parametrized over every architecture x exporter x batch kind).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

if TYPE_CHECKING:
    from auditor.detect import DetectionResult

IMAGE = (3, 16, 16)
CLASSES = 10


class PlainCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class ResNetBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.conv3 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        x = torch.relu(self.down(x) + self.bn3(self.conv3(x)))
        return self.fc(x.mean(dim=(2, 3)))


class DepthwiseSeparable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.Hardswish(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MatMulHead(nn.Module):
    """A head written as an explicit matmul with free parameters (exports as MatMul + Add)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.weight = nn.Parameter(torch.randn(8 * 8 * 8, CLASSES) * 0.05)
        self.bias = nn.Parameter(torch.randn(CLASSES) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x)).flatten(1)
        return x @ self.weight + self.bias


class SoftmaxOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(torch.relu(self.conv(x)).amax(dim=(2, 3))), dim=1)


class ViewFlatten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


class TokenMixer(nn.Module):
    """Patch embedding + LayerNorm + MatMul token mixing (MLP-Mixer-like)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.norm = nn.LayerNorm(16)
        self.token_mix = nn.Parameter(torch.randn(16, 16) * 0.1)
        self.channel = nn.Linear(16, 16)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)  # N, 16 tokens, 16 channels
        mixed = torch.matmul(self.token_mix, self.norm(tokens))
        tokens = tokens + mixed
        tokens = tokens + nn.functional.gelu(self.channel(self.norm(tokens)))
        return self.head(tokens.mean(dim=1))


class GlobalPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, CLASSES, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv2(torch.relu(self.conv1(x)))).flatten(1)


class BakedNormalization(nn.Module):
    """Input normalization inside the graph: its constants must be frozen, not trained."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.pixel_mean) / self.pixel_std
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "plain_cnn_bn": PlainCNN,
    "resnet_block": ResNetBlock,
    "depthwise_separable": DepthwiseSeparable,
    "matmul_head": MatMulHead,
    "softmax_output": SoftmaxOutput,
    "view_flatten": ViewFlatten,
    "token_mixer": TokenMixer,
    "global_pool": GlobalPool,
    "baked_normalization": BakedNormalization,
}

EXPORTERS = ["legacy13", "legacy17", "preserve", "dynamo18", "dynamo_noopt"]


def build(arch: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = ARCHITECTURES[arch]()
    with torch.no_grad():  # non-trivial BN statistics, so that folding is exercised
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def export(model: nn.Module, exporter: str, path: Path, static_batch: int | None) -> Path:
    """Export ``model`` in one of the EXPORTERS styles; ``static_batch`` None means a dynamic batch axis."""
    example = (torch.rand(static_batch or 2, *IMAGE),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter.startswith("dynamo"):
            shapes = None if static_batch else ({0: torch.export.Dim("batch", min=1, max=4096)},)
            onnx_program = torch.onnx.export(
                model, example, dynamo=True, opset_version=18, input_names=["input"], output_names=["logits"],
                dynamic_shapes=shapes, optimize=exporter != "dynamo_noopt", verbose=False,
            )
            onnx_program.save(str(path))
        else:
            kwargs = {"opset_version": 13 if exporter == "legacy13" else 17}
            if exporter == "preserve":
                kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
                kwargs["do_constant_folding"] = False
            torch.onnx.export(
                model, example, str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                dynamic_axes=None if static_batch else {"input": {0: "batch"}, "logits": {0: "batch"}}, **kwargs,
            )
    return path


def forced(verdict: str, target: int = 3) -> dict[str, DetectionResult]:
    """Detector results that make ``combine`` return ``verdict`` with ``target`` as the outlier: tests that are
    about what the pipeline does with a verdict, not about how a detector reaches it."""
    from auditor.detect import DetectionResult

    index = [0.1 * (k % 3) for k in range(CLASSES)]
    index[target] = {"clean": 0.5, "suspicious": 1.8, "backdoored": 4.0}[verdict]
    per_class = [{"class": k, "mask_l1": 20.0 - index[k], "attack_success": 0.97, "reached_target": True}
                 for k in range(CLASSES)]
    images = {"mask": torch.zeros(CLASSES, 1, *IMAGE[1:]), "pattern": torch.ones(CLASSES, *IMAGE)}
    reach = [{"class": k, "reach": 0.2 + 0.1 * index[k], "delta_l2": 2.0} for k in range(CLASSES)]
    return {"neural_cleanse": DetectionResult("neural_cleanse", {}, per_class, index, images=images),
            "reach": DetectionResult("reach", {}, reach, index)}
