"""The common interface of every purifier, and the record a purification leaves behind.

A purifier edits a ``Classifier``'s trainable parameters in place (never its frozen constants or
buffers), so that ``converters.save_onnx`` can write the result back into the original graph.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.detect.leads import LeadRequests, Leads
from auditor.errors import AuditorError
from auditor.settings import configured
from auditor.jsonable import jsonable
from auditor.model import Classifier

ProgressFn = Callable[[int, int, str], None]
"""progress(step, total, message): lets the CLI draw a bar; library code never prints."""

DEFAULT_SEED = 0  # used when no generator is given, so that a bare call is still reproducible


@dataclass
class StepRecord:
    """What one step of a recipe did: the lead it read, whether it changed the model, and how."""

    name: str
    found: dict[str, Any] | None = None  # the lead the step read (None: it reads none)
    acted: bool = False  # whether the step changed the model
    changed: dict[str, Any] = field(default_factory=dict)  # what it changed: channels zeroed, epochs trained, ...
    seconds: float = 0.0
    rounds: list[dict[str, Any]] = field(default_factory=list)  # per-round/epoch figures of a training step
    finding: str | None = None  # backdoor evidence, where the step acted on a found trigger (the guard reads it)
    notes: list[str] = field(default_factory=list)

    def zeroed(self) -> dict[str, list[int]]:
        """Layer -> channels the step set to zero (empty for steps that zero none)."""
        return {layer: list(channels) for layer, channels in self.changed.get("zeroed", {}).items()}


@dataclass
class PurifyResult:
    """What one purification run did, JSON-able for the audit report."""

    method: str
    config: dict[str, Any]
    data_source: str = "synthetic"  # "synthetic" (model inversion) or "clean" (real images, for comparison)
    num_samples: int = 0
    rounds: list[dict[str, float]] = field(default_factory=list)  # per-round/epoch figures
    wall_time_s: float = 0.0
    pruned_channels: dict[str, list[int]] = field(default_factory=dict)  # layer -> channels zeroed, by any step
    steps: list[StepRecord] = field(default_factory=list)  # a recipe's steps in order (``auditor.purify.recipe``)
    num_anchors: int = 0  # unlabelled anchor images whose original predictions were kept
    backoffs: list[dict[str, Any]] = field(default_factory=list)  # filled in by the guard
    notes: list[str] = field(default_factory=list)
    # backdoor evidence the purification found by itself (a patch trigger it unlearned, trigger channels it zeroed):
    # the guard gives such a run the accuracy budget of a detected backdoor (GuardConfig.min_prior_agreement_backdoored)
    findings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


class Purifier(ABC):
    """One purification method. Subclasses set ``name`` and ``Config`` (a dataclass of its settings)."""

    name: ClassVar[str]
    Config: ClassVar[type]
    uses_data: ClassVar[bool] = True  # CLP is data-free
    uses_anchors: ClassVar[bool] = False  # whether ``purify``'s anchors reach the method

    def __init__(self, config: Any | None = None, **overrides: Any) -> None:
        self.config = configured(self.Config, config, overrides, "purifier", self.name)
        self.validate()

    def validate(self) -> None:
        """Reject settings that cannot work, with a message saying which (overridden where useful)."""

    def describe(self) -> dict[str, Any]:
        """The settings as the report records them."""
        return dataclasses.asdict(self.config)

    def lead_requests(self) -> LeadRequests:
        """The leads (``auditor.detect.leads``) this purifier acts on; none by default."""
        return LeadRequests()

    def with_leads(self, leads: Leads) -> "Purifier":
        """This purifier acting on ``leads`` found beforehand (purifiers that read none return themselves)."""
        return self

    def for_guard(self, min_prior_agreement: float) -> "Purifier":
        """This purifier under a guard that needs ``min_prior_agreement`` on the prior probe: a purifier that
        prunes by its own agreement rule never prunes below it (the guard cannot undo pruning by interpolation)."""
        return self

    def purify(
        self,
        classifier: Classifier,
        images01: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        progress: ProgressFn | None = None,
        generator: torch.Generator | None = None,
        data_source: str = "synthetic",
        anchors: Tensor | None = None,
    ) -> PurifyResult:
        """Edit ``classifier``'s trainable parameters in place; ``labels`` None means its own predictions.

        ``anchors`` are unlabelled images (for example unconditioned generator samples) on which a
        purifier may keep the original model's predictions, to hold its function in place away from
        the purification samples; purifiers that do not use them ignore them. A data-free purifier
        (``uses_data`` False) ignores the images, labels and generator too."""
        started = time.perf_counter()
        run = (self._begin(classifier, images01, labels, data_source, generator, anchors if self.uses_anchors else None)
               if self.uses_data else None)
        result = self._purify(classifier, run, progress)
        result.wall_time_s = time.perf_counter() - started
        return result

    @abstractmethod
    def _purify(self, classifier: Classifier, run: "RunContext | None", progress: ProgressFn | None) -> PurifyResult:
        """The method itself, on ``run``'s samples and generator (None for a data-free purifier)."""

    @abstractmethod
    def milder(self) -> "Purifier":
        """The same method with a gentler config (fewer rounds, lower rate, ...), for the guard's back-off."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # -- helpers shared by the data-driven purifiers -------------------------------------------------

    def _begin(self, classifier: Classifier, images01: Tensor | None, labels: Tensor | None, data_source: str,
               generator: torch.Generator | None, anchors: Tensor | None = None) -> "RunContext":
        """What every data-driven purifier sets up first: the record, a reproducible generator, the
        trainable parameters, eval mode, and the original model's logits and the training targets."""
        if images01 is None or images01.ndim != 4 or len(images01) == 0:
            shape = None if images01 is None else tuple(images01.shape)
            raise AuditorError(f"{self.name}: need a non-empty NCHW image batch, got {shape}")
        if labels is not None and len(labels) != len(images01):
            raise AuditorError(f"{self.name}: {len(labels)} labels for {len(images01)} images")
        result = PurifyResult(self.name, self.describe(), data_source=data_source, num_samples=int(len(images01)))
        params = check_trainable(classifier, self.name)
        classifier.eval()  # BN statistics stay frozen in every purifier
        images01 = images01.detach().float().cpu()
        original_logits = predict_logits(classifier, images01)
        targets = labels.long().cpu() if labels is not None else original_logits.argmax(1)
        anchor_probs = None
        if anchors is not None and len(anchors):
            anchors = anchors.detach().float().cpu()
            anchor_probs = predict_logits(classifier, anchors).softmax(1)
            result.num_anchors = int(len(anchors))
        else:
            anchors = None
        return RunContext(result, make_generator(generator), params, classifier.device, images01,
                          original_logits, targets, anchors, anchor_probs)


