"""I-BAU: Implicit Backdoor Adversarial Unlearning (Zeng et al., ICLR 2022), our own implementation.

Each round solves a minimax problem on the (synthetic or clean) samples:
  inner: a universal perturbation delta (what a trigger is: one pattern that flips many inputs).
         Default ("targeted"): one delta per class sending the other classes into it; the most
         reachable class's delta is unlearned (on SMI samples the reference's single delta against
         the model's own predictions found class boundaries, never the trigger; docs/purification.md).
         "untargeted": the reference's delta maximising the loss against the model's own predictions;
  outer: weights that classify x + delta correctly again, with the recipe's accuracy keepers. The
         weight gradient includes the implicit hypergradient through the inner solution, from K
         fixed-point iterations of the map delta -> delta - alpha * d(inner loss)/d(delta).
This module is the I-BAU step alone; the default purification runs it between other steps
(``auditor.purify.recipe``). The model stays in eval mode so that BN statistics are never updated.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.detect.base import anomaly_index
from auditor.detect.reach import REACH_MAD_FLOOR
from auditor.errors import AuditorError
from auditor.model import Classifier
from auditor.universal import perturb, project_l2, targeted_universal

from .base import StepRecord, agreement, batches
from .step import Step, StepContext

INNER_MODES = ("targeted", "untargeted", "both")


@dataclass(frozen=True)
class IBAUConfig:
    # The measurements behind each default are in docs/purification.md ("I-BAU rounds").
    rounds: int = 3  # unlearning rounds (reference: 5)
    inner_lr: float = 0.5  # step length of the universal perturbation's inner updates (reference: 10, plain SGD)
    inner_reg: float = 1e-3  # weight of ||delta||^2 in the inner loss (reference: 0.001)
    fixed_point_iters: int = 5  # K, iterations of the implicit hypergradient's fixed-point solve (reference: 5)
    fixed_point_step: float = 0.1  # alpha of the fixed-point map (reference: 0.1)
    delta_max_norm: float | None = 2.0  # L2 radius of delta in [0, 1] image space; None: unbounded (reference script)
    clamp_inputs: bool = True  # clip x + delta to [0, 1]
    implicit: bool = True  # include the implicit hypergradient term; False: plain adversarial fine-tuning
    inner_epochs: int = 1  # untargeted mode: passes over the samples to fit delta, per round (reference: 1)
    inner_mode: str = "targeted"  # "targeted": one delta per class; "untargeted": the reference's one delta; "both"
    targeted_steps: int = 20  # targeted mode: inner steps per class, one batch each
    top_k: int = 1  # targeted mode: the most reachable classes unlearned per round
    # targeted mode: after the first round, a class is unlearned only if its reach stands out (anomaly index on the
    # high side, the reach detector's MAD floor) at least this much; otherwise the previous round's classes again.
    # None: always the most reachable classes. On diverse samples natural classes reach 0.5-0.8, so once the
    # first round has cut the target's reach, the most reachable class is a natural one.
    switch_index: float | None = None
    inner_normalized: bool = True  # untargeted mode: step delta along the unit-norm gradient (targeted always does)
    shared_adv_weight: float = 0.0  # weight of the shared-adversarial term (after SAU, Wei et al., NeurIPS 2023); 0: off
    shared_adv_eps: float = 0.2  # L-inf radius of SAU's per-sample perturbation in [0, 1] image space
    shared_adv_steps: int = 5  # PGD steps of SAU's per-sample perturbation


class IBAU(Step):
    """Adversarial unlearning of universal perturbations with implicit hypergradients."""

    name = "ibau"
    Config = IBAUConfig
    meaning = "rounds of I-BAU: unlearn the universal perturbation that reaches a class most easily"
    trains = True

    def validate(self) -> None:
        c = self.config
        if min(c.rounds, c.fixed_point_iters, c.inner_epochs) < 1:
            raise AuditorError("ibau: rounds, fixed_point_iters and inner_epochs must be >= 1")
        if c.inner_lr <= 0:
            raise AuditorError("ibau: inner_lr must be > 0")
        if c.inner_mode not in INNER_MODES:
            raise AuditorError(f"ibau: inner_mode must be one of {', '.join(INNER_MODES)}, not {c.inner_mode!r}")
        if c.inner_mode != "untargeted" and min(c.targeted_steps, c.top_k) < 1:
            raise AuditorError("ibau: targeted_steps and top_k must be >= 1")
        if c.shared_adv_weight < 0 or c.shared_adv_eps <= 0 or c.shared_adv_steps < 1:
            raise AuditorError("ibau: shared_adv_weight must be >= 0, shared_adv_eps > 0, shared_adv_steps >= 1")

    def milder(self) -> "IBAU":
        """Half the rounds (at least one); the recipe also lowers the shared learning rate."""
        return IBAU(dataclasses.replace(self.config, rounds=max(1, math.ceil(self.config.rounds / 2))))

    @property
    def _targeted(self) -> bool:
        return self.config.inner_mode in ("targeted", "both")

    @property
    def _untargeted(self) -> bool:
        return self.config.inner_mode in ("untargeted", "both")

    def planned(self, num_batches: int, num_classes: int) -> int:
        c = self.config
        inner = num_classes * c.targeted_steps * self._targeted + c.inner_epochs * num_batches * self._untargeted
        return c.rounds * (inner + num_batches * (c.top_k * self._targeted + self._untargeted))

    def _round_classes(self, reach: list[float], previous: list[int] | None) -> list[int]:
        """The classes a round unlearns: the most reachable, unless ``switch_index`` keeps the previous round's
        classes where no other class's reach stands out."""
        c = self.config
        ranked = sorted(range(len(reach)), key=lambda t: -reach[t])
        if previous is None or c.switch_index is None:
            return ranked[: c.top_k]
        index = anomaly_index(torch.tensor(reach), side="high", floor=REACH_MAD_FLOOR)
        standing_out = [t for t in ranked if float(index[t]) >= c.switch_index and t not in previous]
        return (standing_out + previous)[: c.top_k] if standing_out else previous

    def run(self, context: StepContext) -> StepRecord:
        c, classifier, run = self.config, context.classifier, context.run
        started = time.perf_counter()
        images01, targets, device, optimizer = run.images01, run.targets, run.device, context.optimizer
        original_labels, original_probs = run.original_logits.argmax(1), context.original_probs
        num_classes, batch_size = context.num_classes, context.training.batch_size
        frozen = context.frozen_original() if c.shared_adv_weight else None  # the original, for shared examples
        rounds: list[dict[str, Any]] = []
        for round_index in range(c.rounds):
            label = f"ibau round {round_index + 1}/{c.rounds}"
            record: dict[str, Any] = {"round": round_index + 1}
            # Inner problem: the perturbation(s) to unlearn this round.
            jobs: list[tuple[int | None, Tensor]] = []
            if self._targeted:
                reach = [self._targeted_perturbation(context, t, label) for t in range(num_classes)]
                chosen = self._round_classes([r[1] for r in reach], rounds[-1]["unlearned_classes"] if rounds else None)
                jobs += [(t, reach[t][0]) for t in chosen]
                record["class_reach"] = [round(r[1], 4) for r in reach]  # share of other-class samples each class's delta flips into it
                record["unlearned_classes"] = chosen
            if self._untargeted:
                delta, inner_loss = self._untargeted_perturbation(context, label)
                jobs.append((None, delta))
                record["inner_loss"] = inner_loss
            record["delta_l2"] = [round(float(d.norm()), 4) for _, d in jobs]
            record["delta_fooling_rate"] = [self._fooling_rate(classifier, images01, d) for _, d in jobs]

            # Outer problem: weights updated with the implicit hypergradient, once per perturbation.
            outer_losses, ratios, shared_shares = [], [], []
            for target, delta in jobs:
                usable = torch.arange(len(images01)) if target is None else torch.nonzero(targets != target).flatten()
                for index in batches(len(usable), batch_size, run.generator):
                    index = usable[index]
                    x = images01[index].to(device)
                    y = targets[index].to(device)
                    with torch.no_grad():
                        own = classifier(x).argmax(1)
                    extra_loss = context.anchor_term()
                    if frozen is not None:
                        shared, shared_share = self._shared_adversarial_loss(classifier, frozen, x, y)
                        shared_shares.append(shared_share)
                        shared = c.shared_adv_weight * shared
                        extra_loss = shared if extra_loss is None else extra_loss + shared
                    grads, outer, ratio = self._hypergradient(context, x, y, own, delta,
                                                              original_probs[index].to(device), extra_loss, target)
                    optimizer.zero_grad(set_to_none=True)
                    for param, grad in zip(run.params, grads):
                        param.grad = grad
                    optimizer.step()
                    outer_losses.append(outer)
                    ratios.append(ratio)
                    context.counter.tick(f"{label}: unlearning")
            record.update({
                "outer_loss": sum(outer_losses) / len(outer_losses),
                "implicit_to_direct_grad": sum(ratios) / len(ratios),  # size of the hypergradient's implicit term
                **({"shared_adversarial_share": round(sum(shared_shares) / len(shared_shares), 4)} if shared_shares else {}),
                "train_agreement": agreement(classifier, images01, original_labels),
            })
            rounds.append(record)
        classifier.zero_grad(set_to_none=True)
        unlearned = [r.get("unlearned_classes") for r in rounds if "unlearned_classes" in r]
        note = f"ibau: {c.rounds} round(s)" + (f", unlearned class(es) per round {unlearned}" if unlearned else "")
        return StepRecord(self.name, acted=True, changed={"rounds": c.rounds}, rounds=rounds,
                          seconds=round(time.perf_counter() - started, 2), notes=[note])

    def _untargeted_perturbation(self, context: StepContext, label: str) -> tuple[Tensor, float]:
        """The reference inner problem: one universal delta against the model's own predictions."""
        c, classifier, images01 = self.config, context.classifier, context.run.images01
        device = classifier.device
        delta = torch.zeros(1, *images01.shape[1:], device=device, requires_grad=True)
        losses = []
        for _ in range(c.inner_epochs):
            for index in batches(len(images01), context.training.batch_size, context.run.generator):
                x = images01[index].to(device)
                with torch.no_grad():
                    own = classifier(x).argmax(1)
                loss = self._inner_loss(classifier, x, own, delta)
                self._inner_step(loss, delta)
                losses.append(float(loss.detach()))
                context.counter.tick(f"{label}: perturbation")
        return delta.detach(), sum(losses) / len(losses)

    def _targeted_perturbation(self, context: StepContext, target: int, label: str) -> tuple[Tensor, float]:
        """A universal delta that sends samples of the other classes to ``target``, and the share it
        sends (``auditor.universal``: the backdoor's target is the most reachable class)."""
        c, run = self.config, context.run
        return targeted_universal(
            context.classifier, run.images01[run.targets != target], target, radius=c.delta_max_norm,
            steps=c.targeted_steps, step_size=c.inner_lr, batch_size=context.training.batch_size,
            generator=run.generator, clamp=c.clamp_inputs, extra_loss=lambda d: c.inner_reg * d.pow(2).sum(),
            on_step=lambda: context.counter.tick(f"{label}: perturbation towards class {target}"))

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

    def _outer_loss(self, context: StepContext, x: Tensor, y: Tensor, delta: Tensor, original_probs: Tensor) -> Tensor:
        """CE on perturbed samples, plus the recipe's keepers of clean behaviour."""
        return context.with_keepers(F.cross_entropy(context.classifier(self._perturbed(x, delta)), y), x, y,
                                    original_probs)

    def _hypergradient(self, context: StepContext, x: Tensor, y: Tensor, own: Tensor, delta: Tensor,
                       original_probs: Tensor,
                       extra_loss: Tensor | None = None, target: int | None = None) -> tuple[list[Tensor], float, float]:
        """d(outer)/d(weights) including the implicit term through delta*(weights).

        With Phi(delta, w) = delta - alpha * grad_delta inner(delta, w) and delta* = Phi(delta*, w):
        v = sum_k (dPhi/ddelta)^T^k d(outer)/d(delta) (K fixed-point iterations), and the
        hypergradient is d(outer)/dw + (dPhi/dw)^T v. Also returns the outer loss and the norm ratio
        of the implicit to the direct term (a diagnostic for the report).
        """
        c, classifier, params = self.config, context.classifier, context.run.params
        delta = delta.detach().requires_grad_(True)
        outer = self._outer_loss(context, x, y, delta, original_probs)
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
