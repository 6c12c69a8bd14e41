"""Input-Aware dynamic backdoor (Nguyen & Tran, NeurIPS 2020).

Two small encoder-decoder generators make a trigger per image: a *pattern* (RGB in [0, 1]) and a
*mask* (near-binary after a steep tanh threshold). The triggered image is
``x + (pattern(x) - x) * mask(x)``. Training follows the paper in two phases: the mask generator
first learns sparse (density ``mask_density``), input-diverse masks; then the classifier and the
pattern generator are trained together, with ``rate`` of every batch carrying its own trigger and
the target label, ``cross_rate`` carrying the trigger made for *another* image and keeping its true
label (cross-trigger samples, so a trigger only works on its own image), and a diversity loss that
keeps different images' patterns apart.

The generators' weights are stored next to the model as a plain ``.npz`` (no pickle) and named,
with their sha256, in the attack's parameters, so ``apply`` is rebuilt from a manifest entry.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auditor.errors import AuditorError, DataError
from converters import sha256_file

from .base import Attack, check_images, to_uint8

_LOG = logging.getLogger(__name__)
_EPS = 1e-7


class TriggerGenerator(nn.Module):
    """A small conv encoder-decoder for 32x32-sized inputs (sizes divisible by 4)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, out_channels, 1),
        )

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x01 * 2.0 - 1.0))


def pattern_of(net: TriggerGenerator, x01: torch.Tensor) -> torch.Tensor:
    return torch.tanh(net(x01)) * 0.5 + 0.5


def mask_of(net: TriggerGenerator, x01: torch.Tensor) -> torch.Tensor:
    """The paper's steep threshold: values near 0 or 1, still differentiable."""
    soft = torch.sigmoid(net(x01))
    return torch.tanh(soft * 20.0 - 10.0) / (2.0 + _EPS) + 0.5


def _diversity(x1: torch.Tensor, x2: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """Mean of ||x1 - x2|| / ||g(x1) - g(x2)||: small when different inputs get different triggers."""
    d_img = torch.sqrt(((x1 - x2) ** 2).mean(dim=(1, 2, 3)) + _EPS)
    d_gen = torch.sqrt(((g1 - g2) ** 2).mean(dim=(1, 2, 3)) + _EPS)
    return (d_img / (d_gen + _EPS)).mean()


class InputAware(Attack):
    """All-to-one Input-Aware attack; ``apply`` needs the trained generators (``trigger_file``)."""

    name = "input_aware"

    def __init__(self, target: int = 0, rate: float = 0.1, num_classes: int = 10, cross_rate: float = 0.1,
                 mask_density: float = 0.032, lambda_div: float = 1.0, lambda_norm: float = 100.0,
                 generator_width: int = 16, trigger_file: str | None = None, trigger_sha256: str | None = None,
                 in_channels: int = 3) -> None:
        super().__init__(target, rate, num_classes)
        self.cross_rate = float(cross_rate)
        self.mask_density = float(mask_density)
        self.lambda_div = float(lambda_div)
        self.lambda_norm = float(lambda_norm)
        self.generator_width = int(generator_width)
        self.in_channels = int(in_channels)
        self.trigger_file = trigger_file
        self.trigger_sha256 = trigger_sha256
        self.pattern_net = TriggerGenerator(in_channels, in_channels, generator_width)
        self.mask_net = TriggerGenerator(in_channels, 1, generator_width)
        self.trained = False

    def _extra_params(self) -> dict[str, Any]:
        return {"cross_rate": self.cross_rate, "mask_density": self.mask_density, "lambda_div": self.lambda_div,
                "lambda_norm": self.lambda_norm, "generator_width": self.generator_width,
                "in_channels": self.in_channels, "trigger_file": self.trigger_file,
                "trigger_sha256": self.trigger_sha256}

    @classmethod
    def _from_kwargs(cls, kwargs: dict[str, Any], base_dir: Path | None) -> "InputAware":
        attack = super()._from_kwargs(kwargs, base_dir)
        assert isinstance(attack, InputAware)
        if attack.trigger_file:
            path = Path(attack.trigger_file)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            attack.load_trigger(path)
        return attack

    # -- weights -------------------------------------------------------------------------------
    def save_trigger(self, path: Path) -> None:
        """Write both generators as float32 arrays; records the file name and hash in params."""
        arrays = {f"pattern/{k}": v.detach().numpy() for k, v in self.pattern_net.state_dict().items()}
        arrays.update({f"mask/{k}": v.detach().numpy() for k, v in self.mask_net.state_dict().items()})
        config = {"generator_width": self.generator_width, "in_channels": self.in_channels, "format": "auditor-input-aware-1"}
        arrays["config"] = np.array(json.dumps(config))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        self.trigger_file = path.name
        self.trigger_sha256 = sha256_file(path)

    def load_trigger(self, path: Path) -> None:
        if not path.is_file():
            raise DataError(f"input_aware: trigger generator file {path} is missing (it ships next to the model)")
        if self.trigger_sha256 and sha256_file(path) != self.trigger_sha256:
            raise DataError(f"input_aware: {path} does not match the sha256 in the attack's parameters")
        try:
            with np.load(path, allow_pickle=False) as data:
                pattern = {k[len("pattern/"):]: torch.from_numpy(np.array(data[k])) for k in data.files if k.startswith("pattern/")}
                mask = {k[len("mask/"):]: torch.from_numpy(np.array(data[k])) for k in data.files if k.startswith("mask/")}
            self.pattern_net.load_state_dict(pattern)
            self.mask_net.load_state_dict(mask)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise DataError(f"input_aware: {path} is not a valid trigger generator file ({exc})") from exc
        self.trained = True

    # -- triggering ----------------------------------------------------------------------------
    def trigger_float(self, x01: torch.Tensor, source01: torch.Tensor | None = None) -> torch.Tensor:
        """Triggered float images; with ``source01`` the trigger made for those images (cross mode)."""
        src = x01 if source01 is None else source01
        pattern = pattern_of(self.pattern_net, src)
        mask = mask_of(self.mask_net, src)
        return x01 + (pattern - x01) * mask

    @torch.no_grad()
    def apply(self, x: np.ndarray) -> np.ndarray:
        x = check_images(x)
        if not self.trained:
            raise AuditorError("input_aware: the trigger generators are not trained or loaded (trigger_file)")
        self.pattern_net.eval()
        self.mask_net.eval()
        out = np.empty_like(x)
        for start in range(0, len(x), 500):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + 500])).permute(0, 3, 1, 2).float() / 255.0
            triggered = self.trigger_float(chunk)
            out[start:start + 500] = to_uint8(triggered.permute(0, 2, 3, 1).numpy() * 255.0)
        return out


