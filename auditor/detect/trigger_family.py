"""Reach within a trigger family: can a universal trigger of a known shape, with a handful of
parameters, send the other classes' samples into a class?

Reach (``auditor.detect.reach``) searches a dense L2 ball: 3,072 free numbers find a shortcut into
natural classes too, so only triggers that outrun them (patches, blends) stand out. Triggers that
cover the whole image with a structured change do not: a smooth warp (WaNet) or a 1-D signal added
to every row (SIG's sinusoid and ramp, Barni et al. 2019). Restricting the search to the family
a trigger belongs to takes that freedom away from the natural classes while a backdoor keyed to a
member of the family is still reached: on the zoo's scan samples a 4x4 warp of at most half a pixel
sends 0.73-0.86 of the samples into WaNet's target and at most 0.13 into any other class, of any
model (docs/detection.md).

Per class t the figure is the share of the other classes' samples that the family's best universal
trigger for t (Adam on its parameters, full batch) sends into t. With ``screen`` > 0 only that many
classes get their own search: first one untargeted trigger pushes every sample off its class, and
the classes it sends most samples to are searched (a backdoor's trigger is the easiest way off any
class, so its target leads: WaNet's took 0.27 of the samples, no other class of any zoo model more
than 0.10); the other classes keep the untargeted trigger's share, a lower bound of theirs. That is
3 searches instead of 10, so each can afford twice the samples. The index is reach's anomaly index
(high side, floored MAD); a class votes only where its share reached ``stop_share`` (``conclusive``),
as stimulation does, so a natural class's few percent over a median of zero never counts.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.errors import AuditorError
from auditor.model import Classifier

from .base import DetectionResult, Detector, ProgressFn, anomaly_index, balanced_pick, check_samples, frozen_eval


@dataclass(frozen=True)
class FamilySearch:
    """The settings every family shares."""

    per_class: int = 10  # synthetic samples used per class (the others' samples are the search set)
    steps: int = 20  # Adam steps on the trigger's parameters, full batch
    lr: float = 0.2
    screen: int = 0  # classes searched with their own trigger, picked by an untargeted one (0: every class)
    stop_share: float = 0.5  # a class votes only where its trigger sent at least this share into it
    mad_floor: float = 0.15  # reach's floor: a spread of natural shares does not look anomalous

    def to_json(self) -> dict:
        return asdict(self)


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

    def detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, *, seed: int = 0,
               progress: ProgressFn | None = None) -> DetectionResult:
        check_samples(classifier, images01, labels, self.name)
        self.check_config()
        cfg = self.config
        started = time.perf_counter()
        k = classifier.num_classes
        draw = torch.Generator().manual_seed(seed)
        idx = balanced_pick(labels, k, cfg.per_class, draw)
        x, y = images01[idx].detach().float().to(classifier.device), labels[idx].to(classifier.device)
        shape = self.parameter_shape(tuple(x.shape[1:]))
        fresh = lambda: (torch.randn(shape, generator=draw) * 0.01).to(classifier.device).requires_grad_(True)
        with frozen_eval(classifier):  # only the trigger's parameters are optimized
            flow = None
            searched = list(range(k))
            if 0 < cfg.screen < k:
                flow = self._flow(classifier, x, y, fresh(), k)
                searched = sorted(sorted(range(k), key=lambda t: (-flow[t], t))[: cfg.screen])
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
            for row, value in zip(per_class, flow):
                row["flow_share"] = value
        return DetectionResult(
            detector=self.name, config=cfg.to_json(), per_class=per_class, index=index.tolist(),
            summary={"samples": int(len(x)), "family": self.family, "median_share": float(share_t.median()),
                     "searched": searched},
            conclusive=[bool(s >= cfg.stop_share) for s in shares],
            seconds=round(time.perf_counter() - started, 3),
            images={"parameters": triggers},  # per class, zero where no search ran
        )

    def _flow(self, classifier: Classifier, x: Tensor, y: Tensor, params: Tensor, k: int) -> list[float]:
        """Per class t, the share of the other classes' samples that one untargeted trigger (pushing every
        sample off its own class, CW margin) sends into t."""
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
            pred = classifier(self.apply(x, params)).argmax(1)
        return [float(((pred == t) & (y != t)).sum()) / max(int((y != t).sum()), 1) for t in range(k)]

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
    screen: int = 2
    stop_share: float = 0.35  # zoo scan samples: WaNet's target 0.53-0.68, any other class of any model <= 0.16
    mad_floor: float = 0.1  # so that 0.3 above the median is an index of 2
    grid: int = 4  # control points per side, upsampled bicubically to the image (WaNet's k)
    max_shift: float = 0.5  # largest displacement of any pixel, in pixels (WaNet's s=0.5 field: 0.25 on average)


class WarpReach(TriggerFamilyReach):
    """A smooth warp: a ``grid`` x ``grid`` field of displacements of at most ``max_shift`` pixels."""

    name = "warp_reach"
    Config = WarpReachConfig
    family = "smooth warp"
    meaning = "one smooth sub-pixel warp of the whole image sends the other classes' samples into the class"

    def check_config(self) -> None:
        super().check_config()
        if self.config.grid < 2 or self.config.max_shift <= 0:
            raise AuditorError("warp_reach: grid must be >= 2 and max_shift > 0")

    def parameter_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        return (1, 2, self.config.grid, self.config.grid)

    def apply(self, images01: Tensor, params: Tensor) -> Tensor:
        return smooth_warp(images01, torch.tanh(params) * self.config.max_shift)


def smooth_warp(images01: Tensor, control_px: Tensor) -> Tensor:
    """Resample ``images01`` (N, C, H, W) through the identity grid plus ``control_px`` (1, 2, k, k:
    x and y displacements in pixels) upsampled bicubically; borders are repeated, not blacked out."""
    n, _, h, w = images01.shape
    shift = F.interpolate(control_px, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
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
    meaning = "one signal added along the image's width sends the other classes' samples into the class"

    def check_config(self) -> None:
        super().check_config()
        if self.config.axis not in ("width", "height") or self.config.amplitude <= 0:
            raise AuditorError("signal_reach: axis must be 'width' or 'height' and amplitude > 0")

    def parameter_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        _, h, w = image_shape
        return (1, 1, 1, w) if self.config.axis == "width" else (1, 1, h, 1)

    def apply(self, images01: Tensor, params: Tensor) -> Tensor:
        return (images01 + self.config.amplitude * torch.tanh(params)).clamp(0.0, 1.0)
