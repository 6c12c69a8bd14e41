"""CLP: Channel Lipschitzness-based Pruning (Zheng et al., ECCV 2022), data-free.

A backdoor tends to live in a few channels that react very strongly to a small input pattern;
their upper bound on the channel Lipschitz constant (UCLC) is an outlier within the layer.
UCLC_k = largest singular value of W_k reshaped to (in_channels, kh * kw), times |gamma_k / sigma_k|
when a BatchNorm follows the convolution unfolded. Channels with UCLC_k > mean + u * std are
pruned by zeroing, which keeps the ONNX graph's structure (and write-back) unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from auditor.errors import AuditorError
from auditor.model import Classifier

from .base import ProgressFn, PurifyResult, Purifier, RunContext, StepRecord
from .step import PurifierStep, StepContext


@dataclass(frozen=True)
class CLPConfig:
    u: float = 3.0  # threshold in standard deviations above the layer mean; paper default 3
    min_channels: int = 4  # skip layers with fewer output channels (mean/std meaningless); our choice


def channel_lipschitz(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> Tensor:
    """UCLC per output channel of ``conv`` (optionally scaled by the following BN)."""
    weight = conv.weight.detach().float()
    per_channel = weight.reshape(weight.shape[0], weight.shape[1], -1)  # (out, in/groups, kh*kw)
    uclc = torch.linalg.matrix_norm(per_channel, ord=2)  # largest singular value
    if bn is not None:
        gamma = bn.weight.detach().float() if bn.weight is not None else torch.ones_like(uclc)
        uclc = uclc * (gamma / torch.sqrt(bn.running_var.detach().float() + bn.eps)).abs()
    return uclc


def conv_bn_pairs(network: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every Conv2d with the BatchNorm2d that directly (and only) consumes it, if the graph has one."""
    modules = dict(network.named_modules())
    following_bn: dict[str, nn.BatchNorm2d] = {}
    graph = getattr(network, "graph", None)  # converted models are torch.fx GraphModules
    if graph is not None:
        for node in graph.nodes:
            if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
                continue
            source = node.args[0] if node.args else None
            if (getattr(source, "op", None) == "call_module" and isinstance(modules.get(source.target), nn.Conv2d)
                    and len(source.users) == 1):
                following_bn[source.target] = modules[node.target]
    return [(name, module, following_bn.get(name)) for name, module in network.named_modules()
            if isinstance(module, nn.Conv2d)]


@torch.no_grad()
def zero_channels(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, channels: list[int]) -> None:
    """Prune output ``channels`` of ``conv`` by zeroing (the graph keeps its shape); as the CLP paper, the
    following BN's output for them is zero too. Frozen constants are left alone."""
    index = torch.tensor(channels, device=conv.weight.device)
    for tensor in (conv.weight, conv.bias, *((bn.weight, bn.bias) if bn is not None else ())):
        if tensor is not None and tensor.requires_grad:
            tensor.index_fill_(0, index, 0.0)


class CLP(Purifier):
    """Zero the output channels whose UCLC is an outlier in their layer."""

    name = "clp"
    Config = CLPConfig
    uses_data = False

    def validate(self) -> None:
        if self.config.u <= 0:
            raise AuditorError("clp: u must be > 0")

    def milder(self) -> "CLP":
        """A higher threshold prunes fewer channels."""
        return CLP(dataclasses.replace(self.config, u=self.config.u + 1.0))

    @torch.no_grad()
    def _purify(self, classifier: Classifier, run: RunContext | None, progress: ProgressFn | None) -> PurifyResult:
        """Data-free (``uses_data`` False): ``run`` is None and ``purify`` ignores images, labels and generator."""
        classifier.eval()  # as every purifier: the model is handed back in eval mode
        result = PurifyResult(self.name, self.describe(), data_source="none (data-free)",
                              num_samples=0)
        pairs = conv_bn_pairs(classifier.network)
        for step, (name, conv, bn) in enumerate(pairs, start=1):
            if progress:
                progress(step, len(pairs), f"clp {name}")
            if not conv.weight.requires_grad:
                result.notes.append(f"{name}: weight is a frozen constant, skipped")
                continue
            if conv.out_channels < self.config.min_channels:
                continue
            uclc = channel_lipschitz(conv, bn)
            threshold = float(uclc.mean() + self.config.u * uclc.std())
            pruned = torch.nonzero(uclc > threshold).flatten().tolist()
            result.rounds.append({"layer": name, "channels": conv.out_channels, "uclc_mean": float(uclc.mean()),
                                  "uclc_std": float(uclc.std()), "threshold": threshold,
                                  "uclc_max": float(uclc.max()), "pruned": len(pruned)})
            if not pruned:
                continue
            zero_channels(conv, bn, pruned)
            result.pruned_channels[name] = pruned
        if not pairs:
            result.notes.append("no convolution in the model: nothing to prune")
        return result


class CLPStep(PurifierStep):
    """CLP as a step of a recipe; a back-off keeps its threshold, so that it does not undo pruning that
    removed a backdoor (docs/purification.md, "The guard")."""

    name = "clp"
    Config = CLPConfig
    purifier = CLP
    meaning = "zero the channels whose Lipschitz bound is an outlier in their layer (data-free CLP)"

    def milder(self) -> "CLPStep":
        return self

    def run(self, context: StepContext) -> StepRecord:
        record = super().run(context)
        zeroed = record.zeroed()
        record.notes.append(f"clp (u={self.config.u:g}) pruned {sum(map(len, zeroed.values()))} channel(s) in "
                            f"{len(zeroed)} layer(s)")
        return record