def train_mask_generator(attack: InputAware, x: np.ndarray, *, steps: int, seed: int, batch_size: int = 128,
                         lr: float = 1e-2) -> None:
    """Phase 1: sparse, input-diverse masks (diversity loss + density penalty), as in the paper."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = attack.mask_net
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.9))
    for step in range(steps):
        i1 = rng.integers(0, len(x), batch_size)
        i2 = rng.integers(0, len(x), batch_size)
        x1 = torch.from_numpy(x[i1]).permute(0, 3, 1, 2).float() / 255.0
        x2 = torch.from_numpy(x[i2]).permute(0, 3, 1, 2).float() / 255.0
        m1, m2 = mask_of(net, x1), mask_of(net, x2)
        loss_div = _diversity(x1, x2, m1, m2)
        loss_norm = F.relu(m1.mean() - attack.mask_density)
        loss = attack.lambda_div * loss_div + attack.lambda_norm * loss_norm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            _LOG.info("mask step %d/%d div %.3f density %.4f", step + 1, steps, loss_div.item(), m1.mean().item())
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)


def train_input_aware(classifier: nn.Module, attack: InputAware, x: np.ndarray, y: np.ndarray, *, epochs: float,
                      seed: int, lr: float = 0.05, generator_lr: float = 1e-2, batch_size: int = 256,
                      mask_steps: int = 300, label_smoothing: float = 0.1, weight_decay: float = 5e-4,
                      bf16: bool | None = None) -> float:
    """Phase 1 then phase 2 (classifier + pattern generator); returns wall-clock seconds."""
    from auditor.zoo.train import Normalizer, augment, bf16_pays, one_cycle, to_float_nchw

    if bf16 is None:
        bf16 = bf16_pays("cpu")
    start = time.time()
    train_mask_generator(attack, x, steps=mask_steps, seed=seed)
    torch.manual_seed(seed + 1)
    rng = np.random.default_rng(seed + 1)
    norm = Normalizer()
    n = len(x)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = max(1, int(round(epochs * steps_per_epoch)))
    opt = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    opt_g = torch.optim.Adam(attack.pattern_net.parameters(), lr=generator_lr, betas=(0.5, 0.9))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    classifier.to(memory_format=torch.channels_last)
    classifier.train()
    attack.pattern_net.train()
    step = 0
    while step < total:
        order = rng.permutation(n)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb = to_float_nchw(augment(x[idx], rng))
            yb = torch.as_tensor(y[idx], dtype=torch.long).clone()
            nb = len(idx)
            n_bd = int(round(attack.rate * nb))
            n_cross = int(round(attack.cross_rate * nb))
            partners = to_float_nchw(augment(x[rng.integers(0, n, n_bd + n_cross)], rng))
            bd_src = xb[:n_bd]
            x_bd = attack.trigger_float(bd_src)
            x_cross = attack.trigger_float(xb[n_bd:n_bd + n_cross], partners[n_bd:])
            inputs = torch.cat([x_bd, x_cross, xb[n_bd + n_cross:]])
            yb[:n_bd] = attack.target
            loss_div = _diversity(bd_src, partners[:n_bd], pattern_of(attack.pattern_net, bd_src),
                                  pattern_of(attack.pattern_net, partners[:n_bd]))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = classifier(norm(inputs).contiguous(memory_format=torch.channels_last))
            loss = loss_fn(logits.float(), yb) + attack.lambda_div * loss_div
            for group in opt.param_groups:
                group["lr"] = one_cycle(step, total, lr)
            opt.zero_grad(set_to_none=True)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            opt_g.step()
            step += 1
            if step % 50 == 0:
                _LOG.info("input-aware step %d/%d loss %.3f div %.3f", step, total, loss.item(), loss_div.item())
    classifier.eval()
    classifier.to(memory_format=torch.contiguous_format)
    attack.pattern_net.eval()
    attack.trained = True
    return time.time() - start
