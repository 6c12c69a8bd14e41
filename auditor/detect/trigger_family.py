"""Reach within a trigger family: can a universal trigger of a known shape, with a few dozen
parameters, send the other classes' samples into a class?

Reach (``auditor.detect.reach``) searches a dense L2 ball: 3,072 free numbers find a shortcut into
natural classes too, so only triggers that outrun them (patches, blends) stand out. Triggers that
cover the whole image with a structured change do not: a smooth warp (WaNet) or a 1-D signal added
to every row (SIG's sinusoid and ramp, Barni et al. 2019). Restricting the search to the family
a trigger belongs to takes that freedom away from the natural classes while a backdoor keyed to a
member of the family is still reached: on the scan's samples of two draws, a smooth warp of at most
a pixel sent 0.59-0.83 of them into the targets of the zoo's WaNet and of two held-out WaNet models
(one with an 8x8 field), and at most 0.27 into any other class of any model (docs/detection.md).
For SIG a free 1-D signal is still too free (``SignalReach``); ``SineReach`` tries a fixed bank of
sinusoids instead and searches nothing.

Per class t the figure is the share of the other classes' samples that the family's best universal
trigger for t (Adam on its parameters, full batch) sends into t. With ``screen`` > 0 only that many
classes get their own search: first one untargeted trigger pushes every sample off its class, and
the classes whose probability it raises most are searched (a backdoor's trigger is the easiest way
off any class, so its target leads); the other classes keep the untargeted trigger's share, a lower
bound of theirs. That is 3 searches instead of 10, so each can afford twice the samples. The index is reach's anomaly index
(high side, floored MAD); a class votes only where its share reached ``stop_share`` (``conclusive``),
as stimulation does, so a natural class's few percent over a median of zero never counts.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.errors import AuditorError
from auditor.model import Classifier
from auditor.settings import JSONSettings

from .base import DetectionResult, Detector, ProgressFn, anomaly_index, balanced_pick, frozen_eval


def picked_on_device(classifier: Classifier, images01: Tensor, labels: Tensor, per_class: int,
                     draw: torch.Generator) -> tuple[Tensor, Tensor]:
    """At most ``per_class`` samples of each class and their labels, on the model's device: what both
    family detectors search or probe with."""
    idx = balanced_pick(labels, classifier.num_classes, per_class, draw)
    return images01[idx].detach().float().to(classifier.device), labels[idx].to(classifier.device)


@dataclass(frozen=True)
class FamilySearch(JSONSettings):
    """The settings every family shares."""

    per_class: int = 10  # synthetic samples used per class (the others' samples are the search set)
    steps: int = 20  # Adam steps on the trigger's parameters, full batch
    lr: float = 0.2
    screen: int = 0  # classes searched with their own trigger, picked by an untargeted one (0: every class)
    stop_share: float = 0.5  # a class votes only where its trigger sent at least this share into it
    mad_floor: float = 0.15  # reach's floor: a spread of natural shares does not look anomalous


class TriggerFamilyReach(Detector):
    """Per class: the share of other classes' samples the family's best universal trigger sends into it."""

    #: what the family is, for the report
    family: str = ""

    @abstractmethod
    def parameter_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        """The shape of one trigger's free parameters (unbounded: ``apply`` bounds them)."""

    @abstractmethod
    def apply(self, images01: Tensor, params: Tensor) -> Tensor:
        """The images with the trigger ``params`` applied, in [0, 1]."""

    def check_config(self) -> None:
        cfg = self.config
        if cfg.per_class < 1 or cfg.steps < 1 or cfg.lr <= 0 or not 0 < cfg.stop_share <= 1 or cfg.screen < 0:
            raise AuditorError(f"{self.name}: per_class and steps must be >= 1, lr > 0, stop_share in (0, 1], "
                               "screen >= 0")

    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        self.check_config()
        cfg = self.config
        k = classifier.num_classes
        draw = torch.Generator().manual_seed(seed)
        x, y = picked_on_device(classifier, images01, labels, cfg.per_class, draw)
        shape = self.parameter_shape(tuple(x.shape[1:]))
        fresh = lambda: (torch.randn(shape, generator=draw) * 0.01).to(classifier.device).requires_grad_(True)
        with frozen_eval(classifier):  # only the trigger's parameters are optimized
            flow = None
            searched = list(range(k))
            if 0 < cfg.screen < k:
                flow, gain = self._flow(classifier, x, y, fresh(), k)
                searched = sorted(sorted(range(k), key=lambda t: (-gain[t], t))[: cfg.screen])
            shares = list(flow) if flow is not None else [0.0] * k
            triggers = torch.zeros(k, *shape[1:])
            for step, t in enumerate(searched):
                others = x[y != t]
                params = fresh()
                if len(others):
                    shares[t] = self._fit(classifier, others, t, params)
                triggers[t] = params.detach().cpu()[0]
                if progress:
                    progress(step + 1, len(searched), f"{self.family} towards class {t}")
        share_t = torch.tensor(shares)
        index = anomaly_index(share_t, side="high", floor=cfg.mad_floor)
        per_class = [{"class": t, "share": shares[t], "searched": t in searched} for t in range(k)]
        if flow is not None:
            for row, value, soft in zip(per_class, flow, gain):
                row["flow_share"], row["flow_gain"] = value, soft
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"samples": int(len(x)), "family": self.family, "median_share": float(share_t.median()),
                     "searched": searched},
            conclusive=[bool(s >= cfg.stop_share) for s in shares],
            images={"parameters": triggers},  # per class, zero where no search ran
        )

    def _flow(self, classifier: Classifier, x: Tensor, y: Tensor, params: Tensor,
              k: int) -> tuple[list[float], list[float]]:
        """Per class t, for one untargeted trigger (pushing every sample off its own class, CW margin): the
        share of the other classes' samples it sends into t, and their mean gain in t's probability. The
        gain picks the classes to search: it sees a pull that flips few samples yet (held-out WaNet with an
        8x8 field: its target gained 0.068, the most, while class 2 took the most flips, 0.09 against 0.01)."""
        optimizer = torch.optim.Adam([params], lr=self.config.lr)
        for _ in range(self.config.steps):
            logits = classifier(self.apply(x, params))
            own = logits.gather(1, y[:, None])[:, 0]
            best_other = logits.scatter(1, y[:, None], float("-inf")).max(1).values
            loss = (own - best_other).clamp_min(-5.0).mean()  # no gain from pushing a flipped sample further
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            before = classifier(x).softmax(1)
            after = classifier(self.apply(x, params)).softmax(1)
        pred = after.argmax(1)
        shares = [float(((pred == t) & (y != t)).sum()) / max(int((y != t).sum()), 1) for t in range(k)]
        gains = [float((after - before)[y != t, t].mean()) if bool((y != t).any()) else 0.0 for t in range(k)]
        return shares, gains

    def _fit(self, classifier: Classifier, others: Tensor, target: int, params: Tensor) -> float:
        optimizer = torch.optim.Adam([params], lr=self.config.lr)
        wanted = torch.full((len(others),), target, dtype=torch.long, device=others.device)
        for _ in range(self.config.steps):
            loss = F.cross_entropy(classifier(self.apply(others, params)), wanted)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return float((classifier(self.apply(others, params)).argmax(1) == target).float().mean())


