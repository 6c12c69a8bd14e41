"""Load an ONNX file and check that it is something we can audit: one float image input,
one class-score output, finite weights, no external data outside the model's folder, and
within the resource limits of ``limits.Limits`` (checked on declarations, before any tensor or
external data is read).

Every failure is a ``ModelError`` naming the problem; the input file is only read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .errors import ModelError
from .limits import (Limits, all_tensors, check_declared_tensors, check_file_size, check_structure,
                     check_total_bytes, external_data_bytes, is_external)
from .prepare import infer_shapes_without_weights
from .spec import ModelSpec, parse_float_list, parse_name_list

DEFAULT_MAX_BYTES = Limits().max_bytes
FLOAT_TYPES = {TensorProto.FLOAT: "float32"}
_HEAD_OPS = {"Softmax": "probabilities", "LogSoftmax": "log_probabilities"}
_PASS_THROUGH = {"Identity", "Flatten", "Reshape", "Squeeze", "Cast"}


@dataclass
class LoadedModel:
    """An ONNX model as read from disk, with what we learned about it."""

    path: Path
    model: onnx.ModelProto  # exactly as loaded (external data inlined in memory)
    spec: ModelSpec
    sha256: str
    opset: int
    head_node: str | None = None  # the Softmax/LogSoftmax node producing the output, if any
    preprocessing_initializers: dict[str, str] = field(default_factory=dict)  # name -> role ("mean"/"std")
    warnings: list[str] = field(default_factory=list)

    @property
    def op_histogram(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.model.graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_onnx(
    path: str | Path,
    max_bytes: int | None = None,
    spec_overrides: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> LoadedModel:
    """Read, check and describe an ONNX image classifier.

    ``max_bytes`` overrides ``limits.max_bytes`` (the file plus its external data)."""
    path = Path(path)
    limits = limits or Limits()
    if max_bytes is not None:
        limits = replace(limits, max_bytes=int(max_bytes))
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    size = check_file_size(path, limits)
    if size == 0:
        raise ModelError(f"{path}: the file is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable ONNX file (truncated or not ONNX: {_first_line(exc)})") from exc
    if len(model.graph.node) == 0:
        raise ModelError(f"{path}: not an ONNX model (the graph has no nodes; truncated or not ONNX)")
    check_structure(model, path, limits)
    check_declared_tensors(model, path, limits)
    _check_weight_types(model, path)
    external = _external_tensors(model, path)
    check_total_bytes(path, size, sum(count for _, count in external), limits)
    _load_external_data([tensor for tensor, _ in external], path)
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as exc:
        raise ModelError(f"{path}: the ONNX checker rejects the model: {_first_line(exc)}") from exc
    try:
        inferred = infer_shapes_without_weights(model)
    except Exception:
        inferred = model
    check_declared_tensors(inferred, path, limits)  # what inference derived for the intermediate tensors
    _check_finite(model, path)

    opset = _default_opset(model)
    input_info = _single_image_input(model, path)
    output_info = _single_output(model, path)
    head_node, output_kind = _detect_head(model)
    spec, preprocessing = _derive_spec(model, inferred, input_info, output_info, output_kind, path)
    if spec_overrides:
        spec = spec.with_overrides(**spec_overrides)
    return LoadedModel(
        path=path,
        model=model,
        spec=spec,
        sha256=sha256_file(path),
        opset=opset,
        head_node=head_node,
        preprocessing_initializers=preprocessing,
    )


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ModelError("the model imports no default ONNX opset")


def _external_tensors(model: onnx.ModelProto, path: Path) -> list[tuple[onnx.TensorProto, int]]:
    """Every tensor stored as external data, with the bytes inlining it would read; locations that
    escape the model's folder (symlinks resolved) or name a missing file are refused. Reads nothing."""
    base = path.parent.resolve()
    found = []
    for tensor in all_tensors(model):
        if not is_external(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (base / location).resolve()
        if not location or Path(location).is_absolute() or base not in (target, *target.parents):
            raise ModelError(
                f"{path}: tensor '{tensor.name}' points to external data '{location}' outside the model's folder"
            )
        if not target.is_file():
            raise ModelError(f"{path}: external data file '{location}' for tensor '{tensor.name}' is missing")
        found.append((tensor, external_data_bytes(tensor, target, path)))
    return found


def _load_external_data(tensors: list[onnx.TensorProto], path: Path) -> None:
    """Inline the external tensors (already checked by ``_external_tensors`` and the byte limit)."""
    from onnx.external_data_helper import load_external_data_for_tensor

    base = path.parent.resolve()
    for tensor in tensors:
        try:
            load_external_data_for_tensor(tensor, str(base))
        except Exception as exc:
            raise ModelError(f"{path}: cannot read external data for '{tensor.name}': {_first_line(exc)}") from exc
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]


