"""Universal adversarial perturbations: one delta for many inputs, the shape a trigger has.

Shared by the targeted inner problem of I-BAU (``auditor.purify.ibau``) and the reach detector
(``auditor.detect.reach``): a backdoor is a shortcut into its target class, so at a fixed L2
radius the target's universal perturbation sends far more samples of the other classes into it
than any other class's does (on the zoo's BadNets model with SMI samples: 97% into the target at
L2 2, 12-29% into the other classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from auditor.model import Classifier


def perturb(x: Tensor, delta: Tensor, clamp: bool = True) -> Tensor:
    """x + delta, kept in the model's [0, 1] input box unless ``clamp`` is off."""
    x = x + delta
    return x.clamp(0.0, 1.0) if clamp else x


def project_l2(delta: Tensor, radius: float | None) -> None:
    """Shrink ``delta`` in place onto the L2 ball of ``radius`` (no-op for None)."""
    if radius is None:
        return
    with torch.no_grad():
        norm = float(delta.norm())
        if norm > radius:
            delta.mul_(radius / norm)


def normalized_step(loss: Tensor, delta: Tensor, step: float, radius: float | None) -> None:
    """One descent step of ``delta`` along the unit-norm gradient of ``loss``, then the projection.

    Normalized steps move delta even where the model is so confident that raw gradients vanish."""
    (grad,) = torch.autograd.grad(loss, delta)  # delta only: no weight gradients accumulate
    with torch.no_grad():
        delta.sub_(step * grad / grad.norm().clamp_min(1e-12))
    project_l2(delta, radius)


def targeted_loss(classifier: Classifier, x: Tensor, delta: Tensor, target: int, clamp: bool = True) -> Tensor:
    """CE(f(x + delta), target): minimised by a delta that sends x into ``target``."""
    logits = classifier(perturb(x, delta, clamp))
    return F.cross_entropy(logits, torch.full((len(x),), target, dtype=torch.long, device=logits.device))


@torch.no_grad()
def reach(classifier: Classifier, images01: Tensor, delta: Tensor, target: int, clamp: bool = True,
          batch_size: int = 256) -> float:
    """Share of ``images01`` that ``delta`` sends into ``target``."""
    if len(images01) == 0:
        return 0.0
    hits = 0
    for start in range(0, len(images01), batch_size):
        x = images01[start : start + batch_size].to(classifier.device)
        hits += int((classifier(perturb(x, delta, clamp)).argmax(1) == target).sum())
    return hits / len(images01)


def targeted_universal(classifier: Classifier, others: Tensor, target: int, *, radius: float, steps: int,
                       step_size: float, batch_size: int, generator: torch.Generator, clamp: bool = True,
                       extra_loss=None, on_step=None) -> tuple[Tensor, float]:
    """A universal delta (L2 <= ``radius``) sending ``others`` (images of other classes, CPU, [0, 1])
    into ``target``, and the share it sends. ``extra_loss(delta)`` adds a regularizer."""
    delta = torch.zeros(1, *others.shape[1:], device=classifier.device, requires_grad=True)
    if len(others) == 0:
        return delta.detach(), 0.0
    for _ in range(steps):
        index = torch.randint(len(others), (min(batch_size, len(others)),), generator=generator)
        loss = targeted_loss(classifier, others[index].to(classifier.device), delta, target, clamp)
        if extra_loss is not None:
            loss = loss + extra_loss(delta)
        normalized_step(loss, delta, step_size, radius)
        if on_step is not None:
            on_step()
    delta = delta.detach()
    return delta, reach(classifier, others, delta, target, clamp)


def stamp(x: Tensor, mask: Tensor, pattern: Tensor) -> Tensor:
    """Paste ``pattern`` where ``mask`` is 1 (a patch trigger's form: (1 - m) x + m p)."""
    return (1 - mask) * x + mask * pattern


@dataclass(frozen=True)
class PatchSearch:
    """A patch found by ``untargeted_patch``: binary mask (1, 1, H, W), pattern (1, C, H, W), and the
    model's predictions on the searched images without (``own``) and with (``stamped``) the patch."""

    mask: Tensor
    pattern: Tensor
    own: Tensor
    stamped: Tensor

    @property
    def flip_rate(self) -> float:
        """Share of the images the patch moves off the model's own prediction."""
        return float((self.stamped != self.own).float().mean()) if len(self.own) else 0.0

    def flips_into(self, num_classes: int) -> Tensor:
        """How many flipped images land in each class."""
        return torch.bincount(self.stamped[self.stamped != self.own], minlength=num_classes).float()

    def largest_share(self, num_classes: int) -> float:
        """The share of the flips that the most-receiving class takes (1.0: an all-to-one patch; 0 without flips)."""
        into = self.flips_into(num_classes)
        return float(into.max() / into.sum()) if into.sum() > 0 else 0.0

    @property
    def box(self) -> list[int]:
        """Rows and columns the mask spans: [top, bottom, left, right]."""
        rows, cols = torch.nonzero(self.mask[0, 0], as_tuple=True)
        return [int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())]


