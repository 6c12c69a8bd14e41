"""Stabilized model inversion (SMI): synthesize samples of every class from the suspect model.

Default method (``ParticleInversion`` with stability on): one latent per candidate sample of a
pretrained generator. Each latent starts at its own draw from the generator's prior, picked among
prior draws for how typical the model finds it of its class, and is moved by a few steps of the
bi-level objective

    L_i = CE(f_{theta+dtheta*}(x_i + dx*), c_i) + lambda_id * CE(f_theta(x_i), c_i)
          + lambda_d * softplus(-D(G(z_i))),    x_i = adapter(G(z_i)),

until its prediction survives the inner worst cases (early stopping), with z_i kept in the
prior's typical set. The samples of a class are as diverse as the prior draws they start from:
nothing pulls them together. Near-duplicates are dropped by the stability filter.

Ablation ``method="gaussian"`` (distributional inversion): per class c a Gaussian over the latent
space, q_c = N(mu_c, diag(sigma_c^2)), optimized by

    L = CE(f_{theta+dtheta*}(x + dx*), c) + lambda_id * CE(f_theta(x), c)
        + lambda_d * softplus(-D(G(z))) - lambda_h * mean(log sigma_c)
        - lambda_div * mean pairwise distance within the class + lambda_z * |mu_c|^2,
    x = adapter(G(z)), z = mu_c + sigma_c * eps,

In both, the inner maximizations are one ascent step each: dtheta* is an adversarial weight
perturbation relative to each layer's norm, dx* an FGSM step. The candidates are then scored for
stability, and the unstable ones are filtered out. The Gaussian collapses each class to one
image with small variations (docs/inversion.md): a diversity term cannot hold it apart.

Ablations: ``stability=False`` (plain generative inversion) and ``PixelInversion`` (no generator:
pixels optimized directly with total-variation and norm priors).
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from auditor.model import Classifier

from .stability import (StabilityConfig, ascent_step, named_trainable, stability_index, stability_scores, summarize, worst_case_input,
                        worst_case_params)
from .diversity import DUPLICATE_CORRELATION, pixel_diversity, thumbnails
from .synth import SynthSet, quantize

_LOG = logging.getLogger(__name__)
INVERSION_METHODS = ("particles", "gaussian")
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class InversionConfig:
    per_class: int = 250  # samples kept per class
    method: str = "particles"  # "particles": one latent per sample; "gaussian": one latent Gaussian per class (ablation)
    particle_steps: int = 8  # most optimization steps a particle takes before it stops (particles)
    pool_factor: float = 2.0  # prior draws scored per particle to pick the starts (particles)
    particle_lr: float = 0.1  # Adam step on each particle's latent (particles)
    particle_batch: int = 250  # particles optimized together (particles)
    done_loss: float = 0.3  # a particle stops once its worst-case loss is below this (particles)
    steps: int = 200  # optimization steps of the class Gaussians (gaussian)
    batch_per_class: int = 8  # samples drawn per class per step (gaussian)
    lr: float = 0.1  # Adam on mu and log sigma (gaussian)
    stability: bool = True  # the bi-level terms; False = plain generative inversion (ablation)
    rho: float = 0.005  # inner worst-case parameter radius, relative to each layer's norm
    eps: float = 2 / 255  # inner worst-case input radius (L-inf, FGSM)
    lambda_id: float = 1.0  # weight of the unperturbed classification loss
    lambda_d: float = 0.1  # weight of the discriminator's realism prior
    lambda_h: float = 0.02  # entropy of q_c (gaussian)
    lambda_div: float = 0.5  # within-class pairwise distance of the samples (gaussian)
    lambda_z: float = 0.001  # keeps mu near the prior's typical set (gaussian)
    init_sigma: float = 1.0  # starting sigma of q_c (gaussian)
    warm_start: int = 1000  # prior samples scored to pick each class's starting mean (gaussian; 0: random)
    oversample: float = 1.2  # candidates per kept sample, before the stability filter
    min_stability: float = 0.75  # candidates below this stability index (0..1) are dropped
    seed: int = 0
    eval_stability: StabilityConfig = field(default_factory=StabilityConfig)

    def to_json(self) -> dict:
        data = asdict(self)
        data["eval_stability"] = self.eval_stability.to_json()
        return data


class Inverter(ABC):
    """Common interface of inversion methods: a model in, a ``SynthSet`` out."""

    name: str = "base"

    def __init__(self, config: InversionConfig = InversionConfig()) -> None:
        self.config = config

    @abstractmethod
    def optimize(self, classifier: Classifier, progress: Progress | None) -> dict:
        """Fit the method's search variables; returns training figures."""

    @abstractmethod
    def draw(self, classifier: Classifier, n_per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate images (N, C, H, W) in [0, 1] and their intended labels."""

    def run(self, classifier: Classifier, progress: Progress | None = None) -> SynthSet:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        started = time.perf_counter()
        was_training = classifier.training
        classifier.eval()
        requires = {n: p.requires_grad for n, p in classifier.named_parameters()}
        try:
            fit = self.optimize(classifier, progress)
            fit_time = time.perf_counter() - started
            generator = torch.Generator().manual_seed(cfg.seed + 1)
            n_candidates = max(cfg.per_class, int(math.ceil(cfg.per_class * cfg.oversample)))
            images, labels = self.draw(classifier, n_candidates, generator)
            images = quantize(images)
            if progress:
                progress(0, 1, "scoring stability")
            scores = stability_scores(classifier, images, labels, cfg.eval_stability, seed=cfg.seed)
            kept_idx, counts = _filter(scores, labels, classifier.num_classes, cfg.per_class, cfg.min_stability,
                                       thumbnails(images))
            synth = SynthSet(images[kept_idx], labels[kept_idx], {k: v[kept_idx] for k, v in scores.items()})
        finally:
            classifier.train(was_training)
            for name, p in classifier.named_parameters():
                p.requires_grad_(requires[name])
        synth.summary = {
            "method": self.name,
            "config": cfg.to_json(),
            "fit": fit,
            "candidates": summarize(scores, labels, classifier.num_classes),
            "kept": summarize(synth.scores, synth.labels, classifier.num_classes),
            "counts": counts,
            "diversity": pixel_diversity(synth.images01, synth.labels, classifier.num_classes),
            "seconds": {"optimize": round(fit_time, 2), "total": round(time.perf_counter() - started, 2)},
        }
        return synth


def _filter(scores: dict[str, torch.Tensor], labels: torch.Tensor, num_classes: int, per_class: int,
            min_stability: float, features: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Per class: drop candidates not classified as intended or below the stability threshold,
    then keep the ``per_class`` most stable (ties broken by confidence), passing over any
    candidate that near-duplicates one already kept (thumbnail ``features``, see
    ``diversity.thumbnails``). If too few pass, the best of the rest fill up, and the shortfall
    is reported in the counts."""
    index = stability_index(scores)
    rank = index + 1e-3 * scores["confidence"]
    passing = (index >= min_stability) & (scores["margin"] > 0)
    kept, counts = [], {}
    for c in range(num_classes):
        idx = torch.nonzero(labels == c)[:, 0]
        order = idx[torch.argsort(rank[idx], descending=True, stable=True)].tolist()
        passed = [i for i in order if passing[i]]
        chosen, duplicates = _without_duplicates(passed, features, per_class)
        if len(chosen) < per_class:
            taken = set(chosen)
            chosen += [i for i in order if i not in taken][: per_class - len(chosen)]
        kept += chosen
        counts[str(c)] = {"candidates": len(idx), "passed": len(passed), "duplicates": duplicates,
                          "kept": len(chosen)}
    return torch.tensor(sorted(kept), dtype=torch.long), counts


def _without_duplicates(order: list[int], features: torch.Tensor | None, limit: int) -> tuple[list[int], int]:
    """The first ``limit`` of ``order`` whose thumbnail correlation with every earlier choice stays
    below ``DUPLICATE_CORRELATION``; also how many were passed over."""
    if features is None or not order:
        return order[:limit], 0
    candidates = features[order]
    dim = candidates.shape[1]
    positions: list[int] = []
    duplicates = 0
    for position in range(len(order)):
        if len(positions) == limit:
            break
        if positions:
            correlation = candidates[positions] @ candidates[position] / dim
            if float(correlation.max()) >= DUPLICATE_CORRELATION:
                duplicates += 1
                continue
        positions.append(position)
    return [order[p] for p in positions], duplicates


def _stability_loss(classifier: Classifier, x: torch.Tensor, y: torch.Tensor, cfg: InversionConfig,
                    reduction: str = "mean") -> torch.Tensor:
    """Classification loss at the inner worst case (weights and input), gradients to x only."""
    delta = worst_case_input(classifier, x, y, cfg.eps)
    params = worst_case_params(classifier, x.detach(), y, cfg.rho)
    logits = functional_call(classifier, params, ((x + delta).clamp(0, 1),), strict=False)
    return F.cross_entropy(logits, y, reduction=reduction)


def _clean_and_worst_losses(classifier: Classifier, x: torch.Tensor, y: torch.Tensor,
                            cfg: InversionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample clean loss and loss at the inner worst case (weights and input).

    One forward pass serves three purposes: the clean loss, and the gradients that give the
    worst-case input (FGSM) and the worst-case weights (one AWP step), as ``worst_case_input`` and
    ``worst_case_params`` define them (``cross_entropy``'s sum has their mean's direction)."""
    params = named_trainable(classifier)
    clean = F.cross_entropy(classifier(x), y, reduction="none")
    grads = torch.autograd.grad(clean.sum(), [x, *params.values()], retain_graph=True, allow_unused=True)
    delta = cfg.eps * grads[0].detach().sign()
    perturbed = ascent_step(params, grads[1:], cfg.rho)
    logits = functional_call(classifier, perturbed, ((x + delta).clamp(0, 1),), strict=False)
    return clean, F.cross_entropy(logits, y, reduction="none")


def _pairwise_spread(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean within-class RMS distance between samples of one step (to be maximized)."""
    terms = []
    for c in range(num_classes):
        xc = x[y == c].flatten(1)
        if len(xc) > 1:
            d = torch.pdist(xc) / math.sqrt(xc.shape[1])
            terms.append(d.clamp(max=0.35).mean())  # capped: spread, not noise
    return torch.stack(terms).mean() if terms else x.new_zeros(())


class LatentInversion(Inverter):
    """Distributional inversion in a generator's latent space (SMI when ``stability`` is on)."""

    name = "smi-gaussian"

    def __init__(self, generator: nn.Module, discriminator: nn.Module | None, adapter: nn.Module,
                 config: InversionConfig = InversionConfig()) -> None:
        super().__init__(config)
        self.generator = generator.eval()
        self.discriminator = discriminator.eval() if discriminator is not None else None
        self.adapter = adapter
        self.z_dim = int(getattr(generator, "z_dim"))
        self.mu: torch.Tensor | None = None
        self.log_sigma: torch.Tensor | None = None
        if not config.stability:
            self.name = "no-stability"

    def images01(self, z: torch.Tensor) -> torch.Tensor:
        return self.adapter.images01(self.generator(z))

    def _frozen_on(self, device: torch.device) -> None:
        """Generator and discriminator on the model's device, with no weight gradients: only latents move."""
        self.generator.to(device).requires_grad_(False)
        if self.discriminator is not None:
            self.discriminator.to(device).requires_grad_(False)

    def optimize(self, classifier: Classifier, progress: Progress | None) -> dict:
        cfg = self.config
        device = classifier.device
        self._frozen_on(device)
        k = classifier.num_classes
        seed = torch.Generator().manual_seed(cfg.seed)
        mu = self._warm_start(classifier, seed, device).requires_grad_(True)
        log_sigma = torch.full((k, self.z_dim), math.log(cfg.init_sigma), device=device, requires_grad=True)
        optimizer = torch.optim.Adam([mu, log_sigma], lr=cfg.lr)
        y = torch.arange(k, device=device).repeat_interleave(cfg.batch_per_class)
        history: list[dict] = []
        for step in range(cfg.steps):
            eps = torch.randn(len(y), self.z_dim, generator=seed).to(device)
            z = mu[y] + log_sigma[y].exp() * eps
            generated = self.generator(z)
            x = self.adapter.images01(generated)
            ce = F.cross_entropy(classifier(x), y)
            loss = cfg.lambda_id * ce if cfg.stability else ce
            robust = torch.zeros((), device=device)
            if cfg.stability:
                robust = _stability_loss(classifier, x, y, cfg)
                loss = loss + robust
            realism = torch.zeros((), device=device)
            if self.discriminator is not None and cfg.lambda_d:
                realism = F.softplus(-self.discriminator(generated)).mean()
                loss = loss + cfg.lambda_d * realism
            spread = _pairwise_spread(x, y, k)
            loss = loss - cfg.lambda_div * spread - cfg.lambda_h * log_sigma.mean() + cfg.lambda_z * mu.pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                log_sigma.clamp_(math.log(0.05), math.log(2.0))
            if step % 10 == 0 or step == cfg.steps - 1:
                history.append({"step": step, "ce": round(ce.item(), 4), "robust_ce": round(robust.item(), 4),
                                "realism": round(realism.item(), 4), "spread": round(spread.item(), 4),
                                "sigma": round(log_sigma.detach().exp().mean().item(), 4)})
            if progress:
                progress(step + 1, cfg.steps, f"ce {ce.item():.3f}")
        self.mu, self.log_sigma = mu.detach(), log_sigma.detach()
        return {"history": history, "final": history[-1] if history else {}}

    @torch.no_grad()
    def _warm_start(self, classifier: Classifier, seed: torch.Generator, device: torch.device) -> torch.Tensor:
        """Each class starts at the prior sample the model finds most typical of it: hard classes
        (that random starts never reach within the step budget) start close instead."""
        k = classifier.num_classes
        best_score = torch.full((k,), float("-inf"), device=device)
        best_z = torch.randn(k, self.z_dim, generator=seed).to(device)
        for _ in range(max(1, self.config.warm_start // 250)):
            z = torch.randn(250, self.z_dim, generator=seed).to(device)
            log_probs = classifier(self.images01(z)).log_softmax(1)  # (250, k)
            score, index = log_probs.max(0)
            better = score > best_score
            best_score = torch.where(better, score, best_score)
            best_z[better] = z[index[better]]
        return best_z.clone()

    @torch.no_grad()
    def draw(self, classifier: Classifier, n_per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.mu is not None and self.log_sigma is not None, "optimize first"
        k = classifier.num_classes
        labels = torch.arange(k).repeat_interleave(n_per_class)
        images = []
        for start in range(0, len(labels), 500):
            y = labels[start : start + 500]
            eps = torch.randn(len(y), self.z_dim, generator=generator).to(self.mu.device)
            z = self.mu[y.to(self.mu.device)] + self.log_sigma[y.to(self.mu.device)].exp() * eps
            images.append(self.images01(z).cpu())
        return torch.cat(images), labels


class ParticleInversion(LatentInversion):
    """SMI with one latent per candidate sample (the default).

    Each class's particles start at the prior draws the model finds most typical of it (every
    draw goes to one class at most), so they begin as diverse as the prior. Each then takes at
    most ``particle_steps`` Adam steps on its own bi-level loss and stops as soon as its
    worst-case loss is below ``done_loss``: a particle moves only as far as it must to become a
    stable member of its class, and no term pulls particles of a class towards each other.
    Latents are projected back into the prior's typical set (norm at most sqrt(d) + 3) after
    every step, where the generator was trained to produce images."""

    name = "smi"

    def __init__(self, generator: nn.Module, discriminator: nn.Module | None, adapter: nn.Module,
                 config: InversionConfig = InversionConfig()) -> None:
        super().__init__(generator, discriminator, adapter, config)
        self.z: torch.Tensor | None = None
        self.z_labels: torch.Tensor | None = None

    def _candidates_per_class(self) -> int:
        return max(self.config.per_class, int(math.ceil(self.config.per_class * self.config.oversample)))

    def optimize(self, classifier: Classifier, progress: Progress | None) -> dict:
        cfg = self.config
        device = classifier.device
        self._frozen_on(device)
        seed = torch.Generator().manual_seed(cfg.seed)
        n = self._candidates_per_class()
        z, labels, start = self._starts(classifier, n, seed, device)
        radius = math.sqrt(self.z_dim) + 3.0
        chunks = list(range(0, len(z), cfg.particle_batch))
        total = len(chunks) * cfg.particle_steps
        steps_taken = torch.zeros(len(z), dtype=torch.long)
        first_loss, last_loss = [], []
        for number, begin in enumerate(chunks):
            end = min(begin + cfg.particle_batch, len(z))
            leaf = z[begin:end].clone().requires_grad_(True)
            y = labels[begin:end].to(device)
            optimizer = torch.optim.Adam([leaf], lr=cfg.particle_lr)
            active = torch.ones(end - begin, dtype=torch.bool, device=device)
            for step in range(cfg.particle_steps):
                rows = torch.nonzero(active)[:, 0]
                losses, worst = self._particle_losses(classifier, leaf[rows], y[rows])
                if step == 0:
                    first_loss.append(float(worst.detach().mean()))
                finished = worst.detach() < cfg.done_loss
                if progress:
                    progress(number * cfg.particle_steps + step + 1, total, f"{int(active.sum())} particles moving")
                if bool(finished.all()):
                    active[rows] = False
                    break
                frozen = leaf.detach().clone()
                # gradients to the latents only: the model's weights need none
                (leaf.grad,) = torch.autograd.grad(losses[~finished].sum().div(len(rows)), [leaf])
                optimizer.step()
                with torch.no_grad():
                    active[rows[finished]] = False
                    leaf[~active] = frozen[~active]  # Adam's momentum must not move a finished particle
                    norms = leaf.norm(dim=1, keepdim=True)
                    leaf.mul_((radius / norms).clamp(max=1.0))
                steps_taken[begin:end] += active.cpu().long()
            last_loss.append(float(worst.detach().mean()))
            z[begin:end] = leaf.detach()
        self.z, self.z_labels = z, labels.cpu()
        moved = (z - start).norm(dim=1) / start.norm(dim=1).clamp_min(1e-6)
        return {
            "particles": len(z),
            "prior_draws_scored": int(math.ceil(cfg.pool_factor * len(z))),
            "steps_taken": {"mean": round(float(steps_taken.float().mean()), 3),
                            "at_limit": round(float((steps_taken >= cfg.particle_steps).float().mean()), 4)},
            "relative_move": round(float(moved.mean()), 4),
            "worst_case_loss": {"first": round(sum(first_loss) / len(first_loss), 4),
                                "last": round(sum(last_loss) / len(last_loss), 4)},
        }

    def _particle_losses(self, classifier: Classifier, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per particle: the loss to minimize and the worst-case loss that decides when it stops."""
        cfg = self.config
        generated = self.generator(z)
        x = self.adapter.images01(generated)
        if cfg.stability:
            clean, worst = _clean_and_worst_losses(classifier, x, y, cfg)
            loss = cfg.lambda_id * clean + worst
        else:
            worst = loss = F.cross_entropy(classifier(x), y, reduction="none")
        if self.discriminator is not None and cfg.lambda_d:
            loss = loss + cfg.lambda_d * F.softplus(-self.discriminator(generated)).flatten()
        return loss, worst

    @torch.no_grad()
    def _starts(self, classifier: Classifier, n_per_class: int, seed: torch.Generator,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n_per_class`` distinct prior draws per class, each among the most typical of its class.

        Classes the prior rarely produces pick first, so that a draw two classes want goes to
        the one with fewer good draws."""
        k = classifier.num_classes
        pool_size = max(int(math.ceil(self.config.pool_factor * n_per_class * k)), n_per_class * k)
        pool, scores = [], []
        for begin in range(0, pool_size, 500):
            z = torch.randn(min(500, pool_size - begin), self.z_dim, generator=seed).to(device)
            pool.append(z)
            scores.append(classifier(self.images01(z)).log_softmax(1))
        pool_z, log_probs = torch.cat(pool), torch.cat(scores)
        taken = torch.zeros(len(pool_z), dtype=torch.bool, device=device)
        ranked = log_probs.sort(0, descending=True).values[n_per_class - 1]
        chosen: dict[int, torch.Tensor] = {}
        for c in torch.argsort(ranked).tolist():
            score = log_probs[:, c].masked_fill(taken, float("-inf"))
            index = torch.argsort(score, descending=True, stable=True)[:n_per_class]
            taken[index] = True
            chosen[c] = index
        order = torch.cat([chosen[c] for c in range(k)])
        labels = torch.arange(k, device=device).repeat_interleave(n_per_class)
        start = pool_z[order].clone()
        return start.clone(), labels, start

    @torch.no_grad()
    def draw(self, classifier: Classifier, n_per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.z is not None and self.z_labels is not None, "optimize first"
        images = [self.images01(self.z[begin : begin + 500]).cpu() for begin in range(0, len(self.z), 500)]
        return torch.cat(images), self.z_labels


@dataclass(frozen=True)
class PixelConfig:
    # Adam updates each image receives. On cifar10_badnets (25 per class) cross-entropy was 0.05 after
    # 10, 0.008 after 20 and 0.001 after 60, every kept sample fully stable at all three: 20 is a
    # third of the cost (757-995 s per CIFAR-10 model at 250 per class on a shared core) at no loss
    steps_per_sample: int = 20
    batch: int = 250
    lr: float = 0.1
    lambda_tv: float = 0.05  # total variation prior
    lambda_l2: float = 0.01  # norm prior (towards mid-grey)


class PixelInversion(Inverter):
    """Ablation: no generator. Images are optimized directly (sigmoid-parameterized pixels) with
    total-variation and norm priors, DeepInversion-like without BN statistics (folded ONNX models
    have none). The stability terms apply when ``config.stability`` is on."""

    name = "pixels"

    def __init__(self, image_shape: tuple[int, int, int], config: InversionConfig = InversionConfig(),
                 pixel: PixelConfig = PixelConfig()) -> None:
        super().__init__(config)
        self.image_shape = image_shape
        self.pixel = pixel
        self.pool: torch.Tensor | None = None
        self.pool_labels: torch.Tensor | None = None

    def optimize(self, classifier: Classifier, progress: Progress | None) -> dict:
        cfg, px = self.config, self.pixel
        device = classifier.device
        k = classifier.num_classes
        n_per_class = max(cfg.per_class, int(math.ceil(cfg.per_class * cfg.oversample)))
        seed = torch.Generator().manual_seed(cfg.seed)
        labels = torch.arange(k).repeat_interleave(n_per_class)
        params = (torch.randn(len(labels), *self.image_shape, generator=seed) * 0.5).to(device)
        params.requires_grad_(True)
        optimizer = torch.optim.Adam([params], lr=px.lr)
        batches = (len(labels) + px.batch - 1) // px.batch
        total = batches * px.steps_per_sample
        history = []
        step = 0
        for epoch in range(px.steps_per_sample):
            order = torch.randperm(len(labels), generator=seed)
            for start in range(0, len(labels), px.batch):
                idx = order[start : start + px.batch].to(device)
                y = labels.to(device)[idx]
                x = torch.sigmoid(params[idx])
                ce = F.cross_entropy(classifier(x), y)
                loss = ce
                if cfg.stability:
                    loss = cfg.lambda_id * ce + _stability_loss(classifier, x, y, cfg)
                tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
                loss = loss + px.lambda_tv * tv + px.lambda_l2 * (x - 0.5).pow(2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if progress:
                    progress(step, total, f"ce {ce.item():.3f}")
            history.append({"epoch": epoch, "ce": round(ce.item(), 4), "tv": round(tv.item(), 4)})
        self.pool = torch.sigmoid(params.detach()).cpu()
        self.pool_labels = labels
        return {"history": history[:: max(1, len(history) // 20)], "final": history[-1] if history else {}}

    def draw(self, classifier: Classifier, n_per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.pool is not None and self.pool_labels is not None, "optimize first"
        return self.pool, self.pool_labels


def make_inverter(
    classifier: Classifier,
    config: InversionConfig = InversionConfig(),
    pixels: bool = False,
    generator: str | nn.Module | None = None,
    use_discriminator: bool = True,
) -> Inverter:
    """The inverter for a classifier: SMI by default, ablations by flag."""
    if pixels:
        return PixelInversion(classifier.spec.image_shape, config)
    from auditor.generators import DEFAULT_GENERATOR, adapter_for, get_discriminator, load_generator

    name = generator if generator is not None else DEFAULT_GENERATOR
    G = name if isinstance(name, nn.Module) else load_generator(name)
    D = None
    if use_discriminator and isinstance(name, str) and name == DEFAULT_GENERATOR:
        D = get_discriminator(name)
    if config.method not in INVERSION_METHODS:
        raise ValueError(f"unknown inversion method {config.method!r}; choose one of {', '.join(INVERSION_METHODS)}")
    inverter = ParticleInversion if config.method == "particles" else LatentInversion
    return inverter(G, D, adapter_for(G, classifier.spec), config)


def invert(classifier: Classifier, config: InversionConfig = InversionConfig(), pixels: bool = False,
           generator: str | nn.Module | None = None, progress: Progress | None = None) -> SynthSet:
    """Synthesize ``config.per_class`` stable samples per class from the classifier alone."""
    return make_inverter(classifier, config, pixels, generator).run(classifier, progress)


def with_overrides(config: InversionConfig, **overrides) -> InversionConfig:
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
