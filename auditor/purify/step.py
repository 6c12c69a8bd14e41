"""One step of a purification recipe (``auditor.purify.recipe``), and what every step shares.

A step edits the model in place and returns a ``StepRecord``. It reads what the detection found as
typed leads (``auditor.detect.leads``) and never runs a detector itself, so that every attempt of
the guard's back-off acts on the same evidence, found once on the unpurified model.

Training steps (patch and signal unlearning, the I-BAU rounds) share one Adam optimizer and the
accuracy keepers of ``RecipeConfig``: momentum carries over from one step to the next, as in one
training run. Adding a step: subclass ``Step`` in a new module, register it in ``STEPS``
(``auditor.purify.recipe``) and, if it belongs in the default, add its name to ``DEFAULT_STEPS``.
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.detect.leads import LeadRequests, Leads
from auditor.settings import configured
from auditor.model import Classifier

from .base import Counter, Purifier, PurifyResult, RunContext, StepRecord, batches
from .guard import restore


@dataclass(frozen=True)
class RecipeConfig:
    # The measurements behind each default are in docs/purification.md.
    steps: tuple[str, ...] = ("patch", "signal", "ibau", "clp", "anp", "channels")  # run in this order
    lr: float = 3e-4  # Adam learning rate of the training steps, one optimizer for all (I-BAU reference: 1e-3)
    batch_size: int = 100  # samples per batch of the training steps (I-BAU reference: 100)
    clean_weight: float = 1.0  # keeper: cross-entropy on unperturbed samples (I-BAU reference: 0)
    kl_weight: float = 1.0  # keeper: KL to the original model's predictions on unperturbed samples (reference: 0)
    anchor_weight: float = 1.0  # keeper: KL to the original model on unlabelled anchor images (generator prior samples)


@dataclass
class StepContext:
    """What a step works with: the model, the samples and the original model's figures on them, the leads,
    the shared training settings and optimizer, and the progress counter."""

    classifier: Classifier
    run: RunContext
    training: RecipeConfig
    leads: Leads
    counter: Counter
    original_state: dict[str, Tensor]  # the model's parameters and buffers before the first step
    _optimizer: torch.optim.Optimizer | None = None

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The training steps' one Adam optimizer, made on first use."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.run.params, lr=self.training.lr)
        return self._optimizer

    @property
    def num_classes(self) -> int:
        return int(self.run.original_logits.shape[1])

    @property
    def original_probs(self) -> Tensor:
        return self.run.original_logits.softmax(1)

    def frozen_original(self) -> Classifier:
        """An untouched copy of the model as it was before the first step (no gradients)."""
        frozen = copy.deepcopy(self.classifier)
        restore(frozen, self.original_state)
        frozen.eval()
        for param in frozen.parameters():
            param.requires_grad_(False)
        return frozen

    def with_keepers(self, loss: Tensor, x: Tensor, y: Tensor, original_probs: Tensor) -> Tensor:
        """``loss`` plus the accuracy keepers on unperturbed samples: CE to the labels and KL to the original."""
        t = self.training
        if t.clean_weight or t.kl_weight:
            clean_logits = self.classifier(x)
            if t.clean_weight:
                loss = loss + t.clean_weight * F.cross_entropy(clean_logits, y)
            if t.kl_weight:
                loss = loss + t.kl_weight * F.kl_div(clean_logits.log_softmax(1), original_probs, reduction="batchmean")
        return loss

    def anchor_term(self) -> Tensor | None:
        """The anchors' keeper on a random batch of them (None without anchors or with weight 0)."""
        if not self.training.anchor_weight:
            return None
        anchor_kl = self.run.anchor_kl(self.classifier, self.training.batch_size)
        return None if anchor_kl is None else self.training.anchor_weight * anchor_kl

    def unlearn_stamped(self, stamped: Callable[[Tensor], Tensor], epochs: int, label: str) -> None:
        """Teach the model that ``stamped(x)`` (a found trigger applied to a batch) is still its class: the
        stamped samples keep their labels, with the same accuracy keepers as the I-BAU rounds (clean CE, KL
        to the original, anchors)."""
        run, optimizer, original_probs = self.run, self.optimizer, self.original_probs
        for epoch in range(epochs):
            for index in batches(len(run.images01), self.training.batch_size, run.generator):
                x, y = run.images01[index].to(run.device), run.targets[index].to(run.device)
                loss = self.with_keepers(F.cross_entropy(self.classifier(stamped(x)), y), x, y,
                                         original_probs[index].to(run.device))
                anchor = self.anchor_term()
                if anchor is not None:
                    loss = loss + anchor
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.counter.tick(f"{label}, epoch {epoch + 1}/{epochs}")
        self.classifier.zero_grad(set_to_none=True)


class Step(ABC):
    """One purification step. Subclasses set ``name``, ``Config`` (a frozen dataclass) and ``meaning``."""

    name: ClassVar[str]
    Config: ClassVar[type]
    meaning: ClassVar[str]  # one line for the docs and ``auditor purify --help``
    trains: ClassVar[bool] = False  # its per-round figures go into ``PurifyResult.rounds``

    def __init__(self, config: Any | None = None, **overrides: Any) -> None:
        self.config = configured(self.Config, config, overrides, "purification step", self.name)
        self.validate()

    def validate(self) -> None:
        """Reject settings that cannot work, with a message saying which."""

    def lead_requests(self, training: RecipeConfig) -> LeadRequests:
        """The leads this step reads; none by default."""
        return LeadRequests()

    def planned(self, num_batches: int, num_classes: int) -> int:
        """Progress ticks the step expects, for the progress bar's total."""
        return 0

    @abstractmethod
    def run(self, context: StepContext) -> StepRecord:
        """Edit ``context.classifier`` in place and say what was done."""

    def milder(self) -> "Step | None":
        """The gentler step for the guard's back-off; None leaves the step out of the milder recipe."""
        return self

    def for_guard(self, min_prior_agreement: float) -> "Step":
        """This step under a guard that needs ``min_prior_agreement`` on the prior probe (``Purifier.for_guard``)."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


class PurifierStep(Step):
    """A whole purifier (CLP, fine-tuning) run as one step, on the recipe's samples and generator."""

    purifier: ClassVar[type[Purifier]]

    def validate(self) -> None:
        self.purifier(self.config)  # the purifier's own checks

    def run(self, context: StepContext) -> StepRecord:
        started = time.perf_counter()
        run = context.run
        result: PurifyResult = self.purifier(self.config).purify(
            context.classifier, run.images01, run.targets, generator=run.generator)
        zeroed = {layer: list(channels) for layer, channels in result.pruned_channels.items()}
        changed: dict[str, Any] = {"zeroed": zeroed} if zeroed else {}
        if result.rounds and self.purifier.uses_data:
            changed["epochs"] = len(result.rounds)
        return StepRecord(self.name, acted=bool(zeroed) or self.trains,
                          changed=changed, seconds=round(time.perf_counter() - started, 2), rounds=result.rounds,
                          notes=list(result.notes))

    def milder(self) -> "Step | None":
        return type(self)(self.purifier(self.config).milder().config)
