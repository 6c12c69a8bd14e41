"""The clean base checkpoint that backdoored zoo models are fine-tuned from.

Training eight networks from scratch does not fit two shared CPU cores, so backdoored models
start from one clean network trained with a seed that no clean zoo model uses (the clean zoo
models are therefore not their parents) and are then trained on the poisoned set. The manifest
records this as each model's ``init``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from auditor.data.locate import cache_dir

from .arch import build_arch
from .checkpoint import load_state, save_state
from .train import predict, train_classifier

_LOG = logging.getLogger(__name__)

BASE_ARCH = "resnet9-w16"
BASE_SEED = 1000
BASE_EPOCHS = 18
BASE_LR = 0.2


def base_path(arch: str = BASE_ARCH, seed: int = BASE_SEED, epochs: float = BASE_EPOCHS) -> Path:
    return cache_dir() / "zoo" / f"base-{arch}-seed{seed}-ep{epochs:g}.npz"


def ensure_base(x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, *,
                arch: str = BASE_ARCH, seed: int = BASE_SEED, epochs: float = BASE_EPOCHS, lr: float = BASE_LR,
                path: Path | None = None, device: str = "cpu"):
    """The base network, trained (and cached outside the repo) if it is not there yet."""
    path = path or base_path(arch, seed, epochs)
    model = build_arch(arch)
    if path.is_file():
        _LOG.info("using base checkpoint %s", path)
        return load_state(model, path)
    _LOG.info("training base %s seed %d for %g epochs", arch, seed, epochs)

    def report(epoch: int, net) -> None:
        if x_test is not None and (epoch % 3 == 0):
            acc = float((predict(net, x_test).argmax(1) == y_test).mean())
            _LOG.info("base epoch %d test acc %.4f", epoch, acc)

    start = time.time()
    train_classifier(model, x, y, epochs=epochs, seed=seed, lr=lr, on_epoch=report, device=device)
    _LOG.info("base trained in %.0f s", time.time() - start)
    save_state(model, path)
    return model