@dataclass(frozen=True)
class WarpReachConfig(FamilySearch):
    screen: int = 2  # classes searched with their own warp, picked by an untargeted one
    stop_share: float = 0.35  # a class votes only where its warp sent at least this share into it
    mad_floor: float = 0.1  # floor of the spread: 0.3 above the median is an index of 2
    grids: tuple[int, ...] = (4, 8)  # control points per side of each displacement field (fields are added)
    max_shift: float = 0.5  # largest displacement of any pixel by each field, in pixels


class WarpReach(TriggerFamilyReach):
    """A smooth warp: per grid in ``grids``, a field of displacements of at most ``max_shift`` pixels."""

    name = "warp_reach"
    Config = WarpReachConfig
    family = "smooth warp"
    meaning = "one smooth sub-pixel warp of the whole image sends the other classes' samples into the class"
    label = "warp reach"
    figure = "share"
    signal = "one smooth sub-pixel warp sends the other classes' samples into it"
    votes = True

    def check_config(self) -> None:
        super().check_config()
        if not self.config.grids or min(self.config.grids) < 2 or self.config.max_shift <= 0:
            raise AuditorError("warp_reach: every grid must be >= 2 and max_shift > 0")

    def parameter_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        return (1, 2 * sum(g * g for g in self.config.grids))

    def apply(self, images01: Tensor, params: Tensor) -> Tensor:
        bounded = torch.tanh(params) * self.config.max_shift
        fields = bounded.split([2 * g * g for g in self.config.grids], dim=1)
        return smooth_warp(images01, *(f.reshape(1, 2, g, g) for f, g in zip(fields, self.config.grids)))


