"""ANP: Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021), on the converted graph, our own implementation.

A backdoor lives in a few neurons that, when slightly perturbed, take over the prediction: the
model becomes unstable in parameter space exactly there. ANP learns a mask m in [0, 1] per neuron
that keeps the samples classified while every neuron is adversarially perturbed (multiplier
m + delta, bias 1 + xi, |delta|, |xi| <= eps); neurons whose mask falls below a threshold are pruned.
This is the parameter-stability view of SMI turned into a purifier: SMI samples are stable under
parameter perturbations by construction, so the neurons that still flip them are the suspicious ones.
A neuron is a convolution output channel (``auditor.purify.neurons``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.errors import AuditorError
from auditor.model import Classifier

from .base import ProgressFn, PurifyResult, Purifier, RunContext, StepRecord, agreement
from .guard import restore, snapshot
from .step import Step, StepContext
from .neurons import Neurons, masked_conv_layers, masked_forward, prune_lowest


@dataclass(frozen=True)
class ANPConfig:
    # Reference settings (ANP's code): eps 0.4, alpha 0.2, 2,000 iterations of batch 128, mask SGD lr 0.2
    # with momentum 0.9, one perturbation step, prune masks below 0.2.
    eps: float = 0.4  # neuron perturbation bound (relative multiplier); reference 0.4
    alpha: float = 0.2  # weight of the unperturbed loss (1 - alpha: the perturbed loss); reference 0.2
    iterations: int = 500  # mask updates; reference 2,000
    batch_size: int = 128  # reference 128
    mask_lr: float = 0.2  # reference 0.2 (SGD, momentum 0.9)
    perturb_steps: int = 1  # ascent steps on the perturbation per iteration; reference 1
    threshold: float = 0.2  # prune neurons whose mask is below this; reference 0.2
    max_prune_fraction: float = 0.05  # never prune more than this share of the masked neurons (lowest masks first); our choice
    min_channels: int = 4  # layers with fewer output channels are left alone (as CLP)


class ANP(Purifier):
    """Learn per-neuron masks under adversarial neuron perturbation; prune the low ones."""

    name = "anp"
    Config = ANPConfig

    def validate(self) -> None:
        c = self.config
        if c.eps < 0 or not 0 <= c.alpha <= 1 or c.mask_lr <= 0:
            raise AuditorError("anp: eps must be >= 0, alpha in [0, 1], mask_lr > 0")
        if min(c.iterations, c.batch_size, c.perturb_steps) < 1:
            raise AuditorError("anp: iterations, batch_size and perturb_steps must be >= 1")
        if not 0 < c.threshold < 1 or not 0 < c.max_prune_fraction <= 1:
            raise AuditorError("anp: threshold must be in (0, 1) and max_prune_fraction in (0, 1]")

    def milder(self) -> "ANP":
        """Prune less: a lower threshold and half the share of neurons."""
        c = self.config
        return ANP(dataclasses.replace(c, threshold=c.threshold / 2, max_prune_fraction=c.max_prune_fraction / 2))

    def _purify(self, classifier: Classifier, run: RunContext | None, progress: ProgressFn | None) -> PurifyResult:
        # anchors are not used (``uses_anchors``): the masks only ever remove neurons, they are not trained to fit data
        c = self.config
        result = run.result
        neurons = masked_conv_layers(classifier, c.min_channels)
        if not neurons.names:
            result.notes.append("no convolution with enough channels to mask: nothing pruned")
            return result
        masks, average = learn_masks(classifier, neurons, run.images01, run.targets, c, run.generator, progress)
        pruned = prune_lowest(neurons, masks, c.threshold, c.max_prune_fraction, scores=average)
        result.pruned_channels.update(pruned)
        result.rounds = [{"layer": layer, "channels": len(m), "mask_min": float(m.min()),
                          "mask_mean": float(m.mean()), "below_threshold": int((m < c.threshold).sum()),
                          "pruned": len(pruned.get(layer, []))} for layer, m in zip(neurons.layers, masks)]
        total = sum(neurons.sizes)
        result.notes.append(f"anp pruned {sum(map(len, pruned.values()))} of {total} neurons "
                            f"in {len(pruned)} layer(s)")
        return result


def learn_masks(classifier: Classifier, neurons: Neurons, images01: Tensor, targets: Tensor, c: ANPConfig,
                generator: torch.Generator, progress: ProgressFn | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """ANP's min-max: masks minimise alpha * CE(masked) + (1 - alpha) * CE(masked, worst-case perturbed).
    Returns the final masks and their average over the iterations (which ranks the neurons at 0)."""
    device = classifier.device
    masks = [torch.ones(n, device=device, requires_grad=True) for n in neurons.sizes]
    noise_w = [torch.zeros(n, device=device, requires_grad=True) for n in neurons.sizes]
    noise_b = [torch.zeros(n, device=device, requires_grad=True) for n in neurons.sizes]
    optimizer = torch.optim.SGD(masks, lr=c.mask_lr, momentum=0.9)
    step = c.eps / c.perturb_steps
    totals = [torch.zeros(n, device=device) for n in neurons.sizes]
    for iteration in range(c.iterations):
        index = torch.randint(len(images01), (min(c.batch_size, len(images01)),), generator=generator)
        x, y = images01[index].to(device), targets[index].to(device)
        if c.eps > 0:
            with torch.no_grad():  # a random start in the box, then signed ascent steps (as ANP's reset + steps)
                for tensor in (*noise_w, *noise_b):
                    tensor.copy_((torch.rand(tensor.shape, generator=generator) * 2 - 1).mul_(c.eps).to(device))
            for _ in range(c.perturb_steps):
                loss = F.cross_entropy(masked_forward(classifier, neurons, x, [m.detach() for m in masks], noise_w, noise_b), y)
                # a convolution without a bias (pre-activation blocks, convolutions before BatchNorm) has no bias
                # to perturb: its bias noise is not in the graph and gets no gradient
                grads = torch.autograd.grad(loss, [*noise_w, *noise_b], allow_unused=True)
                with torch.no_grad():
                    for tensor, grad in zip((*noise_w, *noise_b), grads):
                        if grad is not None:
                            tensor.add_(step * grad.sign()).clamp_(-c.eps, c.eps)
            perturbed = F.cross_entropy(masked_forward(classifier, neurons, x, masks,
                                                 [n.detach() for n in noise_w], [n.detach() for n in noise_b]), y)
        else:
            perturbed = torch.zeros((), device=device)
        natural = F.cross_entropy(masked_forward(classifier, neurons, x, masks), y)
        loss = c.alpha * natural + (1 - c.alpha) * perturbed
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for mask, total in zip(masks, totals):
                mask.clamp_(0, 1)
                total.add_(mask)
        if progress:
            progress(iteration + 1, c.iterations, "anp: learning neuron masks")
    return [m.detach().cpu() for m in masks], [(t / c.iterations).cpu() for t in totals]


@dataclass(frozen=True)
class AnchoredANPConfig:
    fraction: float = 0.03  # prune up to this share of neurons, lowest average masks first
    iterations: int = 300  # ANP mask updates (reference: 2,000 on real data)
    min_anchor_agreement: float = 0.75  # keep a share only if the anchors agree this much with the original


class AnchoredANP(Step):
    """ANP's masks on the samples, then the largest pruning share (``fraction``, else half of it) on which the
    anchors still agree with the original model; the share is undone where none passes."""

    name = "anp"
    Config = AnchoredANPConfig
    meaning = "prune the neurons ANP's masks rank lowest, as far as the anchors still agree with the original"

    def validate(self) -> None:
        c = self.config
        if not 0 < c.fraction <= 1 or c.iterations < 1 or not 0 <= c.min_anchor_agreement <= 1:
            raise AuditorError("anp: fraction must be in (0, 1], iterations >= 1 and min_anchor_agreement in [0, 1]")

    def milder(self) -> None:
        """A back-off prunes no neurons."""
        return None

    def for_guard(self, min_prior_agreement: float) -> "AnchoredANP":
        """Never prune below the guard's prior threshold (unless the threshold was set explicitly)."""
        c = self.config
        if c.min_anchor_agreement == AnchoredANPConfig.min_anchor_agreement and min_prior_agreement > c.min_anchor_agreement:
            return AnchoredANP(dataclasses.replace(c, min_anchor_agreement=min_prior_agreement))
        return self

    def planned(self, num_batches: int, num_classes: int) -> int:
        return self.config.iterations // 10

    def run(self, context: StepContext) -> StepRecord:
        c, classifier, run = self.config, context.classifier, context.run
        started = time.perf_counter()
        record = StepRecord(self.name)
        tried: list[dict[str, Any]] = []
        record.changed = {"shares_tried": tried}
        neurons = masked_conv_layers(classifier, ANPConfig.min_channels)
        if not neurons.names:
            record.notes.append("anp: no convolution with enough channels to mask")
            return record
        original_anchor_labels = None if run.anchor_probs is None else run.anchor_probs.argmax(1)
        unpruned = None
        if original_anchor_labels is not None:
            # Pruning only takes function away: where the anchors already disagree too much before it, no
            # share can pass, and learning the masks (a third of the purification's time) would be wasted.
            # In the zoo's audits every tried share scored below the unpruned model (`unpruned_anchor_agreement`).
            unpruned = agreement(classifier, run.anchors, original_anchor_labels)
            if unpruned < c.min_anchor_agreement:
                tried.append({"fraction": None, "pruned": 0, "anchor_agreement": unpruned, "kept": False,
                              "skipped": True})
                record.notes.append(f"anp skipped: anchor agreement {unpruned:.3f} before pruning is already below "
                                    f"{c.min_anchor_agreement}")
                record.seconds = round(time.perf_counter() - started, 2)
                return record
        anp = ANPConfig(iterations=c.iterations)
        masks, average = learn_masks(classifier, neurons, run.images01, run.targets, anp, run.generator,
                                     lambda step, total, message: context.counter.tick(message) if step % 10 == 0 else None)
        before = snapshot(classifier)
        for fraction in (c.fraction, c.fraction / 2):
            pruned = prune_lowest(neurons, masks, anp.threshold, fraction, scores=average)
            anchor_agreement = None if original_anchor_labels is None else agreement(classifier, run.anchors,
                                                                                      original_anchor_labels)
            kept = anchor_agreement is None or anchor_agreement >= c.min_anchor_agreement
            count = sum(map(len, pruned.values()))
            tried.append({"fraction": fraction, "pruned": count, "anchor_agreement": anchor_agreement, "kept": kept,
                          "unpruned_anchor_agreement": unpruned})
            if kept:
                record.notes.append(f"anp pruned {count} of {sum(neurons.sizes)} neurons"
                                    + ("" if anchor_agreement is None else f" (anchor agreement {anchor_agreement:.3f})"))
                record.acted = bool(count)
                record.changed["zeroed"] = pruned
                break
            restore(classifier, before)
        else:
            record.notes.append(f"anp pruned nothing: no share kept anchor agreement >= {c.min_anchor_agreement}")
        record.seconds = round(time.perf_counter() - started, 2)
        return record
