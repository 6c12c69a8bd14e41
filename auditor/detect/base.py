"""The common interface of every backdoor detector, and the figures a detection leaves behind.

A detector looks at the suspect model and synthetic (SMI) samples only: never at real data. It
returns one figure per class and an anomaly index per class; ``auditor.detect.verdict`` turns the
indices of all detectors into one verdict.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import Tensor, nn

from auditor.errors import AuditorError
from auditor.settings import configured
from auditor.jsonable import jsonable
from auditor.model import Classifier

ProgressFn = Callable[[int, int, str], None]

MAD_CONSISTENCY = 1.4826  # makes the MAD a consistent estimator of the standard deviation for normal data


def anomaly_index(values: Tensor, side: str = "low", floor: float = 1e-6) -> Tensor:
    """Neural Cleanse's anomaly index, signed so that positive means "anomalous on ``side``":
    ``(median - v) / (1.4826 * MAD)`` for ``side="low"``, the negative for ``"high"``.

    The MAD is floored (relative to the median) so that a set of near-identical values does not
    turn rounding noise into a huge index."""
    values = values.double()
    median = values.median()
    mad = (values - median).abs().median()
    scale = MAD_CONSISTENCY * torch.clamp(mad, min=max(floor, 1e-3 * float(median.abs())))
    index = (median - values) / scale if side == "low" else (values - median) / scale
    return index.float()


@dataclass
class DetectionResult:
    """What one detector found; ``per_class`` and ``index`` are indexed by class."""

    detector: str
    config: dict[str, Any]
    per_class: list[dict[str, Any]]  # the detector's own figures for each class
    index: list[float]  # anomaly index per class (positive = anomalous in the suspicious direction)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    images: dict[str, Tensor] = field(default_factory=dict)  # e.g. reversed masks/patterns, not in the JSON
    notes: list[str] = field(default_factory=list)
    # False, for the whole result or per class, where the detector saw no effect strong enough for its index to
    # mean anything (stimulation: no channel moved half the other classes' samples into the class within its
    # ladder); the verdict ignores those indices
    conclusive: bool | list[bool] = True

    def conclusive_for(self, t: int) -> bool:
        """Whether class ``t``'s index may vote."""
        return self.conclusive[t] if isinstance(self.conclusive, list) else self.conclusive

    def voting_index(self) -> list[float]:
        """The index where it is conclusive and 0 elsewhere: what the verdict reads."""
        return [value if self.conclusive_for(t) else 0.0 for t, value in enumerate(self.index)]

    def top(self) -> tuple[int, float]:
        """(class, index) of the most anomalous class."""
        best = max(range(len(self.index)), key=lambda k: (self.index[k], -k))
        return best, self.index[best]

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("images", "seconds")}
        return jsonable(data, digits=5)


class Detector(ABC):
    """One detection method. Subclasses set ``name`` and ``Config`` (a dataclass of its settings)."""

    name: ClassVar[str]
    Config: ClassVar[type]
    # What the verdict and the report's columns say about the detector: declared here, once, and read
    # from the registry (``auditor.detect.DETECTORS``) by each of them.
    #: what a high index means, for the report ("small trigger", "attracts flips", ...)
    meaning: ClassVar[str] = ""
    #: short name for the report's column headings (the registry name if empty)
    label: ClassVar[str] = ""
    #: the per-class figure (a key of ``per_class``) the report shows beside the index; None: none
    figure: ClassVar[str | None] = None
    #: a flagged class's reason in the verdict: "class 3: <signal> is an outlier"
    signal: ClassVar[str] = ""
    #: whether the index votes in the default verdict (``VerdictConfig.voters``)
    votes: ClassVar[bool] = False
    #: what the index is divided by before it votes (1: a MAD-scaled index, as reach's)
    vote_scale: ClassVar[float] = 1.0
    #: whether it reads the samples (max margin optimizes inputs from scratch and does not)
    uses_samples: ClassVar[bool] = True

    def __init__(self, config: Any | None = None, **overrides: Any) -> None:
        self.config = configured(self.Config, config, overrides, "detector", self.name)

    def detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, *, seed: int = 0,
               progress: ProgressFn | None = None) -> DetectionResult:
        """Figures per class from ``classifier`` and synthetic samples ``images01`` of classes ``labels``, with
        the detector's wall time."""
        if self.uses_samples:
            check_samples(classifier, images01, labels, self.name)
        started = time.perf_counter()
        result = self._detect(classifier, images01, labels, seed, progress)
        result.seconds = round(time.perf_counter() - started, 3)
        return result

    @abstractmethod
    def _detect(self, classifier: Classifier, images01: Tensor, labels: Tensor, seed: int,
                progress: ProgressFn | None) -> DetectionResult:
        """The detector itself, on samples ``detect`` has checked."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def check_samples(classifier: Classifier, images01: Tensor, labels: Tensor, name: str) -> None:
    if images01.ndim != 4 or len(images01) == 0:
        raise AuditorError(f"{name}: need a non-empty NCHW image batch, got shape {tuple(images01.shape)}")
    if len(labels) != len(images01):
        raise AuditorError(f"{name}: {len(labels)} labels for {len(images01)} images")
    if classifier.num_classes < 3:
        raise AuditorError(f"{name}: needs at least 3 classes for an outlier test, the model has {classifier.num_classes}")


@contextmanager
def frozen_eval(classifier: Classifier) -> Iterator[None]:
    """Eval mode and no weight gradients while a detector optimizes only its own inputs; both
    restored afterwards, so detection never changes how the caller left the model."""
    was_training = classifier.training
    requires = [p.requires_grad for p in classifier.parameters()]
    classifier.eval()
    try:
        for p in classifier.parameters():
            p.requires_grad_(False)
        yield
    finally:
        classifier.train(was_training)
        for p, flag in zip(classifier.parameters(), requires):
            p.requires_grad_(flag)


def balanced_pick(labels: Tensor, num_classes: int, per_class: int, generator: torch.Generator) -> Tensor:
    """Indices of at most ``per_class`` samples of each class, in a seeded order."""
    picked = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c)[:, 0]
        idx = idx[torch.randperm(len(idx), generator=generator)][:per_class]
        picked.append(idx)
    return torch.cat(picked).sort().values


def conv_at_depth(classifier: Classifier, depth: float, name: str) -> tuple[str, nn.Conv2d]:
    """(name in ``classifier.network``, module) of the convolution at relative ``depth`` (0 first, 1 last)
    among the model's convolutions, where the hidden-layer detectors act."""
    convs = [(path, m) for path, m in classifier.network.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise AuditorError(f"{name}: the model has no convolution to act on")
    return convs[round(depth * (len(convs) - 1))]