# element types a weight may have: those numpy and torch both hold natively (not 4/8-bit floats or
# integers, bfloat16, strings or complex numbers, which the conversion cannot carry)
WEIGHT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.INT16,
                TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8, TensorProto.BOOL}


def _check_weight_types(model: onnx.ModelProto, path: Path) -> None:
    for tensor in all_tensors(model):
        if tensor.data_type not in WEIGHT_TYPES:
            name = TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in TensorProto.DataType.values() \
                else str(tensor.data_type)
            raise ModelError(f"{path}: weight '{tensor.name}' has element type {name}, which cannot be converted")


def _check_finite(model: onnx.ModelProto, path: Path) -> None:
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            tensors += [a.t for a in node.attribute if a.name == "value"]
    for tensor in tensors:
        if tensor.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16):
            continue
        values = _tensor_values(tensor, path)
        with np.errstate(all="ignore"):
            finite = np.isfinite(values.astype(np.float64))
        if values.size and not finite.all():
            bad = int((~finite).sum())
            raise ModelError(f"{path}: weight '{tensor.name}' holds {bad} NaN/Inf values")


def _tensor_values(tensor: onnx.TensorProto, path: Path) -> np.ndarray:
    """A weight's values; a tensor whose data does not match its declared shape or type is refused."""
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:
        raise ModelError(f"{path}: weight '{tensor.name}' cannot be read: {_first_line(exc)}") from exc


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def _single_image_input(model: onnx.ModelProto, path: Path) -> dict[str, Any]:
    inputs = _graph_inputs(model)
    if len(inputs) != 1:
        names = ", ".join(f"'{v.name}'" for v in inputs) or "none"
        raise ModelError(f"{path}: the model has {len(inputs)} inputs ({names}); an image classifier takes exactly one")
    value = inputs[0]
    if not value.type.HasField("tensor_type"):
        raise ModelError(f"{path}: input '{value.name}' is not a tensor")
    elem = value.type.tensor_type.elem_type
    if elem not in FLOAT_TYPES:
        type_name = TensorProto.DataType.Name(elem)
        raise ModelError(f"{path}: input '{value.name}' has element type {type_name}; a float32 image input is required")
    if not value.type.tensor_type.HasField("shape"):
        raise ModelError(f"{path}: input '{value.name}' has no declared shape; an (N, C, H, W) image input is required")
    dims = _dims(value)
    if len(dims) != 4:
        raise ModelError(
            f"{path}: input '{value.name}' has rank {len(dims)} (shape {dims}); "
            "an image classifier takes one (N, C, H, W) or (N, H, W, C) tensor"
        )
    _, d1, d2, d3 = dims
    if d1 in (1, 3, 4) and d3 not in (1, 3, 4):
        layout, channels, height, width = "NCHW", d1, d2, d3
    elif d3 in (1, 3, 4) and d1 not in (1, 3, 4):
        layout, channels, height, width = "NHWC", d3, d1, d2
    elif d1 in (1, 3, 4):
        layout, channels, height, width = "NCHW", d1, d2, d3
    else:
        raise ModelError(
            f"{path}: input '{value.name}' has shape {dims}: cannot find a channel axis of size 1, 3 or 4; "
            "pass --layout and check that this is an image model"
        )
    if height is None or width is None:
        raise ModelError(f"{path}: input '{value.name}' has a dynamic spatial size {dims}; static H and W are required")
    return {"name": value.name, "batch": dims[0], "layout": layout, "channels": channels, "height": height, "width": width}


def _single_output(model: onnx.ModelProto, path: Path) -> dict[str, Any]:
    outputs = list(model.graph.output)
    if len(outputs) != 1:
        names = ", ".join(f"'{v.name}'" for v in outputs)
        raise ModelError(f"{path}: the model has {len(outputs)} outputs ({names}); a classifier has exactly one")
    value = outputs[0]
    dims = _dims(value) if value.type.tensor_type.HasField("shape") else []
    return {"name": value.name, "dims": dims}


def _detect_head(model: onnx.ModelProto) -> tuple[str | None, str]:
    """Walk back from the output through shape-only ops to a Softmax/LogSoftmax node."""
    producers = {out: node for node in model.graph.node for out in node.output}
    name = model.graph.output[0].name
    while name in producers:
        node = producers[name]
        if node.op_type in _HEAD_OPS:
            return node.name or node.output[0], _HEAD_OPS[node.op_type]
        if node.op_type not in _PASS_THROUGH or not node.input:
            break
        name = node.input[0]
    return None, "logits"


