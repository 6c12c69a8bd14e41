"""CLP: Channel Lipschitzness-based Pruning (Zheng et al., ECCV 2022), data-free.

A backdoor tends to live in a few channels that react very strongly to a small input pattern;
their upper bound on the channel Lipschitz constant (UCLC) is an outlier within the layer.
UCLC_k = largest singular value of W_k reshaped to (in_channels, kh * kw), times |gamma_k / sigma_k|
when a BatchNorm follows the convolution unfolded. Channels with UCLC_k > mean + u * std are
pruned by zeroing, which keeps the ONNX graph's structure (and write-back) unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from auditor.errors import AuditorError
from auditor.model import Classifier

from .base import ProgressFn, PurifyResult, Purifier, RunContext, StepRecord
from .guard import restore, snapshot
from .step import Step, StepContext


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


@dataclass(frozen=True)
class AnchoredCLPConfig:
    u: float = 3.0  # threshold in standard deviations above the layer mean; paper default 3
    min_channels: int = 4  # skip layers with fewer output channels (mean/std meaningless); our choice
    # Keep a pruning only where the anchors' predictions still agree this much with the model's before the step.
    # None: the guard's prior threshold (``for_guard``), so that CLP never prunes into a loss the guard cannot
    # undo (interpolation keeps pruned channels zero); no check where no guard or no anchors take part.
    min_anchor_agreement: float | None = None
    raises: int = 2  # where a pruning fails the check, u is raised by 1 this many times before nothing is pruned


class CLPStep(Step):
    """CLP as a step of a recipe, anchored: a pruning that moves the anchors' predictions below the guard's
    threshold is undone and retried at a higher u. A back-off keeps the threshold, so that it does not undo
    pruning that removed a backdoor (docs/purification.md, "The guard")."""

    name = "clp"
    Config = AnchoredCLPConfig
    meaning = "zero the channels whose Lipschitz bound is an outlier in their layer (data-free CLP), as far as the anchors agree"

    def validate(self) -> None:
        c = self.config
        CLP(CLPConfig(u=c.u, min_channels=c.min_channels))
        if c.raises < 0 or (c.min_anchor_agreement is not None and not 0 <= c.min_anchor_agreement <= 1):
            raise AuditorError("clp: raises must be >= 0 and min_anchor_agreement in [0, 1]")

    def for_guard(self, min_prior_agreement: float) -> "CLPStep":
        """Prune only as far as the guard can still accept (unless a threshold was set explicitly)."""
        if self.config.min_anchor_agreement is None:
            return CLPStep(dataclasses.replace(self.config, min_anchor_agreement=min_prior_agreement))
        return self

    def run(self, context: StepContext) -> StepRecord:
        c, classifier, anchors = self.config, context.classifier, context.run.anchors
        started = time.perf_counter()
        check = c.min_anchor_agreement is not None and anchors is not None
        reference = classifier.predict(anchors) if check else None
        before = snapshot(classifier) if check else None
        tried: list[dict[str, Any]] = []
        record = StepRecord(self.name)
        for raised in range(c.raises + 1 if check else 1):
            u = c.u + raised
            result = CLP(CLPConfig(u=u, min_channels=c.min_channels)).purify(classifier)
            zeroed = {layer: list(channels) for layer, channels in result.pruned_channels.items()}
            count = sum(map(len, zeroed.values()))
            share = float((classifier.predict(anchors) == reference).float().mean()) if check and count else None
            kept = share is None or share >= c.min_anchor_agreement
            tried.append({"u": u, "pruned": count, "anchor_agreement": share, "kept": kept})
            record.notes.extend(result.notes)
            if kept:
                record.acted = bool(count)
                record.changed = {"zeroed": zeroed} if zeroed else {}
                record.notes.append(f"clp (u={u:g}) pruned {count} channel(s) in {len(zeroed)} layer(s)"
                                    + ("" if share is None else f" (anchor agreement {share:.3f})"))
                break
            restore(classifier, before)
        else:
            record.notes.append(f"clp pruned nothing: no u from {c.u:g} to {c.u + c.raises:g} kept anchor "
                                f"agreement >= {c.min_anchor_agreement:g}")
        if check:
            record.changed["u_tried"] = tried
        record.seconds = round(time.perf_counter() - started, 2)
        return record