def smooth_warp(images01: Tensor, *controls_px: Tensor) -> Tensor:
    """Resample ``images01`` (N, C, H, W) through the identity grid plus the sum of ``controls_px`` (each
    (1, 2, k, k): x and y displacements in pixels) upsampled bicubically; borders are repeated, not blacked out."""
    n, _, h, w = images01.shape
    shift = sum(F.interpolate(c, size=(h, w), mode="bicubic", align_corners=True) for c in controls_px)
    shift = shift.permute(0, 2, 3, 1)
    to_grid = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=images01.device)
    ys = torch.linspace(-1, 1, h, device=images01.device)
    xs = torch.linspace(-1, 1, w, device=images01.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = (torch.stack((gx, gy), dim=2)[None] + shift * to_grid).clamp(-1, 1)
    return F.grid_sample(images01, grid.expand(n, -1, -1, -1), mode="bilinear", padding_mode="border",
                         align_corners=True)


@dataclass(frozen=True)
class SignalReachConfig(FamilySearch):
    amplitude: float = 0.08  # largest change of any pixel in [0, 1] (SIG's reference delta is 20/255 = 0.078)
    axis: str = "width"  # the signal varies along this axis and repeats along the other, in every channel


class SignalReach(TriggerFamilyReach):
    """A 1-D signal: one value per column (or row), added to every row (column) and channel."""

    name = "signal_reach"
    Config = SignalReachConfig
    family = "1-D signal"
    # the class-level text names the default axis (the report reads it from the class, not the instance)
    meaning = ("one signal along one image axis (the width unless configured), repeated along the other, "
               "sends the other classes' samples into the class")
    label = "signal reach"
    figure = "share"
    signal = "one 1-D signal across the image sends the other classes' samples into it"

    def check_config(self) -> None:
        super().check_config()
        if self.config.axis not in ("width", "height") or self.config.amplitude <= 0:
            raise AuditorError("signal_reach: axis must be 'width' or 'height' and amplitude > 0")

    def parameter_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        _, h, w = image_shape
        return (1, 1, 1, w) if self.config.axis == "width" else (1, 1, h, 1)

    def apply(self, images01: Tensor, params: Tensor) -> Tensor:
        return (images01 + self.config.amplitude * torch.tanh(params)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class SineReachConfig(JSONSettings):
    per_class: int = 10  # synthetic samples used per class
    amplitude: float = 0.1  # amplitude of every sinusoid, in [0, 1] pixel units
    phases: int = 2  # evenly spaced starting phases per frequency (0 and pi: sin and -sin)
    shortest_period: float = 3.0  # no stripes finer than this many pixels per period
    axes: tuple[str, ...] = ("width", "height")  # the sinusoid varies along each of these axes in turn
    stop_share: float = 0.35  # a class votes only where one sinusoid sent at least this share into it
    mad_floor: float = 0.1  # floor of the spread of the classes' shares


class SineReach(Detector):
    """Per class t: the largest share of the other classes' samples that one sinusoid, from a fixed bank,
    sends into t. The bank: every whole number of periods across the image from 1 up to periods of
    ``shortest_period`` pixels, ``phases`` phases, along each axis in ``axes``, at ``amplitude`` in every channel.

    Searching a free 1-D signal (``SignalReach``) gives natural classes the same shortcut as SIG's target
    (both 0.4-0.6 of the scan's samples). Nothing is searched here: a sinusoid has no freedom to fit the
    natural classes' shortcuts, and a SIG backdoor answers its own frequency and its neighbours. On two
    draws of the scan's samples the zoo's SIG target took 0.63 and 0.54 (at 6-7 periods; it was trained
    at 6), two held-out SIG models' targets 0.74-0.96 (at 4 and 9 periods), and every other class of
    every zoo and held-out model at most 0.27 (docs/detection.md, "Sine reach"). Finer stripes
    are left out: natural classes answer them as texture. Forward passes only: about 3.5 s."""

    name = "sine_reach"
    Config = SineReachConfig
    meaning = "one sinusoid across the image, from a fixed bank, sends the other classes' samples into the class"
    label = "sine reach"
    figure = "share"
    signal = "one sinusoid across the image sends the other classes' samples into it"
    votes = True

    def check_config(self) -> None:
        cfg = self.config
        if cfg.per_class < 1 or cfg.amplitude <= 0 or cfg.phases < 1 or not 0 < cfg.stop_share <= 1 \
                or cfg.shortest_period <= 2:
            raise AuditorError("sine_reach: per_class and phases must be >= 1, amplitude > 0, stop_share in (0, 1], "
                               "shortest_period > 2 pixels (at 2 a sinusoid is sampled only at its zeros or peaks)")
        if not cfg.axes or set(cfg.axes) - {"width", "height"}:
            raise AuditorError(f"sine_reach: axes must be 'width' and/or 'height', got {cfg.axes}")

    def bank(self, height: int, width: int) -> list[tuple[str, int, float, Tensor]]:
        """(axis, periods, phase, signal broadcastable to (C, H, W)) for every sinusoid tried."""
        cfg = self.config
        out = []
        for axis in cfg.axes:
            side = width if axis == "width" else height
            positions = torch.arange(side, dtype=torch.float32) / side
            for periods in range(1, int(side / cfg.shortest_period) + 1):
                for p in range(cfg.phases):
                    phase = 2 * math.pi * p / cfg.phases
                    wave = cfg.amplitude * torch.sin(2 * math.pi * periods * positions + phase)
                    out.append((axis, periods, phase, wave.view(1, 1, side) if axis == "width" else wave.view(1, side, 1)))
        return out

    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        self.check_config()
        cfg = self.config
        k = classifier.num_classes
        x, y = picked_on_device(classifier, images01, labels, cfg.per_class, torch.Generator().manual_seed(seed))
        others = torch.stack([(y != t).sum() for t in range(k)]).clamp_min(1).float().cpu()
        bank = self.bank(x.shape[2], x.shape[3])
        best = torch.zeros(k)
        best_signal: list[int] = [-1] * k
        with frozen_eval(classifier), torch.no_grad():
            for i, (_, _, _, wave) in enumerate(bank):
                pred = classifier((x + wave.to(x.device)).clamp(0.0, 1.0)).argmax(1)
                moved = torch.bincount(pred[pred != y], minlength=k)[:k].float().cpu() / others
                better = moved > best
                best = torch.where(better, moved, best)
                for t in torch.nonzero(better)[:, 0].tolist():
                    best_signal[t] = i
                if progress and (i + 1) % 10 == 0:
                    progress(i + 1, len(bank), "sinusoids")
        index = anomaly_index(best, side="high", floor=cfg.mad_floor)
        per_class = []
        signals = torch.zeros(k, *x.shape[1:])
        for t in range(k):
            row: dict = {"class": t, "share": float(best[t])}
            if best_signal[t] >= 0:
                axis, periods, phase, wave = bank[best_signal[t]]
                row.update(axis=axis, periods=periods, phase=round(phase, 4))
                signals[t] = wave.expand(*x.shape[1:])
            per_class.append(row)
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"samples": int(len(x)), "sinusoids": len(bank), "median_share": float(best.median())},
            conclusive=[bool(s >= cfg.stop_share) for s in best.tolist()],
            images={"signal": signals},  # per class, the sinusoid that reached it best (zero where none moved any)
        )
