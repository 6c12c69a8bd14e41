"""I-BAU: Implicit Backdoor Adversarial Unlearning (Zeng et al., ICLR 2022), our own implementation.

Each round solves a minimax problem on the (synthetic or clean) samples:
  inner: a universal perturbation delta (what a trigger is: one pattern that flips many inputs).
         Default ("targeted"): one delta per class sending the other classes into it; the most
         reachable class's delta is unlearned (on SMI samples the reference's single delta against
         the model's own predictions found class boundaries, never the trigger; docs/purification.md).
         "untargeted": the reference's delta maximising the loss against the model's own predictions;
  outer: weights that classify x + delta correctly again. The weight gradient includes the
         implicit hypergradient through the inner solution, from K fixed-point iterations of the map
         delta -> delta - alpha * d(inner loss)/d(delta).
Before the rounds, a patch step: the small patch (16 pixels) that flips the most samples away from
their labels is searched; where it flips at least half of them into several classes (a patch trigger
without one target, such as all-to-all, which the targeted rounds cannot see), the model is taught to
ignore it. Then a signal step: where one sinusoid of sine reach's fixed bank sends the other classes'
samples into a class that votes (SIG's trigger, beyond the rounds' radius), the model is taught to
ignore that sinusoid's family. After the rounds, CLP and ANP prune, and the hidden channels that
one-channel stimulation blamed on the original model (a per-image trigger's carriers) are zeroed.
The model stays in eval mode throughout so that BN statistics (buffers) are never updated.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.detect.stimulation import ChannelStimulation, StimulationConfig
from auditor.detect.trigger_family import SineReach
from auditor.errors import AuditorError
from auditor.model import Classifier
from auditor.universal import grid_patch, perturb, project_l2, stamp, targeted_universal, untargeted_patch

from .anp import ANPConfig, learn_masks
from .base import ProgressFn, PurifyResult, Purifier, RunContext, agreement, batches
from .clp import CLP, CLPConfig, conv_bn_pairs, zero_channels
from .guard import restore, snapshot
from .neurons import masked_conv_layers, prune_lowest


@dataclass(frozen=True)
class IBAUConfig:
    # The measurements behind each default are in docs/purification.md, one section per step.
    rounds: int = 3  # unlearning rounds (reference: 5)
    batch_size: int = 100  # samples per batch (reference: 100)
    lr: float = 3e-4  # outer Adam learning rate (reference script: 1e-3)
    inner_lr: float = 0.5  # step length of the universal perturbation's inner updates (reference: 10, plain SGD)
    inner_reg: float = 1e-3  # weight of ||delta||^2 in the inner loss (reference: 0.001)
    fixed_point_iters: int = 5  # K, iterations of the implicit hypergradient's fixed-point solve (reference: 5)
    fixed_point_step: float = 0.1  # alpha of the fixed-point map (reference: 0.1)
    delta_max_norm: float | None = 2.0  # L2 radius of delta in [0, 1] image space; None: unbounded (reference script)
    clean_weight: float = 1.0  # weight of cross-entropy on unperturbed samples in the outer loss (reference: 0)
    kl_weight: float = 1.0  # weight of KL to the original model's predictions on unperturbed samples (reference: 0)
    clamp_inputs: bool = True  # clip x + delta to [0, 1]
    implicit: bool = True  # include the implicit hypergradient term; False: plain adversarial fine-tuning
    inner_epochs: int = 1  # untargeted mode: passes over the samples to fit delta, per round (reference: 1)
    anchor_weight: float = 1.0  # weight of KL to the original model on unlabelled anchor images (generator prior samples)
    inner_mode: str = "targeted"  # "targeted": one delta per class; "untargeted": the reference's one delta; "both"
    targeted_steps: int = 20  # targeted mode: inner steps per class, one batch each
    top_k: int = 1  # targeted mode: the most reachable classes unlearned per round
    inner_normalized: bool = True  # untargeted mode: step delta along the unit-norm gradient (targeted always does)
    shared_adv_weight: float = 0.0  # weight of the shared-adversarial term (after SAU, Wei et al., NeurIPS 2023); 0: off
    shared_adv_eps: float = 0.2  # L-inf radius of SAU's per-sample perturbation in [0, 1] image space
    shared_adv_steps: int = 5  # PGD steps of SAU's per-sample perturbation
    clp_u: float | None = 3.0  # after unlearning, prune with data-free CLP at this threshold; None: no pruning
    anp_fraction: float | None = 0.03  # last, prune up to this share of neurons with ANP on the samples; None: off
    anp_iterations: int = 300  # ANP mask updates (reference: 2,000 on real data)
    anp_min_anchor_agreement: float = 0.75  # keep an ANP share only if the anchors agree this much with the original
    patch_pixels: int | None = 16  # patch step: size in pixels of the patch searched before the rounds; None: skip
    patch_min_flip: float = 0.5  # patch step: unlearn the patch only if it flips at least this share of the samples
    patch_max_target_share: float = 0.5  # patch step: ... and no class receives this share of its flips
    patch_steps: int = 300  # patch step: Adam steps of the search
    patch_grid_start: bool = True  # patch step: start the search at the grid's best solid square
    patch_l1: float = 0.05  # patch step: L1 weight on the soft mask during the search
    patch_epochs: int = 2  # patch step: passes over the stamped samples when unlearning
    signal_index: float | None = 2.0  # signal step: act where a sine-bank class reaches this anomaly index; None: skip
    signal_epochs: int = 2  # signal step: passes over the samples with the signal added, when unlearning
    clp_first: bool = False  # prune with CLP before unlearning instead of after (an ablation)
    stimulation_index: float | None = 5.0  # stimulation step: act where a class's index on the original reaches this; None: skip
    stimulation_min_share: float = 0.25  # stimulation step: zero channels that alone send this share into the class
    stimulation_max_channels: int = 4  # stimulation step: at most this many channels zeroed
    stimulation_levels: tuple[float, ...] = StimulationConfig.levels  # stimulation step: the detector's level ladder

INNER_MODES = ("targeted", "untargeted", "both")


class IBAU(Purifier):
    """Adversarial unlearning of universal perturbations with implicit hypergradients."""

    name = "ibau"
    Config = IBAUConfig

    def __init__(self, config: IBAUConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        # patch searches done by this purifier and its milder copies, keyed by what determines them
        self._patch_searches: dict[tuple, tuple] = {}
        # stimulation results on the original model, shared with milder copies like the patch searches
        self._stimulations: dict[tuple, dict[str, Any]] = {}
        # sine-bank results on the original model, likewise
        self._signals: dict[tuple, dict[str, Any]] = {}

    def validate(self) -> None:
        c = self.config
        if min(c.rounds, c.batch_size, c.fixed_point_iters, c.inner_epochs) < 1:
            raise AuditorError("ibau: rounds, batch_size, fixed_point_iters and inner_epochs must be >= 1")
        if c.lr <= 0 or c.inner_lr <= 0:
            raise AuditorError("ibau: lr and inner_lr must be > 0")
        if c.inner_mode not in INNER_MODES:
            raise AuditorError(f"ibau: inner_mode must be one of {', '.join(INNER_MODES)}, not {c.inner_mode!r}")
        if c.inner_mode != "untargeted" and min(c.targeted_steps, c.top_k) < 1:
            raise AuditorError("ibau: targeted_steps and top_k must be >= 1")
        if c.anp_fraction is not None and not 0 < c.anp_fraction <= 1:
            raise AuditorError("ibau: anp_fraction must be in (0, 1] (or None to skip neuron pruning)")
        if c.anp_iterations < 1 or not 0 <= c.anp_min_anchor_agreement <= 1:
            raise AuditorError("ibau: anp_iterations must be >= 1 and anp_min_anchor_agreement in [0, 1]")
        if c.patch_pixels is not None and (c.patch_pixels < 1 or c.patch_steps < 1 or c.patch_epochs < 1
                                           or not 0 <= c.patch_min_flip <= 1 or c.patch_l1 < 0
                                           or not 0 < c.patch_max_target_share <= 1):
            raise AuditorError("ibau: patch_pixels, patch_steps and patch_epochs must be >= 1, patch_min_flip in "
                               "[0, 1], patch_max_target_share in (0, 1] and patch_l1 >= 0 (or patch_pixels None "
                               "to skip the patch step)")
        if c.signal_index is not None and c.signal_epochs < 1:
            raise AuditorError("ibau: signal_epochs must be >= 1 (or signal_index None to skip the signal step)")
        if c.clp_u is not None and c.clp_u <= 0:
            raise AuditorError("ibau: clp_u must be > 0 (or None to skip pruning)")
        if c.stimulation_index is not None and (c.stimulation_max_channels < 1 or not c.stimulation_levels
                                                or min(c.stimulation_levels) <= 0
                                                or not 0 < c.stimulation_min_share <= 1):
            raise AuditorError("ibau: stimulation_max_channels must be >= 1, stimulation_levels positive and "
                               "stimulation_min_share in (0, 1] (or stimulation_index None to skip the step)")
        if c.shared_adv_weight < 0 or c.shared_adv_eps <= 0 or c.shared_adv_steps < 1:
            raise AuditorError("ibau: shared_adv_weight must be >= 0, shared_adv_eps > 0, shared_adv_steps >= 1")

    def milder(self) -> "IBAU":
        """Half the rounds (at least one), a third of the outer learning rate, and no ANP. CLP keeps its
        threshold, so that a back-off does not undo pruning that removed a backdoor (docs/purification.md,
        "The guard")."""
        c = self.config
        gentler = IBAU(dataclasses.replace(c, rounds=max(1, math.ceil(c.rounds / 2)), lr=c.lr / 3, anp_fraction=None))
        gentler._patch_searches = self._patch_searches  # the back-off starts from the same model: same search
        gentler._stimulations = self._stimulations
        gentler._signals = self._signals
        return gentler

    def purify(
        self,
        classifier: Classifier,
        images01: Tensor,
        labels: Tensor | None = None,
        *,
        progress: ProgressFn | None = None,
        generator: torch.Generator | None = None,
        data_source: str = "synthetic",
        anchors: Tensor | None = None,
    ) -> PurifyResult:
        c = self.config
        # with clp_first, the pruned model is the starting point: its predictions are what the clean terms keep
        pruning = self._prune(classifier) if c.clp_first else None
        run = self._begin(classifier, images01, labels, data_source, generator, anchors)
        result, started, generator, params, device, images01 = run[:6]
        original_logits, targets = run.original_logits, run.targets
        original_labels = original_logits.argmax(1)
        original_probs = original_logits.softmax(1)
        optimizer = torch.optim.Adam(params, lr=c.lr)
        num_batches = math.ceil(len(images01) / c.batch_size)
        num_classes = original_logits.shape[1]
        targeted, untargeted = c.inner_mode in ("targeted", "both"), c.inner_mode in ("untargeted", "both")
        inner_steps = num_classes * c.targeted_steps * targeted + c.inner_epochs * num_batches * untargeted
        jobs_per_round = c.top_k * targeted + untargeted
        total_steps = c.rounds * (inner_steps + num_batches * jobs_per_round) + (c.anp_iterations // 10 if c.anp_fraction else 0)
        total_steps += (c.patch_steps + c.patch_epochs * num_batches) if c.patch_pixels else 0
        total_steps += c.signal_epochs * num_batches if c.signal_index is not None else 0
        counter = _Counter(total_steps, progress)
        frozen = _frozen_copy(classifier) if c.shared_adv_weight else None  # the original, for shared examples
        blamed = self._blame_channels(classifier, run) if c.stimulation_index is not None else None

        if c.patch_pixels:
            result.patch = self._unlearn_patch(classifier, run, optimizer, counter)
            if result.patch["unlearned"]:
                result.findings.append(f"patch trigger: a {c.patch_pixels}-pixel patch flips "
                                       f"{result.patch['flip_rate']:.2f} of the samples into several classes")
                result.notes.append(f"patch step: a {c.patch_pixels}-pixel patch flipped {result.patch['flip_rate']:.2f} "
                                    f"of the samples (>= {c.patch_min_flip}) into several classes; unlearned for "
                                    f"{c.patch_epochs} epoch(s)")
        if c.signal_index is not None:
            result.signal = self._unlearn_signal(classifier, run, optimizer, counter)
            if result.signal["unlearned"]:
                found = result.signal
                result.findings.append(f"signal trigger: a sinusoid of {found['periods']} period(s) along the "
                                       f"{found['axis']} sends {found['share']:.2f} of the other classes' samples "
                                       f"into class {found['class']}")
                result.notes.append(f"signal step: class {found['class']} (sine share {found['share']:.2f}, index "
                                    f"{found['index']:.2f}); unlearned for {c.signal_epochs} epoch(s)")
        for round_index in range(c.rounds):
            label = f"ibau round {round_index + 1}/{c.rounds}"
            record: dict[str, Any] = {"round": round_index + 1}
            # Inner problem: the perturbation(s) to unlearn this round.
            jobs: list[tuple[int | None, Tensor]] = []
            if targeted:
                reach = [self._targeted_perturbation(classifier, images01, targets, t, generator, counter, label)
                         for t in range(num_classes)]
                chosen = sorted(range(num_classes), key=lambda t: -reach[t][1])[: c.top_k]
                jobs += [(t, reach[t][0]) for t in chosen]
                record["class_reach"] = [round(r[1], 4) for r in reach]  # share of other-class samples each class's delta flips into it
                record["unlearned_classes"] = chosen
            if untargeted:
                delta, inner_loss = self._untargeted_perturbation(classifier, images01, generator, counter, label)
                jobs.append((None, delta))
                record["inner_loss"] = inner_loss
            record["delta_l2"] = [round(float(d.norm()), 4) for _, d in jobs]
            record["delta_fooling_rate"] = [self._fooling_rate(classifier, images01, d) for _, d in jobs]

            # Outer problem: weights updated with the implicit hypergradient, once per perturbation.
            outer_losses, ratios, shared_shares = [], [], []
            for target, delta in jobs:
                usable = torch.arange(len(images01)) if target is None else torch.nonzero(targets != target).flatten()
                for index in batches(len(usable), c.batch_size, generator):
                    index = usable[index]
                    x = images01[index].to(device)
                    y = targets[index].to(device)
                    with torch.no_grad():
                        own = classifier(x).argmax(1)
                    anchor_kl = run.anchor_kl(classifier, c.batch_size) if c.anchor_weight else None
                    extra_loss = c.anchor_weight * anchor_kl if anchor_kl is not None else None
                    if frozen is not None:
                        shared, shared_share = self._shared_adversarial_loss(classifier, frozen, x, y)
                        shared_shares.append(shared_share)
                        shared = c.shared_adv_weight * shared
                        extra_loss = shared if extra_loss is None else extra_loss + shared
                    grads, outer, ratio = self._hypergradient(classifier, params, x, y, own, delta,
                                                              original_probs[index].to(device), extra_loss, target)
                    optimizer.zero_grad(set_to_none=True)
                    for param, grad in zip(params, grads):
                        param.grad = grad
                    optimizer.step()
                    outer_losses.append(outer)
                    ratios.append(ratio)
                    counter.tick(f"{label}: unlearning")
            record.update({
                "outer_loss": sum(outer_losses) / len(outer_losses),
                "implicit_to_direct_grad": sum(ratios) / len(ratios),  # size of the hypergradient's implicit term
                **({"shared_adversarial_share": round(sum(shared_shares) / len(shared_shares), 4)} if shared_shares else {}),
                "train_agreement": agreement(classifier, images01, original_labels),
            })
            result.rounds.append(record)
        classifier.zero_grad(set_to_none=True)
        if not c.clp_first:
            pruning = self._prune(classifier)
        if pruning is not None:
            result.pruned_channels = pruning.pruned_channels
            result.notes.append(f"clp (u={c.clp_u}) pruned {sum(map(len, pruning.pruned_channels.values()))} "
                                f"channel(s) in {len(pruning.pruned_channels)} layer(s) "
                                + ("before" if c.clp_first else "after") + " unlearning")
        if c.anp_fraction:  # last: after unlearning, whose KL to the original re-taught what ANP pruned first
            result.pruned_neurons = self._prune_neurons(classifier, run, result, counter)
        if blamed is not None:
            result.stimulation = _zero_blamed(classifier, blamed)
            if result.stimulation["zeroed"]:
                result.findings.append(f"trigger channels: stimulation blamed channel(s) {blamed['channels']} for "
                                       f"class {blamed['class']}")
                result.notes.append(f"stimulation step: class {blamed['class']} (index {blamed['index']:.2f}); zeroed "
                                    f"channel(s) {blamed['channels']} of {blamed['layer']}")
        counter.finish("ibau done")  # targeted rounds skip the target's own samples: fewer steps than planned
        result.wall_time_s = time.perf_counter() - started
        return result

    def _unlearn_patch(self, classifier: Classifier, run: RunContext, optimizer: torch.optim.Optimizer,
                       counter: "_Counter") -> dict[str, Any]:
        """Search the small patch that flips the most samples; where it flips at least ``patch_min_flip``
        of them and no class takes ``patch_max_target_share`` of the flips, teach the model to ignore
        it: stamped samples keep their labels, with the same accuracy keepers as the rounds (clean CE,
        KL to the original, anchors). Flip rates are against the original model's predictions."""
        c = self.config
        # The search has its own draws, so that where no patch is unlearned the rest runs exactly as without
        # the step. It runs on the unpurified model, so a guard back-off (which restores it) would find the
        # same patch again: reuse it when the samples, the model and the search settings are the same.
        seed = run.generator.initial_seed()
        key = (seed, c.patch_pixels, c.patch_steps, c.patch_l1, c.batch_size, c.patch_grid_start,
               _fingerprint([run.images01]), _fingerprint(list(classifier.parameters())))
        if key not in self._patch_searches:
            start = (grid_patch(classifier, run.images01, pixels=c.patch_pixels,
                                generator=torch.Generator().manual_seed(seed + 2)) if c.patch_grid_start else None)
            search = untargeted_patch(
                classifier, run.images01, pixels=c.patch_pixels, steps=c.patch_steps, l1=c.patch_l1,
                batch_size=c.batch_size, on_step=lambda: counter.tick("patch search"), start=start,
                generator=torch.Generator().manual_seed(seed + 1))
            self._patch_searches.clear()  # one entry: the model of this audit
            self._patch_searches[key] = (start, search)
        start, search = self._patch_searches[key]
        num_classes = run.original_logits.shape[1]
        top_share = search.largest_share(num_classes)
        flip = search.flip_rate
        record: dict[str, Any] = {"pixels": c.patch_pixels, "flip_rate": round(flip, 4), "box": search.box,
                                  "largest_share_of_flips": round(top_share, 4),
                                  "into_class": int(search.flips_into(num_classes).argmax()),
                                  "unlearned": flip >= c.patch_min_flip and top_share < c.patch_max_target_share}
        if start is not None:
            record["grid_start"] = {"top": start.top, "left": start.left, "side": start.side, "value": start.value,
                                    "flip_rate": round(start.flip_rate, 4)}
        if not record["unlearned"]:
            return record
        self._unlearn_stamped(classifier, run, optimizer, counter, lambda x: stamp(x, search.mask, search.pattern),
                              c.patch_epochs, "patch unlearning")
        after = classifier.predict(stamp(run.images01, search.mask.cpu(), search.pattern.cpu()))
        record["flip_rate_after"] = round(float((after != search.own).float().mean()), 4)
        return record

    def _unlearn_stamped(self, classifier: Classifier, run: RunContext, optimizer: torch.optim.Optimizer,
                         counter: "_Counter", stamped: Callable[[Tensor], Tensor], epochs: int, label: str) -> None:
        """Teach the model that ``stamped(x)`` (a found trigger applied to a batch) is still its class: the
        stamped samples keep their labels, with the same accuracy keepers as the rounds (clean CE, KL to the
        original, anchors)."""
        c = self.config
        original_probs = run.original_logits.softmax(1)
        for epoch in range(epochs):
            for index in batches(len(run.images01), c.batch_size, run.generator):
                x, y = run.images01[index].to(run.device), run.targets[index].to(run.device)
                loss = self._with_keepers(F.cross_entropy(classifier(stamped(x)), y), classifier, x, y,
                                          original_probs[index].to(run.device))
                anchor_kl = run.anchor_kl(classifier, c.batch_size) if c.anchor_weight else None
                if anchor_kl is not None:
                    loss = loss + c.anchor_weight * anchor_kl
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                counter.tick(f"{label}, epoch {epoch + 1}/{epochs}")
        classifier.zero_grad(set_to_none=True)

    def _unlearn_signal(self, classifier: Classifier, run: RunContext, optimizer: torch.optim.Optimizer,
                        counter: "_Counter") -> dict[str, Any]:
        """Try the sine-reach bank on the unpurified model; where one sinusoid's class votes (conclusive, index
        at least ``signal_index``), teach the model to ignore sinusoids near it (``_unlearn_stamped``)."""
        c = self.config
        seed = run.generator.initial_seed()
        key = (seed, _fingerprint([run.images01]), _fingerprint(list(classifier.parameters())))
        if key not in self._signals:
            found = SineReach().detect(classifier, run.images01, run.targets, seed=seed)
            voting = found.voting_index()
            target = max(range(len(voting)), key=lambda t: (voting[t], found.index[t], -t))
            row = found.per_class[target]
            self._signals.clear()  # one entry: the model of this audit
            self._signals[key] = {
                "class": target, "share": round(row["share"], 4), "index": round(found.index[target], 4),
                "axis": row.get("axis"), "periods": row.get("periods"), "amplitude": found.config["amplitude"],
                "threshold": c.signal_index, "seconds": found.seconds,
                "unlearned": voting[target] >= c.signal_index and row.get("periods") is not None,
            }
        record = dict(self._signals[key])
        if not record["unlearned"]:
            return record
        draw = torch.Generator().manual_seed(seed + 3)  # its own draws: the signals added

        def with_signal(x: Tensor) -> Tensor:
            return (x + _sinusoids(x.shape, record["axis"], record["periods"], record["amplitude"], draw)
                    .to(x.device)).clamp(0.0, 1.0)

        self._unlearn_stamped(classifier, run, optimizer, counter, with_signal, c.signal_epochs, "signal unlearning")
        return record

    def _blame_channels(self, classifier: Classifier, run: RunContext) -> dict[str, Any]:
        """On the unpurified model: the class that raising one hidden channel reaches most anomalously, and
        the channels that do it (``auditor.detect.stimulation``). Zeroed after unlearning if the index is
        at least ``stimulation_index``."""
        c = self.config
        key = (c.stimulation_levels, _fingerprint([run.images01]), _fingerprint(list(classifier.parameters())))
        if key not in self._stimulations:
            detector = ChannelStimulation(levels=c.stimulation_levels)
            found = detector.detect(classifier, run.images01, run.targets, seed=run.generator.initial_seed())
            voting = found.voting_index()  # as the verdict reads it: classes one channel filled to the stop share
            # the top voting class; where none votes, the top class by index, for the record
            target = max(range(len(voting)), key=lambda t: (voting[t], found.index[t], -t))
            index = found.index[target]
            level, layer_name = found.summary["level"], found.summary["layer"]
            shares = found.images["shares"][:, target]  # per channel, at the stop level
            ranked = [int(ch) for ch in shares.argsort(descending=True)[: c.stimulation_max_channels]
                      if float(shares[ch]) >= c.stimulation_min_share]
            self._stimulations.clear()  # one entry: the model of this audit
            self._stimulations[key] = {
                "class": target, "index": round(index, 4), "level": level, "layer": layer_name,
                "channels": ranked, "shares": [round(float(shares[ch]), 4) for ch in ranked],
                "threshold": c.stimulation_index, "seconds": found.seconds,
                "reached_stop_share": found.summary["reached_stop_share"],
                # the index alone is not enough: where no channel reaches the stop share, a few percent over a
                # median of zero is a large index (clean_b, audit samples: 4.4 from a share of 0.09)
                "blamed": voting[target] >= c.stimulation_index and bool(ranked),
            }
        return dict(self._stimulations[key])

    def _prune_neurons(self, classifier: Classifier, run: RunContext, result: PurifyResult,
                       counter: "_Counter") -> dict[str, list[int]]:
        """ANP masks on the samples, then the largest pruning share the anchors accept (layer -> channels)."""
        c = self.config
        neurons = masked_conv_layers(classifier, ANPConfig.min_channels)
        if not neurons.names:
            return {}
        original_anchor_labels = None if run.anchor_probs is None else run.anchor_probs.argmax(1)
        unpruned = None
        if original_anchor_labels is not None:
            # Pruning only takes function away: where the anchors already disagree too much before it, no
            # share can pass, and learning the masks (a third of the purification's time) would be wasted.
            # In the zoo's audits every tried share scored below the unpruned model (`unpruned_anchor_agreement`).
            unpruned = agreement(classifier, run.anchors, original_anchor_labels)
            if unpruned < c.anp_min_anchor_agreement:
                result.neuron_pruning.append({"anp_fraction": None, "anp_pruned": 0, "anchor_agreement": unpruned,
                                              "kept": False, "skipped": True})
                result.notes.append(f"anp skipped: anchor agreement {unpruned:.3f} before pruning is already below "
                                    f"{c.anp_min_anchor_agreement}")
                return {}
        anp = ANPConfig(iterations=c.anp_iterations)
        masks, average = learn_masks(classifier, neurons, run.images01, run.targets, anp, run.generator,
                                     lambda step, total, message: counter.tick(message) if step % 10 == 0 else None)
        before = snapshot(classifier)
        for fraction in (c.anp_fraction, c.anp_fraction / 2):
            pruned = prune_lowest(neurons, masks, anp.threshold, fraction, scores=average)
            anchor_agreement = None if original_anchor_labels is None else agreement(classifier, run.anchors,
                                                                                      original_anchor_labels)
            kept = anchor_agreement is None or anchor_agreement >= c.anp_min_anchor_agreement
            count = sum(map(len, pruned.values()))
            result.neuron_pruning.append({"anp_fraction": fraction, "anp_pruned": count,
                                          "anchor_agreement": anchor_agreement, "kept": kept,
                                          "unpruned_anchor_agreement": unpruned})
            if kept:
                result.notes.append(f"anp pruned {count} of {sum(neurons.sizes)} neurons"
                                    + ("" if anchor_agreement is None else f" (anchor agreement {anchor_agreement:.3f})"))
                return pruned
            restore(classifier, before)
        result.notes.append(f"anp pruned nothing: no share kept anchor agreement >= {c.anp_min_anchor_agreement}")
        return {}

    def _prune(self, classifier: Classifier) -> PurifyResult | None:
        """Data-free CLP at ``clp_u`` (None when pruning is off)."""
        return CLP(CLPConfig(u=self.config.clp_u)).purify(classifier) if self.config.clp_u is not None else None

    def _untargeted_perturbation(self, classifier: Classifier, images01: Tensor, generator: torch.Generator,
                                 counter: "_Counter", label: str) -> tuple[Tensor, float]:
        """The reference inner problem: one universal delta against the model's own predictions."""
        c = self.config
        device = classifier.device
        delta = torch.zeros(1, *images01.shape[1:], device=device, requires_grad=True)
        losses = []
        for _ in range(c.inner_epochs):
            for index in batches(len(images01), c.batch_size, generator):
                x = images01[index].to(device)
                with torch.no_grad():
                    own = classifier(x).argmax(1)
                loss = self._inner_loss(classifier, x, own, delta)
                self._inner_step(loss, delta)
                losses.append(float(loss.detach()))
                counter.tick(f"{label}: perturbation")
        return delta.detach(), sum(losses) / len(losses)

    def _targeted_perturbation(self, classifier: Classifier, images01: Tensor, targets: Tensor, target: int,
                               generator: torch.Generator, counter: "_Counter", label: str) -> tuple[Tensor, float]:
        """A universal delta that sends samples of the other classes to ``target``, and the share it
        sends (``auditor.universal``: the backdoor's target is the most reachable class)."""
        c = self.config
        return targeted_universal(
            classifier, images01[targets != target], target, radius=c.delta_max_norm, steps=c.targeted_steps,
            step_size=c.inner_lr, batch_size=c.batch_size, generator=generator, clamp=c.clamp_inputs,
            extra_loss=lambda d: c.inner_reg * d.pow(2).sum(),
            on_step=lambda: counter.tick(f"{label}: perturbation towards class {target}"))

    def _inner_step(self, loss: Tensor, delta: Tensor) -> None:
        """One descent step of delta on the inner loss (normalized if configured), then the projection."""
        c = self.config
        (grad,) = torch.autograd.grad(loss, delta)  # delta only: no weight gradients accumulate here
        if c.inner_normalized:
            grad = grad / grad.norm().clamp_min(1e-12)
        with torch.no_grad():
            delta.sub_(c.inner_lr * grad)
        self._project(delta)

    # -- pieces ---------------------------------------------------------------------------------------

    def _perturbed(self, x: Tensor, delta: Tensor) -> Tensor:
        return perturb(x, delta, self.config.clamp_inputs)

    def _inner_loss(self, classifier: Classifier, x: Tensor, own: Tensor | None, delta: Tensor,
                    target: int | None = None) -> Tensor:
        """Minimised by a trigger-like delta: -CE(f(x + delta), own predictions) (untargeted, the
        reference) or CE(f(x + delta), target) (targeted), plus reg * ||delta||^2."""
        logits = classifier(self._perturbed(x, delta))
        if target is None:
            loss = -F.cross_entropy(logits, own)
        else:
            loss = F.cross_entropy(logits, torch.full((len(x),), target, dtype=torch.long, device=logits.device))
        return loss + self.config.inner_reg * delta.pow(2).sum()

    def _outer_loss(self, classifier: Classifier, x: Tensor, y: Tensor, delta: Tensor,
                    original_probs: Tensor) -> Tensor:
        """CE on perturbed samples, plus optional terms that keep clean behaviour."""
        return self._with_keepers(F.cross_entropy(classifier(self._perturbed(x, delta)), y), classifier, x, y,
                                  original_probs)

    def _with_keepers(self, loss: Tensor, classifier: Classifier, x: Tensor, y: Tensor, original_probs: Tensor) -> Tensor:
        """``loss`` plus the accuracy keepers on unperturbed samples: CE to the labels and KL to the original."""
        c = self.config
        if c.clean_weight or c.kl_weight:
            clean_logits = classifier(x)
            if c.clean_weight:
                loss = loss + c.clean_weight * F.cross_entropy(clean_logits, y)
            if c.kl_weight:
                loss = loss + c.kl_weight * F.kl_div(clean_logits.log_softmax(1), original_probs,
                                                     reduction="batchmean")
        return loss

    def _hypergradient(self, classifier: Classifier, params: list[torch.nn.Parameter], x: Tensor, y: Tensor,
                       own: Tensor, delta: Tensor, original_probs: Tensor,
                       extra_loss: Tensor | None = None, target: int | None = None) -> tuple[list[Tensor], float, float]:
        """d(outer)/d(weights) including the implicit term through delta*(weights).

        With Phi(delta, w) = delta - alpha * grad_delta inner(delta, w) and delta* = Phi(delta*, w):
        v = sum_k (dPhi/ddelta)^T^k d(outer)/d(delta) (K fixed-point iterations), and the
        hypergradient is d(outer)/dw + (dPhi/dw)^T v. Also returns the outer loss and the norm ratio
        of the implicit to the direct term (a diagnostic for the report).
        """
        c = self.config
        delta = delta.detach().requires_grad_(True)
        outer = self._outer_loss(classifier, x, y, delta, original_probs)
        if extra_loss is not None:
            outer = outer + extra_loss  # anchors / shared term: no delta dependence, only the direct weight gradient
        direct = torch.autograd.grad(outer, [delta, *params], allow_unused=True)
        outer_delta, direct_params = direct[0], direct[1:]
        if outer_delta is None:
            outer_delta = torch.zeros_like(delta)

        if not c.implicit:
            direct_only = [torch.zeros_like(p) if d is None else d.detach() for p, d in zip(params, direct_params)]
            return direct_only, float(outer.detach()), 0.0
        inner = self._inner_loss(classifier, x, own, delta, target)
        (inner_grad,) = torch.autograd.grad(inner, delta, create_graph=True)
        mapped = delta - c.fixed_point_step * inner_grad
        v = torch.zeros_like(delta)
        for _ in range(c.fixed_point_iters):
            (jv,) = torch.autograd.grad(mapped, delta, grad_outputs=v, retain_graph=True)
            v = jv + outer_delta
        indirect = torch.autograd.grad(mapped, params, grad_outputs=v, allow_unused=True)
        grads = []
        for param, d, i in zip(params, direct_params, indirect):
            g = torch.zeros_like(param) if d is None else d.detach()
            if i is not None:
                g = g + i.detach()
            grads.append(g)
        direct_norm = sum(float(d.pow(2).sum()) for d in direct_params if d is not None) ** 0.5
        indirect_norm = sum(float(i.pow(2).sum()) for i in indirect if i is not None) ** 0.5
        return grads, float(outer.detach()), indirect_norm / max(direct_norm, 1e-12)

    def _shared_adversarial_loss(self, classifier: Classifier, frozen: Classifier, x: Tensor,
                                 y: Tensor) -> tuple[Tensor, float]:
        """SAU's unlearning term: PGD (L-inf) finds per-sample perturbations that push both the original
        and the current model off ``y``; where both then agree on the same wrong class (a shared
        adversarial example, which every poisoned input of a working backdoor is), the current model's
        probability of that class is driven down. Returns the loss and the share of shared examples."""
        c = self.config
        eps, step = c.shared_adv_eps, 2.5 * c.shared_adv_eps / c.shared_adv_steps
        delta = torch.zeros_like(x, requires_grad=True)
        for _ in range(c.shared_adv_steps):
            x_adv = perturb(x, delta)  # always kept in [0, 1], whatever clamp_inputs says for the universal delta
            loss = F.cross_entropy(classifier(x_adv), y) + F.cross_entropy(frozen(x_adv), y)
            (grad,) = torch.autograd.grad(loss, delta)  # delta only: no weight gradients accumulate
            with torch.no_grad():
                delta.add_(step * grad.sign()).clamp_(-eps, eps)
        x_adv = perturb(x, delta.detach())
        with torch.no_grad():
            original_wrong = frozen(x_adv).argmax(1)
        probs = classifier(x_adv).softmax(1)
        shared = (probs.argmax(1) == original_wrong) & (original_wrong != y)
        p_wrong = probs.gather(1, original_wrong[:, None]).squeeze(1)
        loss = -(torch.log1p(-p_wrong.clamp(max=1 - 1e-6)) * shared.float()).mean()
        return loss, float(shared.float().mean())

    def _project(self, delta: Tensor) -> None:
        project_l2(delta, self.config.delta_max_norm)

    @torch.no_grad()
    def _fooling_rate(self, classifier: Classifier, images01: Tensor, delta: Tensor) -> float:
        device = classifier.device
        flipped = 0
        for start in range(0, len(images01), 256):
            x = images01[start : start + 256].to(device)
            flipped += int((classifier(x).argmax(1) != classifier(self._perturbed(x, delta)).argmax(1)).sum())
        return flipped / len(images01)


