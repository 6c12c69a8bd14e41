"""What the purification steps act on, found on the unpurified model before any weight changes.

A purification step never runs a detector itself: it asks for a lead (``LeadRequests``), the
detection finds it once on the original model and the purification samples (``find_leads``), and
every attempt of the guard's back-off receives the same typed ``Leads``. A lead holds facts (the
patch that flips the most samples, the sinusoid class that votes, the channels one stimulation
blames); whether they are enough to act on is the step's own threshold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from auditor.model import Classifier
from auditor.universal import PatchSearch, PatchStart, grid_patch, untargeted_patch

from .base import ProgressFn
from .stimulation import ChannelStimulation
from .trigger_family import SineReach


@dataclass(frozen=True)
class PatchSearchSettings:
    """How the patch lead is searched (the patch step's own settings)."""

    pixels: int  # size of the patch in pixels
    steps: int  # Adam steps of the search
    l1: float  # L1 weight on the soft mask
    batch_size: int  # images per search step
    grid_start: bool  # start at the grid's best solid square


@dataclass(frozen=True)
class LeadRequests:
    """Which leads a purification needs; None: not needed."""

    patch: PatchSearchSettings | None = None
    signal: bool = False
    channels: tuple[float, ...] | None = None  # the stimulation's level ladder

    @property
    def any(self) -> bool:
        return self.patch is not None or self.signal or self.channels is not None


@dataclass(frozen=True)
class PatchLead:
    """The small patch that flips the most samples away from the model's own predictions."""

    pixels: int
    search: PatchSearch  # mask, pattern, and the predictions without and with it
    start: PatchStart | None  # the grid's best solid square the search began from
    num_classes: int
    seconds: float

    @property
    def flip_rate(self) -> float:
        return self.search.flip_rate

    @property
    def largest_share(self) -> float:
        """The share of the flips that the most-receiving class takes (1.0: all into one class)."""
        return self.search.largest_share(self.num_classes)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"pixels": self.pixels, "flip_rate": round(self.flip_rate, 4), "box": self.search.box,
                                  "largest_share_of_flips": round(self.largest_share, 4),
                                  "into_class": int(self.search.flips_into(self.num_classes).argmax())}
        if self.start is not None:
            record["grid_start"] = {"top": self.start.top, "left": self.start.left, "side": self.start.side,
                                    "value": self.start.value, "flip_rate": round(self.start.flip_rate, 4)}
        return record


@dataclass(frozen=True)
class SignalLead:
    """The class one sinusoid of sine reach's fixed bank reaches most, and that sinusoid."""

    target: int
    share: float  # share of the other classes' samples the sinusoid sends into ``target``
    index: float  # the class's anomaly index
    voting_index: float  # the index as the verdict reads it (0 where the class did not reach the stop share)
    axis: str | None
    periods: int | None
    amplitude: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"class": self.target, "share": round(self.share, 4), "index": round(self.index, 4),
                "axis": self.axis, "periods": self.periods, "amplitude": self.amplitude, "seconds": self.seconds}


@dataclass(frozen=True)
class ChannelLead:
    """The class that raising one hidden channel reaches most anomalously, and each channel's share into it."""

    target: int
    index: float
    voting_index: float  # 0 where no class reached the stop share
    level: float
    layer: str
    shares: tuple[float, ...]  # per channel of ``layer``: the share of other classes' samples it sends into target
    reached_stop_share: bool
    seconds: float

    def ranked(self, max_channels: int, min_share: float) -> list[int]:
        """The channels that alone send at least ``min_share`` into the class, strongest first."""
        order = torch.tensor(self.shares).argsort(descending=True)[:max_channels]
        return [int(ch) for ch in order if self.shares[int(ch)] >= min_share]

    def to_json(self) -> dict[str, Any]:
        return {"class": self.target, "index": round(self.index, 4), "level": self.level, "layer": self.layer,
                "reached_stop_share": self.reached_stop_share, "seconds": self.seconds}


@dataclass(frozen=True)
class Leads:
    """Every lead found for one purification (None: not asked for)."""

    patch: PatchLead | None = None
    signal: SignalLead | None = None
    channels: ChannelLead | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def find_leads(classifier: Classifier, images01: Tensor, targets: Tensor | None, requests: LeadRequests, seed: int,
               progress: ProgressFn | None = None) -> Leads:
    """The leads ``requests`` asks for, on ``classifier`` as it is now (the unpurified model) and on the
    purification samples ``images01`` with their ``targets`` (None: the model's own predictions); each search
    draws from its own generator, seeded from ``seed``."""
    images01 = images01.detach().float().cpu()
    targets = classifier.predict(images01).cpu() if targets is None else targets.long().cpu()
    channels = channel_lead(classifier, images01, targets, requests.channels, seed) if requests.channels else None
    patch = (patch_lead(classifier, images01, requests.patch, seed, progress)
             if requests.patch is not None else None)
    signal = signal_lead(classifier, images01, targets, seed) if requests.signal else None
    return Leads(patch=patch, signal=signal, channels=channels)


def patch_lead(classifier: Classifier, images01: Tensor, settings: PatchSearchSettings, seed: int,
               progress: ProgressFn | None = None) -> PatchLead:
    """The small patch that flips the most samples away from the model's own predictions
    (``auditor.universal.untargeted_patch``), started at the grid's best solid square."""
    started = time.perf_counter()
    start = (grid_patch(classifier, images01, pixels=settings.pixels,
                        generator=torch.Generator().manual_seed(seed + 2)) if settings.grid_start else None)
    done = [0]

    def on_step() -> None:
        done[0] += 1
        if progress:
            progress(done[0], settings.steps, "patch search")

    search = untargeted_patch(classifier, images01, pixels=settings.pixels, steps=settings.steps, l1=settings.l1,
                              batch_size=settings.batch_size, on_step=on_step, start=start,
                              generator=torch.Generator().manual_seed(seed + 1))
    return PatchLead(settings.pixels, search, start, classifier.num_classes, round(time.perf_counter() - started, 2))


def signal_lead(classifier: Classifier, images01: Tensor, targets: Tensor, seed: int) -> SignalLead:
    """Sine reach's bank on the samples: the top voting class (where none votes, the top class by index)."""
    found = SineReach().detect(classifier, images01, targets, seed=seed)
    voting = found.voting_index()
    target = max(range(len(voting)), key=lambda t: (voting[t], found.index[t], -t))
    row = found.per_class[target]
    return SignalLead(target, float(row["share"]), float(found.index[target]), float(voting[target]),
                      row.get("axis"), row.get("periods"), float(found.config["amplitude"]), found.seconds)


def channel_lead(classifier: Classifier, images01: Tensor, targets: Tensor, levels: tuple[float, ...],
                 seed: int) -> ChannelLead:
    """One-channel stimulation (``auditor.detect.stimulation``): the top voting class (where none votes, the
    top class by index), and each channel's share into it at the level the ladder stopped."""
    found = ChannelStimulation(levels=tuple(levels)).detect(classifier, images01, targets, seed=seed)
    voting = found.voting_index()  # as the verdict reads it: classes one channel filled to the stop share
    target = max(range(len(voting)), key=lambda t: (voting[t], found.index[t], -t))
    shares = found.images["shares"][:, target]  # per channel, at the stop level
    return ChannelLead(target, float(found.index[target]), float(voting[target]), found.summary["level"],
                       found.summary["layer"], tuple(float(s) for s in shares),
                       bool(found.summary["reached_stop_share"]), found.seconds)
