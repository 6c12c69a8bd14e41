"""Clean accuracy, attack success rate and robust accuracy of an ONNX classifier, in onnxruntime.

We measure the file that would be deployed, not a torch module: images (uint8 NHWC) are mapped to
the model's own input by its ``ModelSpec`` (value range, caller-side normalization, layout) and
run through ``converters.runtime``.

* ACC: share of clean test images classified as their label.
* ASR: share of triggered test images classified as the attack's target label, over the images
  that count (non-target ones for all-to-one; all for all-to-all, target y+1 mod C).
* RA: share of those triggered images still classified as their true label.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from auditor.errors import DataError
from converters.runtime import create_session, run_session
from converters.spec import ModelSpec


@dataclass
class Evaluation:
    n_clean: int
    acc: float
    attack: str | None = None
    target: int | None = None
    n_attack: int = 0
    asr: float | None = None
    ra: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def to_model_input(spec: ModelSpec, x_uint8_nhwc: np.ndarray) -> np.ndarray:
    """uint8 NHWC images -> the float32 array the model's input expects."""
    if x_uint8_nhwc.ndim != 4 or x_uint8_nhwc.shape[-1] != spec.channels:
        raise DataError(f"images shaped {x_uint8_nhwc.shape} do not match the model's {spec.channels} channels")
    if x_uint8_nhwc.shape[1:3] != (spec.height, spec.width):
        raise DataError(f"images are {x_uint8_nhwc.shape[1]}x{x_uint8_nhwc.shape[2]}, the model takes "
                        f"{spec.height}x{spec.width}")
    x01 = x_uint8_nhwc.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(spec.to_model_input(x01), dtype=np.float32)


class OnnxClassifier:
    """An onnxruntime session plus the spec that says how to feed it."""

    def __init__(self, model: str | Path | bytes, spec: ModelSpec, device: str = "cpu") -> None:
        self.session = create_session(model, device=device)
        self.spec = spec
        batch = self.session.get_inputs()[0].shape[0]
        self.batch_size = batch if isinstance(batch, int) and batch > 0 else 500

    def logits(self, x_uint8_nhwc: np.ndarray) -> np.ndarray:
        return run_session(self.session, to_model_input(self.spec, x_uint8_nhwc), batch_size=self.batch_size)

    def predict(self, x_uint8_nhwc: np.ndarray) -> np.ndarray:
        return self.logits(x_uint8_nhwc).argmax(axis=1)


def evaluate(classifier: OnnxClassifier, x: np.ndarray, y: np.ndarray, attack: Any | None = None) -> Evaluation:
    """ACC on (x, y); with an attack also ASR and RA on the triggered images that count."""
    y = np.asarray(y, dtype=np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise DataError(f"evaluation data needs as many labels as images and at least one image ({len(x)}, {len(y)})")
    num_classes = classifier.spec.num_classes
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(f"labels span {y.min()}..{y.max()} but the model has {num_classes} classes")
    clean_pred = classifier.predict(x)
    result = Evaluation(n_clean=len(x), acc=float((clean_pred == y).mean()))
    if attack is None:
        return result
    keep = attack.attack_mask(y)
    xs, ys = x[keep], y[keep]
    result.attack = attack.name
    result.target = None if attack.all_to_all else attack.target
    result.n_attack = int(keep.sum())
    if result.n_attack == 0:
        raise DataError(f"no test image counts for the attack (all are of target class {attack.target})")
    triggered_pred = classifier.predict(attack.apply(xs))
    result.asr = float((triggered_pred == attack.target_label(ys)).mean())
    result.ra = float((triggered_pred == ys).mean())
    return result


def format_table(rows: list[tuple[str, Evaluation]]) -> str:
    """A plain-text table, one row per (label, evaluation)."""
    header = ("model", "ACC", "ASR", "RA", "clean n", "attacked n", "attack")
    lines = [header]
    for label, ev in rows:
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
        lines.append((label, pct(ev.acc), pct(ev.asr), pct(ev.ra), str(ev.n_clean), str(ev.n_attack or "-"),
                      "-" if ev.attack is None else f"{ev.attack}" + ("" if ev.target is None else f" -> {ev.target}")))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines)
