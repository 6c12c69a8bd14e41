"""Pretrained image generators for stabilized model inversion, and the adapter to any classifier.

    G = get_generator()                 # bundled Tiny-ImageNet DCGAN, offline, z (N, 128) -> [-1, 1]
    D = get_discriminator()             # its realism prior: logits, higher = more real
    adapt = adapter_for(G, spec)        # G's output -> the classifier's input (size, channels, range)
    logits = classifier(adapt(G(z)))    # differentiable end to end

``load_generator(name_or_path)`` accepts a registry name or a user's ``.onnx``/TorchScript file.
Importing this package never imports ``auditor.data`` (the audit path must run without data).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .adapter import SpecAdapter, adapter_for, match_channels, resize, to_unit_range
from .registry import (
    DEFAULT_GENERATOR,
    GeneratorEntry,
    generator_card,
    generator_card_markdown,
    generator_entry,
    get_discriminator,
    get_generator,
    list_generators,
    register_generator,
)
from .user import WrappedGenerator, load_onnx_generator, load_torchscript_generator, load_user_generator


def load_generator(name_or_path: str | Path = DEFAULT_GENERATOR, z_dim: int | None = None,
                   output_range: tuple[float, float] | None = None) -> nn.Module:
    """A registry name, or a path to a user's generator file (``--generator`` on the command line)."""
    text = str(name_or_path)
    if text in list_generators() or not (Path(text).suffix or Path(text).exists()):
        return get_generator(text)
    return load_user_generator(text, z_dim, output_range or (-1.0, 1.0))


__all__ = [
    "DEFAULT_GENERATOR", "GeneratorEntry", "SpecAdapter", "WrappedGenerator", "adapter_for", "generator_card",
    "generator_card_markdown", "generator_entry", "get_discriminator", "get_generator", "list_generators",
    "load_generator", "load_onnx_generator", "load_torchscript_generator", "load_user_generator",
    "match_channels", "register_generator", "resize", "to_unit_range",
]
