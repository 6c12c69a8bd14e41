"""Export styles for the zoo: each model is written differently so the zoo exercises the converter.

Every style records its preprocessing in ``metadata_props`` (``input_range``, ``class_names``,
``layout``, and ``mean``/``std`` when the caller normalizes) and is checked against the torch
model in onnxruntime (max abs difference of the outputs < 1e-4) before it is written.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import onnx
import torch
from torch import nn

from auditor.errors import AuditorError

from .arch import CIFAR10_MEAN, CIFAR10_STD, ExportWrapper


@dataclass(frozen=True)
class ExportStyle:
    name: str
    exporter: str  # "legacy" (TorchScript) or "dynamo"
    opset: int
    softmax: bool = False
    baked_normalization: bool = False
    input_scale: float = 1.0  # 255: the graph takes 0..255 values
    nhwc: bool = False
    dynamic_batch: bool = True
    description: str = ""


EXPORT_STYLES: dict[str, ExportStyle] = {s.name: s for s in (
    ExportStyle("legacy-opset13", "legacy", 13, description="legacy exporter, opset 13, caller normalizes (mean/std in metadata)"),
    ExportStyle("legacy-opset17", "legacy", 17, description="legacy exporter, opset 17, caller normalizes"),
    ExportStyle("dynamo-opset18", "dynamo", 18, description="dynamo exporter (torch.export), opset 18, caller normalizes"),
    ExportStyle("softmax-head", "legacy", 17, softmax=True, description="legacy opset 17 with a Softmax head (outputs probabilities)"),
    ExportStyle("baked-normalization", "legacy", 13, baked_normalization=True,
                description="legacy opset 13, (x - mean) / std inside the graph, no mean/std in metadata"),
    ExportStyle("static-batch1", "legacy", 17, dynamic_batch=False, description="legacy opset 17, static input shape (1, 3, 32, 32)"),
    ExportStyle("uint8-range", "legacy", 15, baked_normalization=True, input_scale=255.0,
                description="legacy opset 15, takes 0..255 values, scaling and normalization inside the graph"),
    ExportStyle("nhwc", "legacy", 17, nhwc=True, description="legacy opset 17, NHWC input (transposed inside the graph), caller normalizes"),
)}


def wrap_for_export(net: nn.Module, style: ExportStyle, mean: Sequence[float] = CIFAR10_MEAN,
                    std: Sequence[float] = CIFAR10_STD) -> ExportWrapper:
    wrapper = ExportWrapper(net, nhwc=style.nhwc, input_scale=style.input_scale,
                            normalize=(mean, std) if style.baked_normalization else None, softmax=style.softmax)
    return wrapper.eval()


def metadata_for(style: ExportStyle, class_names: Sequence[str], mean: Sequence[float] = CIFAR10_MEAN,
                 std: Sequence[float] = CIFAR10_STD) -> dict[str, str]:
    meta = {
        "input_range": "0,255" if style.input_scale == 255.0 else "0,1",
        "class_names": json.dumps(list(class_names)),
        "layout": "NHWC" if style.nhwc else "NCHW",
    }
    if not style.baked_normalization:
        meta["mean"] = ",".join(f"{v:g}" for v in mean)
        meta["std"] = ",".join(f"{v:g}" for v in std)
    return meta


def export_onnx(net: nn.Module, style: ExportStyle, class_names: Sequence[str], image_shape: tuple[int, int, int] = (3, 32, 32),
                extra_metadata: dict[str, str] | None = None, check_images01: np.ndarray | None = None,
                mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> bytes:
    """Serialized ONNX model of ``net`` in ``style``, checked in onnxruntime against torch.

    ``mean``/``std``: the normalization the network was trained with (baked in, or in the metadata).
    """
    net = net.eval()
    wrapper = wrap_for_export(net, style, mean, std)
    c, h, w = image_shape
    batch = 2 if style.dynamic_batch else 1
    example = torch.rand(batch, c, h, w)
    if style.nhwc:
        example = example.permute(0, 2, 3, 1).contiguous()
    example = example * style.input_scale
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        if style.exporter == "legacy":
            torch.onnx.export(
                wrapper, (example,), path, dynamo=False, opset_version=style.opset,
                input_names=["input"], output_names=["probabilities" if style.softmax else "logits"],
                dynamic_axes={"input": {0: "batch"}, ("probabilities" if style.softmax else "logits"): {0: "batch"}}
                if style.dynamic_batch else None,
                do_constant_folding=True,
            )
        else:
            for noisy in ("onnxscript", "onnx_ir"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
            dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if style.dynamic_batch else None
            program = torch.onnx.export(wrapper, (example,), dynamo=True, opset_version=style.opset,
                                        input_names=["input"], output_names=["logits"],
                                        dynamic_shapes=dynamic, optimize=True, verbose=False)
            program.save(path, external_data=False)
        model = onnx.load(path)
    onnx.checker.check_model(model)
    meta = metadata_for(style, class_names, mean, std)
    meta.update(extra_metadata or {})
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = model.producer_name or "pytorch"
    data = model.SerializeToString()
    _check_parity(data, wrapper, style, image_shape, check_images01)
    return data


def _check_parity(data: bytes, wrapper: nn.Module, style: ExportStyle, image_shape: tuple[int, int, int],
                  images01: np.ndarray | None) -> None:
    from converters.runtime import create_session

    session = create_session(data, device="cpu")
    c, h, w = image_shape
    rng = np.random.default_rng(0)
    x = images01 if images01 is not None else rng.random((8, c, h, w), dtype=np.float32)
    x = x.astype(np.float32)
    if style.nhwc:
        x = x.transpose(0, 2, 3, 1)
    x = np.ascontiguousarray(x * np.float32(style.input_scale))
    name = session.get_inputs()[0].name
    step = 1 if not style.dynamic_batch else len(x)
    onnx_out = np.concatenate([session.run(None, {name: x[i:i + step]})[0] for i in range(0, len(x), step)])
    with torch.no_grad():
        torch_out = wrapper(torch.from_numpy(x)).numpy()
    diff = float(np.abs(onnx_out - torch_out).max())
    if not diff < 1e-4:
        raise AuditorError(f"export style {style.name}: onnxruntime differs from torch by {diff:.2e} (limit 1e-4)")


def style_json(style: ExportStyle) -> dict[str, Any]:
    return asdict(style)
