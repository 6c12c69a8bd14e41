"""What a classifier expects at its input and produces at its output.

A ``ModelSpec`` makes preprocessing explicit (as foolbox's model wrapper does): every tool in
this project works on images in [0, 1], NCHW, and converts them to the model's own input with
:meth:`ModelSpec.to_model_input`, so that value range, external normalization and layout are
never guessed twice.

Derivation order: values read from the ONNX file (shapes, a baked-in normalization, a Softmax
head), then ``metadata_props`` written by the model's publisher, then explicit overrides.
Recognised metadata keys: ``input_range`` ("0,1" or "0,255"), ``mean`` and ``std`` (the
normalization the *caller* must apply, comma-separated or JSON), ``layout`` ("NCHW"/"NHWC"),
``class_names`` (JSON list or comma-separated).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

OUTPUT_KINDS = ("logits", "probabilities", "log_probabilities")


@dataclass(frozen=True)
class ModelSpec:
    input_name: str
    output_name: str
    channels: int
    height: int
    width: int
    num_classes: int
    layout: str = "NCHW"
    batch: int | None = None  # None: dynamic batch axis
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None  # applied by the caller, before the model
    std: tuple[float, ...] | None = None
    baked_normalization: dict[str, Any] | None = None  # found inside the graph (informational)
    output_kind: str = "logits"
    class_names: tuple[str, ...] | None = None
    sources: dict[str, str] = field(default_factory=dict)  # field -> "graph" | "metadata" | "override" | "default"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the tools work on."""
        return (self.channels, self.height, self.width)

    def to_model_input(self, images01: Any) -> Any:
        """Images in [0, 1], NCHW (numpy or torch) -> the tensor the model's input expects."""
        lo, hi = self.value_range
        x = images01 * (hi - lo) + lo if (lo, hi) != (0.0, 1.0) else images01
        if self.mean is not None or self.std is not None:
            mean = _broadcastable(self.mean or (0.0,) * self.channels, x)
            std = _broadcastable(self.std or (1.0,) * self.channels, x)
            x = (x - mean) / std
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1) if hasattr(x, "permute") else x.transpose(0, 2, 3, 1)
        return x

    def with_overrides(self, **overrides: Any) -> "ModelSpec":
        """A copy with the given fields replaced (None values are ignored)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        sources = dict(self.sources)
        sources.update({k: "override" for k in given})
        return replace(self, sources=sources, **given)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_shape"] = list(self.image_shape)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelSpec":
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("value_range", "mean", "std", "class_names"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def _broadcastable(values: Sequence[float], like: Any) -> Any:
    if hasattr(like, "new_tensor"):
        return like.new_tensor(list(values)).view(1, -1, 1, 1)
    import numpy as np

    return np.asarray(values, dtype=np.float32).reshape(1, -1, 1, 1)


def parse_float_list(text: str) -> tuple[float, ...]:
    """'0.5,0.5,0.5' or '[0.5, 0.5, 0.5]' -> (0.5, 0.5, 0.5)."""
    text = text.strip()
    values = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
    return tuple(float(v) for v in values)


def parse_name_list(text: str) -> tuple[str, ...]:
    text = text.strip()
    if text.startswith("["):
        return tuple(str(v) for v in json.loads(text))
    return tuple(v.strip() for v in text.split(",") if v.strip())
