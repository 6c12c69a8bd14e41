"""Stabilized model inversion: class-conditional samples from the suspect model alone."""

from .smi import InversionConfig, Inverter, LatentInversion, PixelConfig, PixelInversion, invert, make_inverter
from .stability import StabilityConfig, stability_scores, summarize
from .synth import SynthSet, save_class_grid

__all__ = [
    "InversionConfig", "Inverter", "LatentInversion", "PixelConfig", "PixelInversion", "StabilityConfig",
    "SynthSet", "invert", "make_inverter", "save_class_grid", "stability_scores", "summarize",
]
