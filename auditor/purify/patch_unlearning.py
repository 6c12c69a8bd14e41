"""Patch unlearning: teach the model to ignore the small patch that flips most samples into several classes.

The lead (``auditor.detect.leads.patch_lead``) is the small patch that flips the most purification
samples away from the model's own predictions. Where it flips at least ``min_flip`` of them and no
class takes ``max_target_share`` of the flips (a patch trigger without one target, such as
all-to-all, which the targeted I-BAU rounds cannot see), the stamped samples are trained to keep
their labels, with the recipe's accuracy keepers (docs/purification.md, "The patch step").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from auditor.detect.leads import LeadRequests, PatchSearchSettings
from auditor.errors import AuditorError
from auditor.universal import stamp

from .base import StepRecord
from .step import RecipeConfig, Step, StepContext


@dataclass(frozen=True)
class PatchUnlearningConfig:
    pixels: int = 16  # size in pixels of the patch searched
    min_flip: float = 0.5  # unlearn the patch only if it flips at least this share of the samples
    max_target_share: float = 0.5  # ... and no class receives this share of its flips
    search_steps: int = 300  # Adam steps of the search
    grid_start: bool = True  # start the search at the grid's best solid square
    l1: float = 0.05  # L1 weight on the soft mask during the search
    epochs: int = 2  # passes over the stamped samples when unlearning


class PatchUnlearning(Step):
    """Unlearn a found patch that flips most samples into several classes."""

    name = "patch"
    Config = PatchUnlearningConfig
    meaning = "unlearn a small patch that flips most samples into several classes (all-to-all patch triggers)"
    trains = True

    def validate(self) -> None:
        c = self.config
        if (c.pixels < 1 or c.search_steps < 1 or c.epochs < 1 or not 0 <= c.min_flip <= 1 or c.l1 < 0
                or not 0 < c.max_target_share <= 1):
            raise AuditorError("patch: pixels, search_steps and epochs must be >= 1, min_flip in [0, 1], "
                               "max_target_share in (0, 1] and l1 >= 0")

    def lead_requests(self, training: RecipeConfig) -> LeadRequests:
        c = self.config
        return LeadRequests(patch=PatchSearchSettings(c.pixels, c.search_steps, c.l1, training.batch_size,
                                                      c.grid_start))

    def planned(self, num_batches: int, num_classes: int) -> int:
        return self.config.epochs * num_batches

    def run(self, context: StepContext) -> StepRecord:
        c, lead = self.config, context.leads.patch
        if lead is None:
            raise AuditorError("patch: no patch lead was found for this purification (LeadRequests.patch)")
        started = time.perf_counter()
        found = lead.to_json()
        acted = lead.flip_rate >= c.min_flip and lead.largest_share < c.max_target_share
        record = StepRecord(self.name, found=found, acted=acted)
        if acted:
            search = lead.search
            context.unlearn_stamped(lambda x: stamp(x, search.mask, search.pattern), c.epochs, "patch unlearning")
            after = context.classifier.predict(stamp(context.run.images01, search.mask.cpu(), search.pattern.cpu()))
            record.changed = {"epochs": c.epochs, "flip_rate_after": round(float((after != search.own).float().mean()), 4)}
            record.finding = (f"patch trigger: a {c.pixels}-pixel patch flips {lead.flip_rate:.2f} of the samples "
                              "into several classes")
            record.notes.append(f"patch step: a {c.pixels}-pixel patch flipped {lead.flip_rate:.2f} of the samples "
                                f"(>= {c.min_flip}) into several classes; unlearned for {c.epochs} epoch(s)")
        else:
            record.notes.append(f"patch step: the best {c.pixels}-pixel patch flips {lead.flip_rate:.2f} of the samples, "
                                f"{lead.largest_share:.2f} of the flips into one class (acts where it flips >= "
                                f"{c.min_flip:g} and no class takes >= {c.max_target_share:g}): nothing unlearned")
        record.seconds = round(time.perf_counter() - started, 2)
        return record
