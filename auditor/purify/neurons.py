"""Neuron masks on the converted graph, used by neuron-pruning purifiers (ANP).

Folded exports have no BatchNorm, so a "neuron" is a convolution output channel (BN folded into
it): a mask scales the channel's weight and bias together, and pruning zeroes both, which keeps
the ONNX graph unchanged (as CLP does). Masks enter through ``torch.func.functional_call``, so
the model's own parameters are never touched until ``prune_lowest``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from auditor.model import Classifier


@dataclass
class Neurons:
    """The masked layers: parameter names inside the Classifier and their original tensors."""

    names: list[str]
    weights: list[Tensor]
    biases: list[Tensor | None]

    @property
    def sizes(self) -> list[int]:
        return [int(w.shape[0]) for w in self.weights]

    @property
    def layers(self) -> list[str]:
        """The layers' names in the graph (as reports and CLP name them), without the Classifier's prefix."""
        return [name.removeprefix("network.") for name in self.names]


def masked_conv_layers(classifier: Classifier, min_channels: int) -> Neurons:
    """Every convolution with a trainable weight and at least ``min_channels`` output channels."""
    names, weights, biases = [], [], []
    for name, module in classifier.network.named_modules():
        if isinstance(module, nn.Conv2d) and module.weight.requires_grad and module.out_channels >= min_channels:
            names.append(f"network.{name}" if name else "network")
            weights.append(module.weight)
            biases.append(module.bias if module.bias is not None and module.bias.requires_grad else None)
    return Neurons(names, weights, biases)


def masked_forward(classifier: Classifier, neurons: Neurons, x: Tensor, masks: list[Tensor],
                   noise_w: list[Tensor] | None = None, noise_b: list[Tensor] | None = None) -> Tensor:
    """The classifier with each neuron scaled by its mask (+ weight noise) and its bias by (1 + bias noise)."""
    params: dict[str, Tensor] = {}
    for i, name in enumerate(neurons.names):
        scale = masks[i] if noise_w is None else masks[i] + noise_w[i]
        weight = neurons.weights[i].detach()
        params[f"{name}.weight"] = weight * scale.view(-1, *([1] * (weight.ndim - 1)))
        bias = neurons.biases[i]
        if bias is not None:
            bias_scale = masks[i] if noise_b is None else masks[i] * (1 + noise_b[i])
            params[f"{name}.bias"] = bias.detach() * bias_scale
    return functional_call(classifier, params, (x,), strict=False)


@torch.no_grad()
def prune_lowest(neurons: Neurons, masks: list[Tensor], threshold: float, max_fraction: float,
                 scores: list[Tensor] | None = None) -> dict[str, list[int]]:
    """Zero the neurons whose mask is below ``threshold``, at most ``max_fraction`` of all, lowest first
    by ``scores`` (default: the masks; masks clamp at 0, so many tie there and a score such as the mask's
    average over training tells the neurons that fell first). Returns graph layer -> channels zeroed."""
    scores = masks if scores is None else scores
    flat = [(float(scores[i][k]), i, k) for i, m in enumerate(masks) for k in range(len(m)) if m[k] < threshold]
    budget = int(max_fraction * sum(neurons.sizes))
    chosen: dict[int, list[int]] = {}
    for _, i, k in sorted(flat)[:budget]:
        chosen.setdefault(i, []).append(k)
    pruned: dict[str, list[int]] = {}
    for i, channels in sorted(chosen.items()):
        index = torch.tensor(sorted(channels), device=neurons.weights[i].device)
        neurons.weights[i].index_fill_(0, index, 0.0)
        if neurons.biases[i] is not None:
            neurons.biases[i].index_fill_(0, index, 0.0)
        pruned[neurons.layers[i]] = index.tolist()
    return pruned
