"""Stabilized model inversion (SMI): synthesize samples of every class from the suspect model.

Default method (``LatentInversion`` with stability on): per class c a Gaussian over the latent
space of a pretrained generator, q_c = N(mu_c, diag(sigma_c^2)) (distributional inversion, so
that one optimization yields as many samples as wanted), optimized by the bi-level objective

    L = CE(f_{theta+dtheta*}(x + dx*), c) + lambda_id * CE(f_theta(x), c)
        + lambda_d * softplus(-D(G(z))) - lambda_h * mean(log sigma_c)
        - lambda_div * mean pairwise distance within the class + lambda_z * |mu_c|^2,
    x = adapter(G(z)), z = mu_c + sigma_c * eps,

where the inner maximizations are one ascent step each: dtheta* is an adversarial weight
perturbation relative to each layer's norm, dx* an FGSM step. Samples are then drawn from q_c,
scored for stability, and the unstable ones are filtered out.

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

from .stability import StabilityConfig, stability_index, stability_scores, summarize, worst_case_input, worst_case_params
from .synth import SynthSet, quantize

_LOG = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class InversionConfig:
    per_class: int = 250  # samples kept per class (2,500 for CIFAR-10: the clean-data budget of defenses)
    steps: int = 200  # optimization steps of the latent distributions
    batch_per_class: int = 8  # samples drawn per class per step
    lr: float = 0.1  # Adam on mu and log sigma
    stability: bool = True  # the bi-level terms; False = plain generative inversion (ablation)
    rho: float = 0.005  # inner worst-case parameter radius, relative to each layer's norm (2.5x the test radius)
    eps: float = 2 / 255  # inner worst-case input radius (L-inf, FGSM; 2x the test radius)
    lambda_id: float = 1.0  # weight of the unperturbed classification loss
    lambda_d: float = 0.1  # discriminator realism prior
    lambda_h: float = 0.02  # entropy of q_c (keeps sigma from collapsing)
    lambda_div: float = 0.5  # within-class pairwise distance of the samples
    lambda_z: float = 0.001  # keeps mu near the prior's typical set
    init_sigma: float = 1.0
    warm_start: int = 1000  # prior samples scored to pick each class's starting mean (0: random start)
    oversample: float = 2.0  # candidates drawn per kept sample, before the stability filter
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
            kept_idx, counts = _filter(scores, labels, classifier.num_classes, cfg.per_class, cfg.min_stability)
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
            "diversity": diversity(synth.images01, synth.labels, classifier.num_classes),
            "seconds": {"optimize": round(fit_time, 2), "total": round(time.perf_counter() - started, 2)},
        }
        return synth


def _filter(scores: dict[str, torch.Tensor], labels: torch.Tensor, num_classes: int, per_class: int,
            min_stability: float) -> tuple[torch.Tensor, dict]:
    """Per class: drop candidates not classified as intended or below the stability threshold,
    then keep the ``per_class`` most stable (ties broken by confidence). If too few pass, the
    best of the rest fill up, and the shortfall is reported in the counts."""
    index = stability_index(scores)
    rank = index + 1e-3 * scores["confidence"]
    passing = (index >= min_stability) & (scores["margin"] > 0)
    kept, counts = [], {}
    for c in range(num_classes):
        idx = torch.nonzero(labels == c)[:, 0]
        order = idx[torch.argsort(rank[idx], descending=True, stable=True)].tolist()
        passed = {i for i in order if passing[i]}
        chosen = [i for i in order if i in passed][:per_class]
        if len(chosen) < per_class:
            taken = set(chosen)
            chosen += [i for i in order if i not in taken][: per_class - len(chosen)]
        kept += chosen
        counts[str(c)] = {"candidates": len(idx), "passed": len(passed), "kept": len(chosen)}
    return torch.tensor(sorted(kept), dtype=torch.long), counts


def diversity(images01: torch.Tensor, labels: torch.Tensor, num_classes: int, max_per_class: int = 100) -> dict:
    """Mean pairwise RMS pixel distance within each class (0 = collapsed to one image)."""
    per_class = {}
    for c in range(num_classes):
        x = images01[labels == c][:max_per_class].flatten(1)
        if len(x) < 2:
            continue
        d = torch.cdist(x, x) / math.sqrt(x.shape[1])
        n = len(x)
        per_class[str(c)] = round(float(d.sum() / (n * (n - 1))), 4)
    mean = round(sum(per_class.values()) / len(per_class), 4) if per_class else 0.0
    return {"mean": mean, "per_class": per_class}


def _stability_loss(classifier: Classifier, x: torch.Tensor, y: torch.Tensor, cfg: InversionConfig) -> torch.Tensor:
    """Classification loss at the inner worst case (weights and input), gradients to x only."""
    delta = worst_case_input(classifier, x, y, cfg.eps)
    params = worst_case_params(classifier, x.detach(), y, cfg.rho)
    return F.cross_entropy(functional_call(classifier, params, ((x + delta).clamp(0, 1),), strict=False), y)


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

    name = "smi"

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

    def optimize(self, classifier: Classifier, progress: Progress | None) -> dict:
        cfg = self.config
        device = classifier.device
        self.generator.to(device).requires_grad_(False)
        if self.discriminator is not None:
            self.discriminator.to(device).requires_grad_(False)
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
    return LatentInversion(G, D, adapter_for(G, classifier.spec), config)


def invert(classifier: Classifier, config: InversionConfig = InversionConfig(), pixels: bool = False,
           generator: str | nn.Module | None = None, progress: Progress | None = None) -> SynthSet:
    """Synthesize ``config.per_class`` stable samples per class from the classifier alone."""
    return make_inverter(classifier, config, pixels, generator).run(classifier, progress)


def with_overrides(config: InversionConfig, **overrides) -> InversionConfig:
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
