"""Signal unlearning: teach the model to ignore a sinusoid that sends the other classes into one class.

The lead (``auditor.detect.leads.signal_lead``) is the class that one sinusoid of sine reach's fixed
bank reaches most. Where that class votes (index at least ``index``: SIG's trigger, beyond the I-BAU
rounds' radius), samples with sinusoids near the found one added keep their labels, with the
recipe's accuracy keepers (docs/purification.md, "The signal step").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from auditor.detect.leads import LeadRequests
from auditor.errors import AuditorError

from .base import StepRecord
from .step import RecipeConfig, Step, StepContext


@dataclass(frozen=True)
class SignalUnlearningConfig:
    index: float = 2.0  # act where the sine-bank class's voting index reaches this
    epochs: int = 2  # passes over the samples with the signal added, when unlearning


class SignalUnlearning(Step):
    """Unlearn the family of a sinusoid whose class votes."""

    name = "signal"
    Config = SignalUnlearningConfig
    meaning = "unlearn a sinusoid that sends the other classes' samples into one class (SIG-like triggers)"
    trains = True

    def validate(self) -> None:
        if self.config.epochs < 1:
            raise AuditorError("signal: epochs must be >= 1")

    def lead_requests(self, training: RecipeConfig) -> LeadRequests:
        return LeadRequests(signal=True)

    def planned(self, num_batches: int, num_classes: int) -> int:
        return self.config.epochs * num_batches

    def run(self, context: StepContext) -> StepRecord:
        c, lead = self.config, context.leads.signal
        if lead is None:
            raise AuditorError("signal: no signal lead was found for this purification (LeadRequests.signal)")
        started = time.perf_counter()
        acted = lead.voting_index >= c.index and lead.periods is not None
        record = StepRecord(self.name, found=lead.to_json(), acted=acted)
        if acted:
            draw = torch.Generator().manual_seed(context.run.generator.initial_seed() + 3)  # its own draws

            def with_signal(x: Tensor) -> Tensor:
                return (x + sinusoids(x.shape, lead.axis, lead.periods, lead.amplitude, draw).to(x.device)).clamp(0.0, 1.0)

            context.unlearn_stamped(with_signal, c.epochs, "signal unlearning")
            record.changed = {"epochs": c.epochs}
            record.finding = (f"signal trigger: a sinusoid of {lead.periods} period(s) along the {lead.axis} sends "
                              f"{lead.share:.2f} of the other classes' samples into class {lead.target}")
            record.notes.append(f"signal step: class {lead.target} (sine share {lead.share:.2f}, index "
                                f"{lead.index:.2f}); unlearned for {c.epochs} epoch(s)")
        else:
            record.notes.append(f"signal step: the sine bank's top class {lead.target} votes at index "
                                f"{lead.voting_index:.2f} (acts at >= {c.index:g}): nothing unlearned")
        record.seconds = round(time.perf_counter() - started, 2)
        return record


def sinusoids(shape: torch.Size, axis: str, periods: int, amplitude: float, draw: torch.Generator) -> Tensor:
    """One sinusoid per image of ``shape`` (N, C, H, W) along ``axis``: ``periods`` +-1 whole periods across the
    image (at least one), a random phase, 0.5-1.5x ``amplitude``, the same in every channel. A backdoor keyed to a
    sinusoid answers its neighbours too (SIG, trained at 6 periods, answered 6-7), so the family is unlearned."""
    n, _, height, width = shape
    side = width if axis == "width" else height
    count = (periods + torch.randint(-1, 2, (n, 1), generator=draw)).clamp_min(1).float()
    phase = torch.rand(n, 1, generator=draw) * 2 * math.pi
    scale = amplitude * (0.5 + torch.rand(n, 1, generator=draw))
    waves = scale * torch.sin(2 * math.pi * count * torch.arange(side).float() / side + phase)  # (n, side)
    return waves.view(n, 1, 1, side) if axis == "width" else waves.view(n, 1, side, 1)
