"""Does the torch module compute what onnxruntime computes on the ONNX file?

Checked on random images in the model's input range (through the spec's preprocessing), at two
batch sizes, so that a batch size baked into the graph is caught. A static-batch ONNX file is
run in chunks of its own batch size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
import torch
from torch import nn

from .runtime import create_session, run_session
from .spec import ModelSpec

DEFAULT_TOLERANCE = 1e-4


@dataclass
class ParityResult:
    batch_sizes: tuple[int, ...]
    max_abs: float
    max_rel: float  # max_abs relative to the largest reference magnitude
    tolerance: float
    argmax_agreement: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.tolerance

    def to_json(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def random_inputs(spec: ModelSpec, n: int, seed: int = 0) -> np.ndarray:
    """Uniform images in [0, 1], mapped to the model's input (range, normalization, layout)."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, *spec.image_shape), dtype=np.float32)
    return np.ascontiguousarray(spec.to_model_input(images), dtype=np.float32)


def parity_batch_sizes(spec: ModelSpec) -> tuple[int, int]:
    return (spec.batch, 3 * spec.batch) if spec.batch else (2, 7)


@torch.no_grad()
def compare_with_onnxruntime(
    module: nn.Module,
    onnx_model: onnx.ModelProto | bytes,
    spec: ModelSpec,
    batch_sizes: tuple[int, ...] | None = None,
    seed: int = 0,
    tolerance: float = DEFAULT_TOLERANCE,
    onnx_batch: int | None = None,
) -> ParityResult:
    """Max abs/rel difference between the module (called at each batch size) and onnxruntime.

    ``onnx_batch``: the batch the ONNX file accepts (static), defaulting to the spec's.
    """
    batch_sizes = batch_sizes or parity_batch_sizes(spec)
    data = onnx_model if isinstance(onnx_model, bytes) else onnx_model.SerializeToString()
    session = create_session(data, device="cpu")
    chunk = onnx_batch if onnx_batch is not None else spec.batch
    was_training = module.training
    module.eval()
    worst_abs, worst_ref, agree, total = 0.0, 0.0, 0, 0
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    try:
        for offset, batch in enumerate(batch_sizes):
            x = random_inputs(spec, batch, seed + offset)
            reference = run_session(session, x, batch_size=chunk or 256)
            ours = module(torch.from_numpy(x).to(device))
            ours = (ours[0] if isinstance(ours, (tuple, list)) else ours).float().cpu().numpy()
            if ours.shape != reference.shape:
                raise AssertionError(f"output shape {ours.shape} != onnxruntime {reference.shape} at batch {batch}")
            worst_abs = max(worst_abs, float(np.abs(ours - reference).max()))
            worst_ref = max(worst_ref, float(np.abs(reference).max()))
            agree += int((ours.argmax(-1) == reference.argmax(-1)).sum())
            total += batch
    finally:
        module.train(was_training)
    return ParityResult(
        batch_sizes=tuple(batch_sizes),
        max_abs=worst_abs,
        max_rel=worst_abs / max(worst_ref, 1e-12),
        tolerance=tolerance,
        argmax_agreement=agree / max(total, 1),
    )