def _fingerprint(tensors: list[Tensor]) -> str:
    """A hash of the tensors' values: equal only for the same data (the patch-search cache's key)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _frozen_copy(classifier: Classifier) -> Classifier:
    """An untouched copy of the model as it was before purification (no gradients)."""
    frozen = copy.deepcopy(classifier)
    frozen.eval()
    for param in frozen.parameters():
        param.requires_grad_(False)
    return frozen


class _Counter:
    """Steps done so far, reported to the caller's progress callback."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.total, self.progress, self.done = total, progress, 0

    def tick(self, message: str) -> None:
        self.done += 1
        if self.progress:
            self.progress(min(self.done, self.total), self.total, message)

    def finish(self, message: str) -> None:
        if self.progress and self.done < self.total:
            self.progress(self.total, self.total, message)


def _zero_blamed(classifier: Classifier, blamed: dict[str, Any]) -> dict[str, Any]:
    """Zero the blamed output channels of the stimulated convolution (and of the BN that follows it, as
    CLP does), if the stimulation step blamed any; returns the step's record."""
    record = dict(blamed, zeroed=False)
    if not blamed["blamed"]:
        return record
    for name, conv, bn in conv_bn_pairs(classifier.network):
        if name != blamed["layer"]:
            continue
        zero_channels(conv, bn, blamed["channels"])
        record["zeroed"] = True
    return record


def _sinusoids(shape: torch.Size, axis: str, periods: int, amplitude: float, draw: torch.Generator) -> Tensor:
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
