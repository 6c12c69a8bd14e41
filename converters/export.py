"""Write a fine-tuned module back to ONNX.

The preferred path writes the trained tensors into the *original* graph's initializers, so that
nodes, names, opset and metadata stay exactly as the publisher made them (deployment tools that
accepted the original accept this). Where a trained tensor has no home in the original graph
(it was computed from constants at run time, or two copies of a shared initializer diverged),
``save_onnx`` falls back to a full ``torch.onnx.export`` of the module and says so.

Files are written to a temporary name, verified in onnxruntime against the module, and only
then renamed into place: a failure leaves no output file behind.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .convert import ConvertedModel, module_state
from .errors import ModelError
from .prepare import Origin
from .parity import ParityResult, compare_with_onnxruntime

_LOG = logging.getLogger(__name__)
_CHANGE_TOLERANCE = 0.0


class WriteBackError(ModelError):
    """The trained tensors cannot be written into the original graph unchanged in structure."""


@dataclass
class ExportResult:
    path: Path
    method: str  # "write-back" | "torch.onnx.export"
    parity: ParityResult
    note: str = ""


def _np(tensor: torch.Tensor) -> np.ndarray:
    # C order whatever the layout the module keeps its weights in (the audit keeps them channels-last)
    return tensor.detach().cpu().contiguous().numpy()


def write_back(converted: ConvertedModel) -> onnx.ModelProto:
    """A copy of the original model holding the module's current tensors."""
    state = module_state(converted)
    prepared_values = {i.name: numpy_helper.to_array(i) for i in converted.prepared.model.graph.initializer}
    values: dict[str, np.ndarray] = {}
    for binding in converted.bindings:
        value = binding.to_onnx(_np(state[binding.tensor]))
        previous = values.get(binding.onnx_name)
        if previous is not None and not np.array_equal(previous, value):
            raise WriteBackError(f"initializer '{binding.onnx_name}' is shared by layers whose trained values differ")
        values[binding.onnx_name] = value

    _route_transposed(values, converted, prepared_values)
    model = copy.deepcopy(converted.loaded.model)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    identities = {n.output[0]: n for n in graph.node if n.op_type == "Identity"}
    for name, value in values.items():
        unchanged = name in prepared_values and _same(prepared_values[name], value)
        origin = converted.prepared.origins.get(name)
        if origin is None and name in initializers:  # a Transpose source, routed above
            origin = Origin("initializer", name)
        if origin is None or origin.kind == "folded":
            if unchanged:
                continue
            raise WriteBackError(f"tensor '{name}' is computed from constants in the original graph and was changed")
        if origin.kind == "initializer" and name in initializers:
            _set_tensor(initializers[name], value)
        elif origin.kind == "constant_node" and name in constants:
            attr = next(a for a in constants[name].attribute if a.name == "value")
            _set_tensor(attr.t, value)
        elif origin.kind == "identity" and name in identities:
            if unchanged:
                continue
            # A de-duplicated initializer whose users now differ: give this Identity its own copy.
            source = initializers.get(origin.source or "")
            if source is None:
                raise WriteBackError(f"Identity '{name}' reads a tensor that is not an initializer")
            fresh = copy.deepcopy(source)
            fresh.name = _unique_name(f"{name}__trained", initializers)
            _set_tensor(fresh, value)
            graph.initializer.append(fresh)
            initializers[fresh.name] = fresh
            identities[name].input[0] = fresh.name
        else:
            raise WriteBackError(f"tensor '{name}' has no place in the original graph")
    return model


def _route_transposed(values: dict[str, np.ndarray], converted: ConvertedModel, prepared: dict[str, np.ndarray]) -> None:
    """A trained Transpose(W) goes back into W, transposed back."""
    for name in list(values):
        origin = converted.prepared.origins.get(name)
        if origin is None or origin.kind != "transpose" or not origin.source:
            continue
        value = values.pop(name)
        if name in prepared and _same(prepared[name], value):
            continue
        perm = origin.perm or list(reversed(range(value.ndim)))
        source_value = np.transpose(value, np.argsort(perm))
        previous = values.get(origin.source)
        if previous is not None and not np.array_equal(previous, source_value):
            raise WriteBackError(f"initializer '{origin.source}' is used directly and transposed, and they diverged")
        values[origin.source] = source_value


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.astype(b.dtype), b)


def _unique_name(base: str, taken: dict) -> str:
    name, index = base, 1
    while name in taken:
        name, index = f"{base}_{index}", index + 1
    return name


def _set_tensor(tensor: onnx.TensorProto, value: np.ndarray) -> None:
    original = numpy_helper.to_array(tensor)
    if original.shape != value.shape:
        raise WriteBackError(f"tensor '{tensor.name}': trained shape {value.shape} != original {original.shape}")
    replacement = numpy_helper.from_array(value.astype(original.dtype), tensor.name)
    replacement.doc_string = tensor.doc_string
    tensor.CopyFrom(replacement)


def export_full(converted: ConvertedModel, opset: int = 17) -> onnx.ModelProto:
    """A fresh export of the module (structure may differ from the original), dynamic batch."""
    import io

    spec = converted.loaded.spec
    shape = (1, *spec.image_shape) if spec.layout == "NCHW" else (1, spec.height, spec.width, spec.channels)
    module = converted.module.eval()
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.zeros(shape, device=device),),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=[spec.input_name],
        output_names=[spec.output_name],
        dynamic_axes={spec.input_name: {0: "batch"}, spec.output_name: {0: "batch"}},
    )
    model = onnx.load_from_string(buffer.getvalue())
    del model.metadata_props[:]
    model.metadata_props.extend(copy.deepcopy(converted.loaded.model.metadata_props))
    return model


def set_metadata(model: onnx.ModelProto, extra: dict[str, str]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for key, value in extra.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)


def save_onnx(
    converted: ConvertedModel,
    path: str | Path,
    method: str = "auto",
    metadata: dict[str, str] | None = None,
    tolerance: float = 1e-4,
    overwrite: bool = False,
) -> ExportResult:
    """Write, verify against the module in onnxruntime, then move into place."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelError(f"{path} exists; pass --overwrite to replace it")
    note = ""
    if method in ("auto", "write-back"):
        try:
            model, used = write_back(converted), "write-back"
        except WriteBackError as exc:
            if method == "write-back":
                raise
            note = f"write-back impossible ({exc}); exported the module with torch.onnx.export instead"
            _LOG.warning(note)
            model, used = export_full(converted), "torch.onnx.export"
    elif method == "export":
        model, used = export_full(converted), "torch.onnx.export"
    else:
        raise ValueError(f"unknown export method {method!r}")
    if metadata:
        set_metadata(model, metadata)
    data = model.SerializeToString()
    onnx_batch = converted.loaded.spec.batch if used == "write-back" else None
    parity = compare_with_onnxruntime(converted.module, data, converted.loaded.spec, tolerance=tolerance,
                                      onnx_batch=onnx_batch)
    if not parity.ok:
        raise ModelError(
            f"the written model differs from the trained module by {parity.max_abs:.2e} (> {tolerance:.0e}); nothing was written"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ExportResult(path=path, method=used, parity=parity, note=note)
