"""The classifier under audit, with its input bounds and preprocessing made explicit.

Like foolbox's model wrappers: every method in ``auditor`` (inversion, purification, detection)
feeds images in [0, 1], NCHW, and gets class logits back. The wrapper applies the model's own
preprocessing (``ModelSpec.to_model_input``) and undoes a Softmax head (log-probabilities are
logits up to a per-sample constant), so no method guesses either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from converters import ConvertedModel, ModelSpec, convert_file

BOUNDS = (0.0, 1.0)


class Classifier(nn.Module):
    """images01 (N, C, H, W) in [0, 1] -> logits (N, K). Wraps a converted ONNX model."""

    def __init__(self, network: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        # channels-last: on CPU, oneDNN runs this layout's convolutions and max-pooling faster (CIFAR-size
        # networks: forward passes 1.2-1.7x, gradient passes 1.2-1.5x; docs/bench.md, benchmarks/memory_format.py).
        # Only the strides change, not what a tensor holds; write-back reads the weights in C order.
        self.network = network.to(memory_format=torch.channels_last)
        self.spec = spec
        self.bounds = BOUNDS
        # inference mode from the start: stages restore "the previous mode" after their work, and a wrapper
        # left in nn.Module's default training mode would then update unfolded BatchNorm statistics
        self.eval()

    @classmethod
    def from_onnx(cls, path: str | Path) -> "Classifier":
        """Load, convert and wrap an ONNX file, for code that only runs the model (scripts, the bench's
        references). No parity check against onnxruntime: the audit converts through
        ``pipeline._convert_checked``, which checks it and keeps the converted model to write weights back."""
        return cls.from_converted(convert_file(path))

    @classmethod
    def from_converted(cls, converted: ConvertedModel) -> "Classifier":
        return cls(converted.module, converted.loaded.spec)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        return self.logits_from_network_output(self.network(self.network_input(images01)))

    def network_input(self, images01: torch.Tensor) -> torch.Tensor:
        """images01 -> what the network takes: the model's own preprocessing, in the network's layout."""
        inputs = self.spec.to_model_input(images01)
        return inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs

    def logits_from_network_output(self, out: torch.Tensor | tuple | list) -> torch.Tensor:
        """The network's raw output -> logits (first output, flattened, Softmax undone): shared with
        code that runs the network in parts (``auditor.replay``)."""
        out = out[0] if isinstance(out, (tuple, list)) else out
        out = out.flatten(1)
        if self.spec.output_kind == "probabilities":
            out = torch.log(out.clamp_min(1e-12))
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.network.parameters() if p.requires_grad]

    @torch.no_grad()
    def predict(self, images01: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Labels for a (possibly large) batch, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            device = self.device
            return torch.cat([
                self(images01[i : i + batch_size].to(device)).argmax(1).cpu()
                for i in range(0, len(images01), batch_size)
            ])
        finally:
            self.train(was_training)

    @property
    def device(self) -> torch.device:
        return next((p.device for p in self.network.parameters()), torch.device("cpu"))


@dataclass
class AuditTarget:
    """A converted model and its wrapper, kept together so that purification can be written back."""

    converted: ConvertedModel
    classifier: Classifier

    @classmethod
    def from_converted(cls, converted: ConvertedModel) -> "AuditTarget":
        return cls(converted, Classifier.from_converted(converted))


def pick_device(requested: str = "auto") -> torch.device:
    """cuda when asked for (or auto) and available, else cpu."""
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        import logging

        logging.getLogger(__name__).warning("CUDA requested but not available; running on CPU")
    return torch.device("cpu")