@dataclass(frozen=True)
class PatchStart:
    """A solid square found by ``grid_patch``: where the gradient search of ``untargeted_patch`` begins."""

    top: int
    left: int
    side: int
    value: float  # the square's colour in [0, 1] (all channels)
    flip_rate: float  # on the probe images


@torch.no_grad()
def grid_patch(classifier: Classifier, images01: Tensor, *, pixels: int, generator: torch.Generator,
               probe: int = 250, stride: int = 4, values: tuple[float, ...] = (1.0, 0.0)) -> PatchStart:
    """The solid square of about ``pixels`` pixels, on a grid of positions and in each of ``values``, that
    flips the most of ``probe`` images away from the model's own predictions.

    The gradient search alone is local: started from an empty mask, it settles wherever the first
    gradients point. On one SMI draw of the zoo's all-to-all model it found the corner trigger (flip
    0.85), on another draw it spread over the centre (0.11) and the backdoor stayed (docs/purification.md)."""
    index = torch.randperm(len(images01), generator=generator)[:probe]
    x = images01[index]
    own = classifier.predict(x)
    channels, height, width = x.shape[1:]
    side = max(1, min(round(pixels ** 0.5), height, width))

    def positions(size: int) -> list[int]:
        starts = list(range(0, size - side + 1, stride))
        return starts if starts[-1] == size - side else [*starts, size - side]

    best = PatchStart(0, 0, side, values[0], -1.0)
    for value in values:
        pattern = torch.full((1, channels, height, width), value)
        for top in positions(height):
            for left in positions(width):
                mask = torch.zeros(1, 1, height, width)
                mask[..., top : top + side, left : left + side] = 1.0
                flip = float((classifier.predict(stamp(x, mask, pattern)) != own).float().mean())
                if flip > best.flip_rate:
                    best = PatchStart(top, left, side, value, flip)
    return best


def untargeted_patch(classifier: Classifier, images01: Tensor, *, pixels: int, steps: int, l1: float,
                     batch_size: int, generator: torch.Generator, lr: float = 0.1, on_step=None,
                     start: PatchStart | None = None) -> PatchSearch:
    """The small patch (a binary mask of ``pixels`` pixels and a pattern) that flips the most of
    ``images01`` away from the model's own predictions, with the predictions it leaves.

    A patch trigger flips nearly everything with a few pixels whatever its target mapping, which
    per-class searches miss on all-to-all backdoors (zoo, 30 SMI samples per class, 16 pixels: BadNets
    and all-to-all 0.90; the clean models 0.05-0.11, Blended, WaNet, SIG, Input-Aware 0.01-0.25).
    A soft mask (sigmoid, L1-penalized) and pattern are fitted on a margin loss, then the mask's
    ``pixels`` largest entries are kept. With ``start`` (``grid_patch``), the mask begins mostly on at
    that square and the pattern at its colour."""
    device = classifier.device
    own = classifier.predict(images01)
    _, channels, height, width = images01.shape
    mask_logit = torch.full((1, 1, height, width), -6.0, device=device)
    pattern_logit = torch.zeros(1, channels, height, width, device=device)
    if start is not None:
        mask_logit[..., start.top : start.top + start.side, start.left : start.left + start.side] = 2.0
        pattern_logit.fill_(3.0 if start.value >= 0.5 else -3.0)
    mask_logit.requires_grad_(True)
    pattern_logit.requires_grad_(True)
    optimizer = torch.optim.Adam([mask_logit, pattern_logit], lr=lr)
    for _ in range(steps):
        index = torch.randint(len(images01), (min(batch_size, len(images01)),), generator=generator)
        x, y = images01[index].to(device), own[index].to(device)
        mask = torch.sigmoid(mask_logit)
        logits = classifier(stamp(x, mask, torch.sigmoid(pattern_logit)))
        correct = logits.gather(1, y[:, None]).squeeze(1)
        best_other = logits.scatter(1, y[:, None], float("-inf")).max(1).values
        loss = (correct - best_other).clamp(min=-2.0).mean() + l1 * mask.sum()
        optimizer.zero_grad(set_to_none=True)
        grads = torch.autograd.grad(loss, [mask_logit, pattern_logit])  # no weight gradients accumulate
        mask_logit.grad, pattern_logit.grad = grads
        optimizer.step()
        if on_step is not None:
            on_step()
    with torch.no_grad():
        soft = torch.sigmoid(mask_logit)
        mask = (soft >= soft.flatten().topk(pixels).values[-1]).float().detach()
        pattern = torch.sigmoid(pattern_logit).detach()
        stamped = classifier.predict(stamp(images01, mask.cpu(), pattern.cpu()))
    return PatchSearch(mask, pattern, own, stamped)
