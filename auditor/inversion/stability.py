"""How stable is a model's prediction on a set of images?

The paper's finding: clean data sits where the model's prediction survives small input and small
*parameter* perturbations; model-inversion samples often do not, and unlearning on unstable
samples removes the wrong thing. These measurements are used three ways: as the inner
(worst-case) problem of stabilized inversion, as a filter on the synthesized samples, and as the
figures that compare synthetic samples with real data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call

from auditor.model import Classifier


@dataclass(frozen=True)
class StabilityConfig:
    # Calibrated on real CIFAR-10 test images (95% of them stable under input_noise); docs/inversion.md has the table.
    input_noise: float = 8 / 255  # Gaussian sigma for the random input test
    input_draws: int = 4  # random input draws per sample
    param_noise: float = 0.02  # per-layer relative norm of a random parameter direction
    param_draws: int = 4  # random parameter draws
    worst_input_eps: float = 1 / 255  # FGSM radius (L-inf) for the worst-case input test
    worst_param_rho: float = 0.002  # AWP radius relative to each layer's norm

    def to_json(self) -> dict:
        return asdict(self)


def named_trainable(classifier: Classifier) -> dict[str, torch.Tensor]:
    return {name: p for name, p in classifier.named_parameters() if p.requires_grad}


def _call(classifier: Classifier, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return functional_call(classifier, params, (x,), strict=False)


def worst_case_params(
    classifier: Classifier, x: torch.Tensor, y: torch.Tensor, rho: float
) -> dict[str, torch.Tensor]:
    """One ascent step of adversarial weight perturbation, per layer relative to its norm:
    theta_l + rho * ||theta_l|| * g_l / ||g_l||. Returned as new (detached) tensors: the model
    itself is never modified, so nothing has to be restored."""
    params = named_trainable(classifier)
    loss = F.cross_entropy(classifier(x), y)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return ascent_step(params, grads, rho)


def ascent_step(params: dict[str, torch.Tensor], grads, rho: float) -> dict[str, torch.Tensor]:
    """theta_l + rho * ||theta_l|| * g_l / ||g_l|| for each layer (unchanged where it has no
    gradient), as new detached tensors: the AWP step, given the gradients."""
    perturbed = {}
    for (name, p), g in zip(params.items(), grads):
        if g is None:
            perturbed[name] = p.detach()
            continue
        scale = rho * p.detach().norm() / (g.norm() + 1e-12)
        perturbed[name] = (p.detach() + scale * g.detach())
    return perturbed


def worst_case_input(classifier: Classifier, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM: the L-inf step of size eps that increases the loss most, to first order (detached)."""
    probe = x.detach().requires_grad_(True)
    loss = F.cross_entropy(classifier(probe), y)
    (grad,) = torch.autograd.grad(loss, probe)
    return eps * grad.sign()


def random_param_perturbation(
    classifier: Classifier, relative: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in named_trainable(classifier).items():
        direction = torch.randn(p.shape, generator=generator, device="cpu").to(p.device)
        out[name] = p.detach() + relative * p.detach().norm() * direction / (direction.norm() + 1e-12)
    return out


@torch.no_grad()
def _agree(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == y).float()


def stability_scores(
    classifier: Classifier,
    images01: torch.Tensor,
    labels: torch.Tensor,
    config: StabilityConfig = StabilityConfig(),
    seed: int = 0,
    batch_size: int = 250,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample figures (CPU tensors): confidence, margin, and the share of predictions equal to
    ``labels`` under random input noise, random parameter noise, worst-case input (FGSM) and
    worst-case parameters (AWP, computed per batch)."""
    generator = torch.Generator().manual_seed(seed)
    device = classifier.device
    was_training = classifier.training
    classifier.eval()
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in (
        "confidence", "margin", "input_noise", "param_noise", "worst_input", "worst_param")}
    param_sets = [random_param_perturbation(classifier, config.param_noise, generator) for _ in range(config.param_draws)]
    total = (len(images01) + batch_size - 1) // batch_size
    try:
        for index, start in enumerate(range(0, len(images01), batch_size)):
            x = images01[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            with torch.no_grad():
                logits = classifier(x)
                probs = logits.softmax(1)
                parts["confidence"].append(probs.gather(1, y[:, None])[:, 0].cpu())
                others = logits.clone()
                others.scatter_(1, y[:, None], float("-inf"))
                parts["margin"].append((logits.gather(1, y[:, None])[:, 0] - others.max(1).values).cpu())
                noisy = torch.zeros(len(x), device=device)
                for _ in range(config.input_draws):
                    noise = torch.randn(x.shape, generator=generator).to(device) * config.input_noise
                    noisy += _agree(classifier((x + noise).clamp(0, 1)), y)
                parts["input_noise"].append((noisy / config.input_draws).cpu())
                param_ok = torch.zeros(len(x), device=device)
                for params in param_sets:
                    param_ok += _agree(_call(classifier, params, x), y)
                parts["param_noise"].append((param_ok / max(config.param_draws, 1)).cpu())
            delta = worst_case_input(classifier, x, y, config.worst_input_eps)
            with torch.no_grad():
                parts["worst_input"].append(_agree(classifier((x + delta).clamp(0, 1)), y).cpu())
            perturbed = worst_case_params(classifier, x, y, config.worst_param_rho)
            with torch.no_grad():
                parts["worst_param"].append(_agree(_call(classifier, perturbed, x), y).cpu())
            if progress:
                progress(index + 1, total)
    finally:
        classifier.train(was_training)
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in parts.items()}


def stability_index(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """One number per sample in [0, 1]: the mean of the four stability shares."""
    return (scores["input_noise"] + scores["param_noise"] + scores["worst_input"] + scores["worst_param"]) / 4


def summarize(scores: dict[str, torch.Tensor], labels: torch.Tensor, num_classes: int) -> dict:
    """Per-class and overall means of every figure."""
    keys = ("confidence", "input_noise", "param_noise", "worst_input", "worst_param")
    per_class = {}
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            per_class[str(c)] = {k: round(float(scores[k][mask].mean()), 4) for k in keys} | {"count": int(mask.sum())}
    overall = {k: round(float(scores[k].mean()), 4) for k in keys} if len(labels) else {}
    return {"overall": overall, "per_class": per_class}
