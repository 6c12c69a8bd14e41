"""A purification recipe: steps run in order on one model, as one purifier behind the guard.

    recipe = Recipe()                                        # the default: DEFAULT_STEPS
    recipe = Recipe(steps=("ibau", "clp"), rounds=5)          # I-BAU then CLP, five rounds
    recipe = Recipe(**{"steps": "patch,ibau", "patch.epochs": 1, "lr": 1e-3})

On the command line: ``auditor audit --recipe patch,ibau,clp --purifier-option ibau.rounds=5``.
An option names the recipe's shared setting (``RecipeConfig``: lr, batch_size and the keepers), a
step's setting as ``STEP.FIELD``, or a bare ``FIELD`` that exactly one chosen step has.

The leads the steps read (``auditor.detect.leads``) are found once, on the unpurified model, before
the first attempt (``with_leads``); a recipe called without them finds them itself on the samples it
is given. The guard's back-off runs ``milder()``: a third of the learning rate, each step's milder
self, and the steps that have none (neuron pruning) left out.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from auditor.detect.leads import LeadRequests, Leads, find_leads
from auditor.errors import AuditorError
from auditor.model import Classifier

from .anp import AnchoredANP
from .base import Counter, ProgressFn, PurifyResult, Purifier, RunContext
from .channel_zeroing import ChannelZeroing
from .clp import CLPStep
from .finetune import FinetuneStep
from .guard import snapshot
from .ibau import IBAU
from .patch_unlearning import PatchUnlearning
from .signal_unlearning import SignalUnlearning
from .step import RecipeConfig, Step, StepContext

STEPS: dict[str, type[Step]] = {cls.name: cls for cls in (PatchUnlearning, SignalUnlearning, IBAU, CLPStep, AnchoredANP,
                                                          ChannelZeroing, FinetuneStep)}
DEFAULT_STEPS: tuple[str, ...] = RecipeConfig.steps


def list_steps() -> list[str]:
    return sorted(STEPS)


def parse_steps(steps: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Step names from ``"patch,ibau,clp"`` or a sequence; unknown or repeated names are an error."""
    names = tuple(s.strip() for s in (steps.split(",") if isinstance(steps, str) else steps) if s.strip())
    if not names:
        raise AuditorError(f"a recipe needs at least one step; known: {', '.join(list_steps())}")
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise AuditorError(f"unknown purification step(s) {', '.join(map(repr, unknown))}; known: "
                           f"{', '.join(list_steps())}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AuditorError(f"a recipe runs each step once; repeated: {', '.join(repeated)}")
    return names


class Recipe(Purifier):
    """Run the chosen steps in order, with one shared optimizer and one progress bar."""

    name = "recipe"
    Config = RecipeConfig
    uses_anchors = True

    def __init__(self, config: RecipeConfig | None = None, *, leads: Leads | None = None,
                 steps_given: list[Step] | None = None, **options: Any) -> None:
        config = config if config is not None else RecipeConfig()
        shared = {f.name for f in dataclasses.fields(RecipeConfig)}
        config = dataclasses.replace(config, **{k: v for k, v in options.items() if k in shared})
        config = dataclasses.replace(config, steps=parse_steps(config.steps))
        self.config = config
        self.leads = leads
        if steps_given is not None:
            self.steps = steps_given
        else:
            per_step = _options_per_step(config.steps, {k: v for k, v in options.items() if k not in shared})
            self.steps = [STEPS[name](**per_step.get(name, {})) for name in config.steps]
        self.validate()

    def validate(self) -> None:
        c = self.config
        if c.lr <= 0 or c.batch_size < 1:
            raise AuditorError("recipe: lr must be > 0 and batch_size >= 1")
        if min(c.clean_weight, c.kl_weight, c.anchor_weight) < 0:
            raise AuditorError("recipe: clean_weight, kl_weight and anchor_weight must be >= 0")

    def describe(self) -> dict[str, Any]:
        """The shared settings, and each step's own under its name."""
        return {**dataclasses.asdict(self.config), "settings": {s.name: dataclasses.asdict(s.config) for s in self.steps}}

    def lead_requests(self) -> LeadRequests:
        merged = LeadRequests()
        for step in self.steps:
            asked = step.lead_requests(self.config)
            merged = LeadRequests(patch=asked.patch or merged.patch, signal=asked.signal or merged.signal,
                                  channels=asked.channels or merged.channels)
        return merged

    def with_leads(self, leads: Leads) -> "Recipe":
        return self._copy(self.config, self.steps, leads)

    def for_guard(self, min_prior_agreement: float) -> "Recipe":
        return self._copy(self.config, [s.for_guard(min_prior_agreement) for s in self.steps], self.leads)

    def milder(self) -> "Recipe":
        """A third of the learning rate; each step's milder self; steps without one are left out."""
        steps = [m for m in (s.milder() for s in self.steps) if m is not None]
        if not steps:
            steps = list(self.steps)
        config = dataclasses.replace(self.config, lr=self.config.lr / 3, steps=tuple(s.name for s in steps))
        return self._copy(config, steps, self.leads)

    def _copy(self, config: RecipeConfig, steps: list[Step], leads: Leads | None) -> "Recipe":
        return Recipe(config, leads=leads, steps_given=list(steps))

    def _purify(self, classifier: Classifier, run: RunContext | None, progress: ProgressFn | None) -> PurifyResult:
        original_state = snapshot(classifier)  # before any step; _begin changes no weight
        leads = self.leads
        if leads is None:
            leads = find_leads(classifier, run.images01, run.targets, self.lead_requests(), run.generator.initial_seed())
        num_batches = math.ceil(len(run.images01) / self.config.batch_size)
        num_classes = int(run.original_logits.shape[1])
        counter = Counter(sum(s.planned(num_batches, num_classes) for s in self.steps), progress)
        context = StepContext(classifier, run, self.config, leads, counter, original_state)
        result = run.result
        for step in self.steps:
            record = step.run(context)
            result.steps.append(record)
            result.notes.extend(record.notes)
            if record.finding:
                result.findings.append(record.finding)
            if step.trains:
                result.rounds.extend(record.rounds)
            for layer, channels in record.zeroed().items():
                result.pruned_channels[layer] = sorted(set(result.pruned_channels.get(layer, [])) | set(channels))
        classifier.zero_grad(set_to_none=True)
        counter.finish("purification done")  # targeted rounds skip the target's own samples: fewer steps than planned
        return result


def _options_per_step(steps: tuple[str, ...], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Options by step: ``STEP.FIELD`` goes to STEP, a bare ``FIELD`` to the one chosen step that has it."""
    per_step: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        if "." in key:
            name, field = key.split(".", 1)
            if name not in steps:
                raise AuditorError(f"option {key!r}: step {name!r} is not in the recipe ({', '.join(steps)})")
        else:
            owners = [n for n in steps if key in {f.name for f in dataclasses.fields(STEPS[n].Config)}]
            if len(owners) != 1:
                shared = ", ".join(f.name for f in dataclasses.fields(RecipeConfig))
                where = (f"several steps have it ({', '.join(owners)}): write STEP.{key}" if owners else
                         f"no step of the recipe ({', '.join(steps)}) has it; shared settings: {shared}")
                raise AuditorError(f"option {key!r}: {where}")
            name, field = owners[0], key
        per_step.setdefault(name, {})[field] = value
    return per_step
