"""Channel zeroing: zero the hidden channels that one-channel stimulation blames for a class.

The lead (``auditor.detect.leads.channel_lead``) is the class that raising one hidden channel
reaches most anomalously on the unpurified model, and each channel's share into it. Where the class
votes (index at least ``index``) and some channels alone send ``min_share`` of the other classes'
samples into it (a per-image trigger's carriers, such as Input-Aware's), up to ``max_channels`` of
them are zeroed, with the BatchNorm that follows, as CLP prunes (docs/purification.md, "The
stimulation step"). The recipe runs it last, after the training steps could re-teach them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from auditor.detect.leads import LeadRequests
from auditor.detect.stimulation import StimulationConfig
from auditor.errors import AuditorError

from .base import StepRecord
from .clp import conv_bn_pairs, zero_channels
from .step import RecipeConfig, Step, StepContext


@dataclass(frozen=True)
class ChannelZeroingConfig:
    index: float = 5.0  # act where the class's voting index on the original model reaches this
    min_share: float = 0.25  # zero channels that alone send this share of the other classes into the class
    max_channels: int = 4  # at most this many channels zeroed
    levels: tuple[float, ...] = StimulationConfig.levels  # the stimulation's level ladder


class ChannelZeroing(Step):
    """Zero the channels one-channel stimulation blamed on the original model."""

    name = "channels"
    Config = ChannelZeroingConfig
    meaning = "zero the hidden channels that alone send most samples into one class (per-image triggers' carriers)"

    def validate(self) -> None:
        c = self.config
        if c.max_channels < 1 or not c.levels or min(c.levels) <= 0 or not 0 < c.min_share <= 1:
            raise AuditorError("channels: max_channels must be >= 1, levels positive and min_share in (0, 1]")

    def lead_requests(self, training: RecipeConfig) -> LeadRequests:
        return LeadRequests(channels=tuple(self.config.levels))

    def run(self, context: StepContext) -> StepRecord:
        c, lead = self.config, context.leads.channels
        if lead is None:
            raise AuditorError("channels: no channel lead was found for this purification (LeadRequests.channels)")
        started = time.perf_counter()
        ranked = lead.ranked(c.max_channels, c.min_share)
        found = dict(lead.to_json(), channels=ranked, shares=[round(lead.shares[ch], 4) for ch in ranked])
        # the index alone is not enough: where no channel reaches the stop share, a few percent over a median of
        # zero is a large index (clean_b, audit samples: 4.4 from a share of 0.09)
        blamed = lead.voting_index >= c.index and bool(ranked)
        record = StepRecord(self.name, found=found)
        if blamed:
            for name, conv, bn in conv_bn_pairs(context.classifier.network):
                if name == lead.layer:
                    zero_channels(conv, bn, ranked)
                    record.acted = True
        if record.acted:
            record.changed = {"zeroed": {lead.layer: ranked}}
            record.finding = f"trigger channels: stimulation blamed channel(s) {ranked} for class {lead.target}"
            record.notes.append(f"stimulation step: class {lead.target} (index {lead.index:.2f}); zeroed channel(s) "
                                f"{ranked} of {lead.layer}")
        else:
            record.notes.append(f"stimulation step: class {lead.target} votes at index {lead.voting_index:.2f} (acts at "
                                f">= {c.index:g}, with a channel sending >= {c.min_share:g}): nothing zeroed")
        record.seconds = round(time.perf_counter() - started, 2)
        return record
