"""Plain fine-tuning on the purification samples: the baseline every defence is compared with.

Fine-tuning on clean-looking data alone often leaves the backdoor in place (the trigger features
are never exercised), which is exactly why it is worth reporting next to I-BAU.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from auditor.errors import AuditorError
from auditor.model import Classifier

from .base import ProgressFn, PurifyResult, Purifier, RunContext, agreement, batches
from .step import PurifierStep


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 5  # passes over the samples; same budget as I-BAU's 5 rounds
    batch_size: int = 100  # as I-BAU
    lr: float = 0.01  # SGD rate, the usual fine-tuning baseline setting (BackdoorBench "ft": 0.01)
    momentum: float = 0.9  # SGD momentum, usual baseline setting
    weight_decay: float = 5e-4  # usual baseline setting


class Finetune(Purifier):
    """SGD on cross-entropy against the given labels (or the model's own predictions)."""

    name = "finetune"
    Config = FinetuneConfig

    def validate(self) -> None:
        c = self.config
        if c.epochs < 1 or c.batch_size < 1 or c.lr <= 0:
            raise AuditorError("finetune: epochs and batch_size must be >= 1 and lr > 0")

    def milder(self) -> "Finetune":
        """Half the epochs (at least one) and a tenth of the learning rate."""
        c = self.config
        return Finetune(dataclasses.replace(c, epochs=max(1, math.ceil(c.epochs / 2)), lr=c.lr / 10))

    def _purify(self, classifier: Classifier, run: RunContext | None, progress: ProgressFn | None) -> PurifyResult:
        c = self.config
        result, generator, params, device, images01 = run[:5]
        original_labels, targets = run.original_logits.argmax(1), run.targets
        optimizer = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        num_batches = math.ceil(len(images01) / c.batch_size)
        step = 0
        for epoch in range(c.epochs):
            losses = []
            for index in batches(len(images01), c.batch_size, generator):
                loss = F.cross_entropy(classifier(images01[index].to(device)), targets[index].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                step += 1
                if progress:
                    progress(step, c.epochs * num_batches, f"finetune epoch {epoch + 1}/{c.epochs}")
            result.rounds.append({
                "round": epoch + 1,
                "loss": sum(losses) / len(losses),
                "train_agreement": agreement(classifier, images01, original_labels),
            })
        classifier.zero_grad(set_to_none=True)
        return result


class FinetuneStep(PurifierStep):
    """Fine-tuning as a step of a recipe, with its own SGD optimizer and settings."""

    name = "finetune"
    Config = FinetuneConfig
    purifier = Finetune
    meaning = "fine-tune on the samples' labels (the baseline; no keepers, its own SGD)"
    trains = True
