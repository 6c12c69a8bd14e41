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
feature reach. A class's index votes only where it reached the stop share within the ladder
(``conclusive``).

Measured (docs/detection.md): on the scan's samples it singles out Input-Aware's target (14.5), which
no other detector here finds; the largest index elsewhere was a natural class of Blended (3.09), so it
votes on its own scale (divided by 2.5, so above 5: ``VerdictConfig.voter_scales``). The purification's
``channels`` step zeroes the channels it blames (``auditor.detect.leads.channel_lead``; docs/purification.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.errors import AuditorError
from auditor.model import Classifier
from auditor.settings import JSONSettings

from auditor.replay import DownstreamReplay

from .base import DetectionResult, Detector, ProgressFn, balanced_pick, conv_at_depth, frozen_eval


@dataclass(frozen=True)
class StimulationConfig(JSONSettings):
    depth: float = 0.75  # relative depth of the stimulated convolution among the model's convolutions
    levels: tuple[float, ...] = (3.0, 4.0, 5.0, 6.0)  # stimulation levels tried, in units of each channel's spread
    stop_share: float = 0.5  # the ladder stops at the first level where a class reaches this share
    per_class: int = 10  # synthetic samples used per class
    median_floor: float = 0.02  # floor of the median share, the index's unit


class ChannelStimulation(Detector):
    """Per class: the share of other classes' samples that raising one hidden channel sends into it."""

    name = "stimulation"
    Config = StimulationConfig
    meaning = ("raising one hidden channel sends the other classes' samples into the class, at the lowest "
               "level that reaches any class (share above the median class's, in medians)")
    label = "stimulation"
    figure = "share"
    signal = "raising one hidden channel sends the other classes' samples into it"
    votes = True
    # its index is in medians of a share, not in MADs: Input-Aware's target 14.5 (scan samples), 25.6
    # (audit samples); the largest elsewhere a natural class of Blended, 3.09 (docs/detection.md).
    # Divided by 2.5 it votes above 5 (backdoored) and 3.75 (suspicious)
    vote_scale = 2.5

    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        cfg = self.config
        if not 0 <= cfg.depth <= 1 or not cfg.levels or min(cfg.levels) <= 0:
            raise AuditorError("stimulation: depth must be in [0, 1] and levels positive")
        k = classifier.num_classes
        layer_name, _ = conv_at_depth(classifier, cfg.depth, self.name)
        idx = balanced_pick(labels, k, cfg.per_class, torch.Generator().manual_seed(seed))
        x = images01[idx].detach().float().to(classifier.device)
        rows, channels, shares = [], [], torch.zeros(0)
        with frozen_eval(classifier):
            replay = DownstreamReplay(classifier, x, layer_name)
            spread = replay.features.transpose(0, 1).flatten(1).std(1)  # per channel, over samples and positions
            for step, level in enumerate(sorted(cfg.levels)):
                shares = stimulated_shares(replay, spread * level, k)
                best, channel = shares.max(0)
                rows.append(best)
                channels.append(channel)
                if progress:
                    progress(step + 1, len(cfg.levels), f"channel stimulation at level {level:g}")
                if float(best.max()) >= cfg.stop_share:
                    break
        share = rows[-1]
        reached = bool(float(share.max()) >= cfg.stop_share)
        median = float(share.median())
        index = (share - median) / max(median, cfg.median_floor)
        levels = sorted(cfg.levels)[: len(rows)]
        per_class = [{"class": t, "share": float(share[t]), "channel": int(channels[-1][t]),
                      "share_by_level": [round(float(r[t]), 4) for r in rows]} for t in range(k)]
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"samples": int(len(x)), "layer": layer_name, "layer_depth": cfg.depth, "channels": int(len(spread)),
                     "level": levels[-1], "levels": levels, "median_share": median, "partial_replay": replay.partial,
                     "reached_stop_share": reached},
            # below the stop share a few percent over a median near zero is a large index (clean_a, audit samples:
            # 10.6 from a share of 0.22; Input-Aware's class 1 beside its target, 7.2 from 0.16), so a class's
            # index only counts where one channel moved half the other classes' samples into it
            conclusive=[bool(value >= cfg.stop_share) for value in share.tolist()],
            images={"shares": shares},  # (channels, K) at the stop level: which channels do it
        )


def stimulated_shares(replay: DownstreamReplay, offsets: Tensor, num_classes: int) -> Tensor:
    """(channels, K): for each channel c raised by ``offsets[c]``, the share of the samples not predicted
    as t that now are, for every class t. Only the layers after the stimulated one run again."""
    reference = replay.reference.cpu()
    n, num_channels = len(reference), len(offsets)
    others = (n - torch.bincount(reference, minlength=num_classes).float()).clamp_min(1)
    shares = torch.zeros(num_channels, num_classes)
    for c in range(num_channels):
        edited = replay.features.clone()
        edited[:, c] += offsets[c]
        pred = replay.logits(edited).argmax(1).cpu()
        moved = pred != reference
        shares[c] = torch.bincount(pred[moved], minlength=num_classes).float() / others
    return shares