def _constant_values(model: onnx.ModelProto, path: Path) -> dict[str, np.ndarray]:
    values = {init.name: _tensor_values(init, path) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = _tensor_values(attr.t, path)
    return values


def _find_baked_normalization(model: onnx.ModelProto, input_name: str, channels: int, path: Path) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """A Sub/Div (or Mul/Add) chain with per-channel constants right after the input is a baked
    normalization: its constants are preprocessing, not weights, and stay frozen."""
    consts = _constant_values(model, path)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: dict[str, Any] = {}
    roles: dict[str, str] = {}
    current = input_name
    for _ in range(4):
        users = consumers.get(current, [])
        if len(users) != 1 or users[0].op_type not in ("Sub", "Div", "Mul", "Add"):
            break
        node = users[0]
        other = [n for n in node.input if n != current]
        if len(other) != 1 or other[0] not in consts:
            break
        value = consts[other[0]].astype(np.float64)
        if value.size not in (1, channels):
            break
        flat = tuple(float(v) for v in value.reshape(-1))
        key = {"Sub": "subtract", "Div": "divide", "Mul": "multiply", "Add": "add"}[node.op_type]
        found[key] = flat
        roles[other[0]] = key
        current = node.output[0]
    return (found or None), roles


def _derive_spec(
    model: onnx.ModelProto,
    inferred: onnx.ModelProto,
    input_info: dict[str, Any],
    output_info: dict[str, Any],
    output_kind: str,
    path: Path,
) -> tuple[ModelSpec, dict[str, str]]:
    sources = {"input_name": "graph", "channels": "graph", "height": "graph", "width": "graph", "layout": "graph"}
    dims = output_info["dims"]
    if not dims:
        inferred_out = [v for v in inferred.graph.output if v.name == output_info["name"]]
        dims = _dims(inferred_out[0]) if inferred_out and inferred_out[0].type.tensor_type.HasField("shape") else []
    dims = _squeeze_trailing(dims)
    num_classes = dims[-1] if dims else None
    if num_classes is None or len(dims) != 2:
        num_classes = _probe_class_count(model, input_info, path)
    sources["num_classes"] = "graph"
    sources["output_kind"] = "graph"
    meta = {p.key: p.value for p in model.metadata_props}
    fields: dict[str, Any] = {}
    try:
        if "input_range" in meta:
            lo, hi = parse_float_list(meta["input_range"])
            fields["value_range"] = (lo, hi)
        for key in ("mean", "std"):
            if key in meta:
                fields[key] = parse_float_list(meta[key])
        if "layout" in meta:
            fields["layout"] = meta["layout"].strip().upper()
        for key in ("class_names", "labels"):
            if key in meta:
                fields["class_names"] = parse_name_list(meta[key])
                break
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path}: malformed preprocessing metadata: {exc}") from exc
    sources.update({k: "metadata" for k in fields})
    sources.setdefault("value_range", "default")
    baked, roles = _find_baked_normalization(model, input_info["name"], input_info["channels"], path)
    spec = ModelSpec(
        input_name=input_info["name"],
        output_name=output_info["name"],
        channels=input_info["channels"],
        height=input_info["height"],
        width=input_info["width"],
        num_classes=int(num_classes),
        layout=fields.pop("layout", input_info["layout"]),
        batch=input_info["batch"],
        output_kind=output_kind,
        baked_normalization=baked,
        sources=sources,
        **fields,
    )
    _check_spec(spec, path)
    return spec, roles


def _check_spec(spec: ModelSpec, path: Path) -> None:
    if spec.num_classes < 2:
        raise ModelError(f"{path}: the output has {spec.num_classes} class(es); a classifier needs at least 2")
    for key in ("mean", "std"):
        values = getattr(spec, key)
        if values is not None and len(values) not in (1, spec.channels):
            raise ModelError(f"{path}: metadata '{key}' has {len(values)} values for {spec.channels} channels")
    if spec.std is not None and any(v == 0 for v in spec.std):
        raise ModelError(f"{path}: metadata 'std' contains a zero")
    if spec.class_names is not None and len(spec.class_names) != spec.num_classes:
        raise ModelError(f"{path}: metadata names {len(spec.class_names)} classes but the output has {spec.num_classes}")


def _probe_class_count(model: onnx.ModelProto, input_info: dict[str, Any], path: Path) -> int:
    """Run the model once on zeros when shape inference cannot tell the class count."""
    from .runtime import create_session

    shape = [input_info["batch"] or 1]
    shape += (
        [input_info["channels"], input_info["height"], input_info["width"]]
        if input_info["layout"] == "NCHW"
        else [input_info["height"], input_info["width"], input_info["channels"]]
    )
    session = create_session(model.SerializeToString(), device="cpu")
    out = session.run(None, {input_info["name"]: np.zeros(shape, np.float32)})[0]
    if len(_squeeze_trailing(list(out.shape))) != 2:
        raise ModelError(
            f"{path}: the output has shape {list(out.shape)}; a classifier's output is (N, num_classes)"
        )
    return int(out.shape[1])


def _squeeze_trailing(dims: list) -> list:
    """(N, K, 1, 1) outputs (fully convolutional heads) are (N, K) class scores."""
    dims = list(dims)
    while len(dims) > 2 and dims[-1] == 1:
        dims.pop()
    return dims
