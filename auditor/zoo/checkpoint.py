"""Pickle-free torch checkpoints (a state dict as ``.npz``) for the zoo's intermediate models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def save_state(model: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_state(model: nn.Module, path: Path) -> nn.Module:
    with np.load(path, allow_pickle=False) as data:
        state = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    model.load_state_dict(state)
    return model
