"""Registry of pretrained generators, loaded offline from package data (in the manner of timm's).

A generator entry names an architecture, a configuration and two weight files that ship inside
the package (``auditor/generators/weights``): ``<name>.G.npz`` (generator, EMA weights) and
``<name>.D.npz`` (discriminator, spectral norm folded in). Weights are plain numpy arrays read
with ``allow_pickle=False``: loading runs no code from the file.

This module must not import ``auditor.data``: the audit path imports it on machines that have
no data sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import torch
from torch import nn

from auditor.errors import AuditorError

from .architectures import ARCHITECTURES

DEFAULT_GENERATOR = "tinyimagenet32-dcgan"
_WEIGHTS_PACKAGE = "auditor.generators.weights"

@dataclass(frozen=True)
class GeneratorEntry:
    """What the registry knows about a generator before loading it."""

    name: str
    description: str
    arch: str
    config: dict[str, Any]
    card: str = "card.json"  # model card file in the weights package
    output_range: tuple[float, float] = (-1.0, 1.0)
    tags: tuple[str, ...] = field(default_factory=tuple)

_REGISTRY: dict[str, GeneratorEntry] = {}

def register_generator(entry: GeneratorEntry) -> GeneratorEntry:
    """Add an entry (a plug-in may register its own generators shipped as package data)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"generator {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry

def list_generators() -> list[str]:
    """Registered names whose weights are present in the installed package."""
    return sorted(name for name in _REGISTRY if _weights_file(name, "G").is_file())

def generator_entry(name: str = DEFAULT_GENERATOR) -> GeneratorEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AuditorError(
            f"unknown generator {name!r}: choose one of {', '.join(sorted(_REGISTRY))} or pass a .onnx/.pt file"
        ) from None

def _weights_file(name: str, part: str) -> Any:
    return resources.files(_WEIGHTS_PACKAGE) / f"{name}.{part}.npz"

def _read_state(name: str, part: str) -> dict[str, torch.Tensor]:
    resource = _weights_file(name, part)
    if not resource.is_file():
        raise AuditorError(
            f"the weights of generator {name!r} ({name}.{part}.npz) are missing from the installed package; "
            "reinstall auditor or rebuild them (see `auditor generator info`)"
        )
    with resources.as_file(resource) as path, np.load(path, allow_pickle=False) as data:
        return {key: torch.from_numpy(np.array(data[key])) for key in data.files}

def _build(name: str, part: str, trainable: bool) -> nn.Module:
    entry = generator_entry(name)
    config_cls, gen_cls, disc_cls = ARCHITECTURES[entry.arch]
    config = config_cls.from_json(entry.config)
    module = gen_cls(config) if part == "G" else disc_cls(config)
    state = _read_state(name, part)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise AuditorError(f"the {part} weights of generator {name!r} do not match its architecture: {exc}") from exc
    module.eval()
    module.requires_grad_(trainable)
    module.registry_name = name  # type: ignore[assignment]
    return module

def get_generator(name: str = DEFAULT_GENERATOR, trainable: bool = False) -> nn.Module:
    """The pretrained generator: ``G(z)`` with z (N, G.z_dim) ~ N(0, I) -> (N, 3, 32, 32) in [-1, 1].

    Eval mode (batch norm uses its stored statistics, so each sample depends only on its own z)
    and frozen unless ``trainable``: the inversion optimizes latents, not the generator.
    """
    return _build(name, "G", trainable)

def get_discriminator(name: str = DEFAULT_GENERATOR, trainable: bool = False) -> nn.Module:
    """The matching discriminator: images (N, 3, 32, 32) in [-1, 1] -> realism logits (N,), higher = more real."""
    return _build(name, "D", trainable)

def generator_card(name: str = DEFAULT_GENERATOR) -> dict[str, Any]:
    """The model card (data, preprocessing, training, results, licence) as a dict."""
    entry = generator_entry(name)
    resource = resources.files(_WEIGHTS_PACKAGE) / entry.card
    if not resource.is_file():
        raise AuditorError(f"the model card {entry.card} of generator {name!r} is missing from the package")
    card = json.loads(resource.read_text(encoding="utf-8"))
    return card.get(name, card) if isinstance(card, dict) and name in card else card

def generator_card_markdown(name: str = DEFAULT_GENERATOR) -> str:
    """The human-readable model card (MODEL_CARD.md)."""
    resource = resources.files(_WEIGHTS_PACKAGE) / "MODEL_CARD.md"
    if not resource.is_file():
        return json.dumps(generator_card(name), indent=2)
    return resource.read_text(encoding="utf-8")

register_generator(
    GeneratorEntry(
        name=DEFAULT_GENERATOR,
        description="DCGAN (1.2M parameters, z_dim 128) trained on 55,000 Tiny-ImageNet 32x32 images, "
        "with its discriminator (0.66M)",
        arch="dcgan32",
        config={"arch": "dcgan32", "z_dim": 128, "ngf": 64, "ndf": 64, "image_size": 32, "channels": 3,
                "d_norm": "batch"},
        tags=("32x32", "rgb", "tinyimagenet", "out-of-distribution"),
    )
)
