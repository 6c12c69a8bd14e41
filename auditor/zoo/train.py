"""The training loop shared by every zoo model (clean, poisoned-set and WaNet noise-mode training).

Standard recipe for short CIFAR schedules: random crop (4 px reflect padding) and horizontal
flip, SGD with Nesterov momentum under a one-cycle (linear up, linear down) learning rate,
label smoothing, batch 256. Images stay uint8 until each batch is augmented, to keep memory
and copying low on a small CPU machine.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .arch import CIFAR10_MEAN, CIFAR10_STD

_LOG = logging.getLogger(__name__)

# (uint8 NHWC batch, labels, batch indices into the training set, rng) -> (uint8 NHWC batch, labels)
BatchHook = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def to_float_nchw(x_uint8_nhwc: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1]."""
    t = torch.as_tensor(np.ascontiguousarray(x_uint8_nhwc)) if isinstance(x_uint8_nhwc, np.ndarray) else x_uint8_nhwc
    return t.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


class Normalizer:
    """Per-channel (x - mean) / std on float NCHW batches in [0, 1]."""

    def __init__(self, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> None:
        self.mean = torch.tensor(list(mean)).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std)).view(1, -1, 1, 1)

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean) / self.std


def augment(x_uint8_nhwc: np.ndarray, rng: np.random.Generator, pad: int = 4, flip: bool = True) -> np.ndarray:
    """Random crop after reflect padding, and random horizontal flip, on a uint8 NHWC batch."""
    n, h, w, _ = x_uint8_nhwc.shape
    padded = np.pad(x_uint8_nhwc, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    rows = (dy[:, None] + np.arange(h))[:, :, None]
    cols = (dx[:, None] + np.arange(w))[:, None, :]
    if flip:
        flips = rng.random(n) < 0.5
        cols = np.where(flips[:, None, None], cols[:, :, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows, cols]


def one_cycle(step: int, total: int, peak: float, warmup: float = 0.25) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` of the run, then linear decay to zero."""
    up = max(1, int(total * warmup))
    if step < up:
        return peak * (step + 1) / up
    return peak * max(0.0, (total - step) / max(1, total - up))


def bf16_pays(device: str = "cpu") -> bool:
    """Whether bfloat16 autocast speeds training up on ``device``.

    On CUDA and on AVX-512 CPUs it roughly halves the time; on an AVX2-only CPU torch emulates
    bfloat16 and a ResNet-9 step became ten times slower (315 against 35 images/s, one thread).
    """
    if device.startswith("cuda"):
        return True
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def train_classifier(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: float,
    seed: int,
    batch_size: int = 256,
    lr: float = 0.2,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    warmup: float = 0.25,
    batch_hook: BatchHook | None = None,
    post_augment_hook: BatchHook | None = None,
    bf16: bool | None = None,
    normalizer: Normalizer | None = None,
    log_every: int = 50,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    device: str = "cpu",
    flip: bool = True,
    pad: int = 4,
) -> float:
    """Train in place; returns wall-clock seconds. ``epochs`` may be fractional (quick runs).

    ``batch_hook`` changes a batch before augmentation (poisoning as a data set would),
    ``post_augment_hook`` after it (WaNet warps augmented images, as its authors do).
    ``bf16`` runs the forward pass under bfloat16 autocast (default: where :func:`bf16_pays`); the
    weights stay float32 and every reported figure comes from the float32 export.
    ``device`` "cuda" trains on a GPU (augmentation stays in numpy on the CPU); the model comes back
    on the CPU either way, ready for export. ``flip`` and ``pad`` set the augmentation (no flips for
    digits).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    norm = normalizer or Normalizer()
    if bf16 is None:
        bf16 = bf16_pays(device)
    n = len(x)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = max(1, int(round(epochs * steps_per_epoch)))
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=lr, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(dev, memory_format=torch.channels_last)
    model.train()
    start = time.time()
    step = 0
    epoch = 0
    while step < total:
        order = rng.permutation(n)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            if batch_hook is not None:
                xb, yb = batch_hook(xb, yb, idx, rng)
            xb = augment(xb, rng, pad=pad, flip=flip)
            if post_augment_hook is not None:
                xb, yb = post_augment_hook(xb, yb, idx, rng)
            inputs = norm(to_float_nchw(xb)).to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            for group in opt.param_groups:
                group["lr"] = one_cycle(step, total, lr, warmup)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(inputs)
            loss = loss_fn(logits.float(), torch.as_tensor(yb, dtype=torch.long).to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if log_every and step % log_every == 0:
                _LOG.info("step %d/%d loss %.3f (%.0f img/s)", step, total, loss.item(),
                          step * batch_size / (time.time() - start))
        epoch += 1
        if on_epoch is not None:
            on_epoch(epoch, model)
    model.eval()
    model.to("cpu", memory_format=torch.contiguous_format)
    return time.time() - start


@torch.no_grad()
def predict(model: nn.Module, x_uint8_nhwc: np.ndarray, normalizer: Normalizer | None = None,
            batch_size: int = 500) -> np.ndarray:
    """Logits of the torch model (used during training; final figures come from onnxruntime)."""
    norm = normalizer or Normalizer()
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device  # also called mid-training, when the model may sit on a GPU
    outs = [model(norm(to_float_nchw(x_uint8_nhwc[i:i + batch_size])).to(dev)).float().cpu()
            for i in range(0, len(x_uint8_nhwc), batch_size)]
    model.train(was_training)
    return torch.cat(outs).numpy()
