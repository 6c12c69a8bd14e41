"""Does raising one hidden channel send every class into the same class?

ABS (Liu et al., CCS 2019) observes that a trojan is carried by a few "compromised" neurons: raise
one of them and inputs of every class flip to the target, while raising a benign neuron moves a
few inputs, to several labels. Feature reach (``auditor.detect.feature_reach``) fits a dense delta
on a whole layer and reached clean models' natural classes as easily as backdoor targets; this
detector adds ABS's sparsity prior instead: one channel at a time, raised at every position by
``level`` times that channel's own spread over the samples.

Per class t the figure is the largest share of the other classes' samples that any one channel
sends into t. The levels form a ladder that stops at the first level where some class reaches
``stop_share``: there a backdoor's target has been reached while natural classes are still far
behind. The index is a class's share above the median class's, in medians (floored), as in
feature reach.

Measured (docs/detection.md): on the scan's samples it singles out Input-Aware's target (14.5; WaNet's
1.81) but also a natural class of Blended (3.09), so it does not vote by default. I-BAU uses it to
zero the blamed channels where one of them moves half the samples within a short ladder
(docs/purification.md, "The stimulation step").
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from auditor.errors import AuditorError
from auditor.model import Classifier

from .base import (DetectionResult, Detector, ProgressFn, balanced_pick, check_samples, conv_at_depth, frozen_eval,
                   predictions_and_features)


@dataclass(frozen=True)
class StimulationConfig:
    depth: float = 0.75  # relative depth of the stimulated convolution among the model's convolutions
    levels: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0)  # in units of each channel's spread
    stop_share: float = 0.5  # the ladder stops at the first level where a class reaches this share
    per_class: int = 10  # synthetic samples used per class
    channel_batch: int = 4  # channels stimulated in one forward pass (memory: channel_batch x samples images)
    median_floor: float = 0.02  # floor of the median share, the index's unit

    def to_json(self) -> dict:
        return asdict(self)


class ChannelStimulation(Detector):
    """Per class: the share of other classes' samples that raising one hidden channel sends into it."""

    name = "stimulation"
    Config = StimulationConfig
    meaning = ("raising one hidden channel sends the other classes' samples into the class, at the lowest "
               "level that reaches any class (share above the median class's, in medians)")

    def detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, *, seed: int = 0,
               progress: ProgressFn | None = None) -> DetectionResult:
        check_samples(classifier, images01, labels, self.name)
        cfg = self.config
        if not 0 <= cfg.depth <= 1 or not cfg.levels or min(cfg.levels) <= 0 or cfg.channel_batch < 1:
            raise AuditorError("stimulation: depth must be in [0, 1], levels positive, channel_batch >= 1")
        started = time.perf_counter()
        k = classifier.num_classes
        layer_name, layer = conv_at_depth(classifier, cfg.depth, self.name)
        idx = balanced_pick(labels, k, cfg.per_class, torch.Generator().manual_seed(seed))
        x = images01[idx].detach().float().to(classifier.device)
        rows, channels, shares = [], [], torch.zeros(0)
        with frozen_eval(classifier):
            reference, features = predictions_and_features(classifier, x, layer)
            spread = features.transpose(0, 1).flatten(1).std(1)  # per channel, over samples and positions
            for step, level in enumerate(sorted(cfg.levels)):
                shares = stimulated_shares(classifier, x, reference, layer, spread * level, cfg.channel_batch)
                best, channel = shares.max(0)
                rows.append(best)
                channels.append(channel)
                if progress:
                    progress(step + 1, len(cfg.levels), f"channel stimulation at level {level:g}")
                if float(best.max()) >= cfg.stop_share:
                    break
        share = rows[-1]
        median = float(share.median())
        index = (share - median) / max(median, cfg.median_floor)
        levels = sorted(cfg.levels)[: len(rows)]
        per_class = [{"class": t, "share": float(share[t]), "channel": int(channels[-1][t]),
                      "share_by_level": [round(float(r[t]), 4) for r in rows]} for t in range(k)]
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"samples": int(len(x)), "layer": layer_name, "layer_depth": cfg.depth, "channels": int(len(spread)),
                     "level": levels[-1], "levels": levels, "median_share": median,
                     "reached_stop_share": bool(float(share.max()) >= cfg.stop_share)},
            seconds=round(time.perf_counter() - started, 3),
            images={"shares": shares},  # (channels, K) at the stop level: which channels do it
        )


def stimulated_shares(classifier: Classifier, x: Tensor, reference: Tensor, layer: nn.Module, offsets: Tensor,
                      channel_batch: int) -> Tensor:
    """(channels, K): for each channel c raised by ``offsets[c]``, the share of the samples not predicted
    as t that now are, for every class t. Several channels share one forward pass (one copy of the
    samples per channel)."""
    k = classifier.num_classes
    n, num_channels = len(x), len(offsets)
    others = torch.bincount(reference, minlength=k).float()
    others = (n - others).clamp_min(1).cpu()
    shares = torch.zeros(num_channels, k)
    current: dict[str, Tensor] = {}

    def add(_module: nn.Module, _inputs: tuple, output: Tensor) -> Tensor:
        return output + current["offset"]

    handle = layer.register_forward_hook(add)
    try:
        with torch.no_grad():
            for first in range(0, num_channels, channel_batch):
                group = range(first, min(first + channel_batch, num_channels))
                offset = torch.zeros(len(group), 1, num_channels, 1, 1, device=x.device)
                for g, c in enumerate(group):
                    offset[g, 0, c] = offsets[c]
                current["offset"] = offset.repeat(1, n, 1, 1, 1).flatten(0, 1)
                pred = classifier(x.repeat(len(group), 1, 1, 1)).argmax(1).view(len(group), n).cpu()
                moved = pred != reference.cpu()
                for g, c in enumerate(group):
                    shares[c] = torch.bincount(pred[g][moved[g]], minlength=k).float() / others
    finally:
        handle.remove()
    return shares