class RunContext(NamedTuple):
    result: PurifyResult
    generator: torch.Generator
    params: list[torch.nn.Parameter]
    device: torch.device
    images01: Tensor  # float, CPU
    original_logits: Tensor  # the unpurified model's logits on images01
    targets: Tensor  # the given labels, else the original model's predictions
    anchors: Tensor | None = None  # unlabelled images whose original predictions are kept (float, CPU)
    anchor_probs: Tensor | None = None  # the unpurified model's softmax on them

    def anchor_kl(self, classifier: Classifier, batch_size: int) -> Tensor | None:
        """KL(original || current) on a random batch of anchors; None without anchors."""
        if self.anchors is None or self.anchor_probs is None:
            return None
        index = torch.randint(len(self.anchors), (min(batch_size, len(self.anchors)),), generator=self.generator)
        logits = classifier(self.anchors[index].to(self.device))
        return F.kl_div(logits.log_softmax(1), self.anchor_probs[index].to(self.device), reduction="batchmean")


class Counter:
    """Progress steps done so far, reported to the caller's progress callback."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.total, self.progress, self.done = total, progress, 0

    def tick(self, message: str) -> None:
        self.done += 1
        if self.progress:
            self.progress(min(self.done, self.total), self.total, message)

    def finish(self, message: str) -> None:
        if self.progress and self.done < self.total:
            self.progress(self.total, self.total, message)


def make_generator(generator: torch.Generator | None) -> torch.Generator:
    """A CPU generator: the caller's, or a fresh one seeded with DEFAULT_SEED."""
    if generator is None:
        generator = torch.Generator().manual_seed(DEFAULT_SEED)
    if generator.device.type != "cpu":
        raise AuditorError("purifiers need a CPU torch.Generator (batches are shuffled on the CPU)")
    return generator


def batches(count: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled index batches drawn from ``generator``, so runs are reproducible."""
    order = torch.randperm(count, generator=generator)
    for start in range(0, count, batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
def predict_logits(classifier: Classifier, images01: Tensor, batch_size: int = 256) -> Tensor:
    """Logits on the CPU for a possibly large batch (model kept in eval mode)."""
    device = classifier.device
    return torch.cat([classifier(images01[i : i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(images01), batch_size)])


def agreement(classifier: Classifier, images01: Tensor, reference_labels: Tensor) -> float:
    """Fraction of images on which ``classifier`` predicts ``reference_labels``."""
    if len(images01) == 0:
        return float("nan")
    return float((predict_logits(classifier, images01).argmax(1) == reference_labels.cpu()).float().mean())


def check_trainable(classifier: Classifier, method: str) -> list[torch.nn.Parameter]:
    params = classifier.trainable_parameters()
    if not params:
        raise AuditorError(f"{method}: the converted model has no trainable parameters to purify")
    return params
