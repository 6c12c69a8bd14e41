"""Rewrite a copy of the graph into the form onnx2torch converts faithfully.

Each step answers a failure seen on real exports (see the project's converter notes):
initializers listed as graph inputs, weights computed at run time by constant subgraphs
(ConstantOfShape, Identity-shared initializers, ``optimize=False`` Conv biases), a static batch
baked into the input and into Reshape shapes, and nodes without unique names.

The original model is never modified. ``PreparedModel.origins`` says where each initializer of
the prepared graph came from, so that trained values can be written back into the original.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelError

_LOG = logging.getLogger(__name__)

# Ops never folded: random generators give a different value per run; control flow has subgraphs.
_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                 "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct"}
MIN_OPSET, MAX_OPSET = 9, 21


@dataclass
class Origin:
    """Where a prepared-graph initializer lives in the original model."""

    kind: str  # "initializer" | "constant_node" | "identity" | "transpose" | "folded"
    name: str  # the original initializer / Constant output / Identity output name
    source: str | None = None  # for "identity"/"transpose": the initializer read
    perm: list[int] | None = None  # for "transpose"


@dataclass
class PreparedModel:
    model: onnx.ModelProto
    origins: dict[str, Origin]
    steps: list[str] = field(default_factory=list)
    static_batch: int | None = None


def prepare_for_conversion(original: onnx.ModelProto) -> PreparedModel:
    model = copy.deepcopy(original)
    steps: list[str] = []
    _drop_initializer_inputs(model, steps)
    if model.ir_version < 4:  # IR < 4 requires initializers among the inputs; we just removed them
        model.ir_version = 4
        steps.append("raised IR version to 4 (initializers are no longer graph inputs)")
    model, converted_opset = _clamp_opset(model, steps)
    origins = {init.name: Origin("initializer", init.name) for init in model.graph.initializer}
    if converted_opset:
        # version conversion may rename or rewrite tensors; trust only names that survived unchanged
        original_inits = {i.name for i in original.graph.initializer}
        origins = {k: v for k, v in origins.items() if k in original_inits}
    _fold_constants(model, origins, steps, original)
    static_batch = _make_batch_dynamic(model, steps)
    _name_nodes(model)
    del model.graph.value_info[:]
    try:
        inferred = infer_shapes_without_weights(model)
    except Exception as exc:  # shape inference is a help, not a requirement
        _LOG.debug("shape inference after preparation failed: %s", exc)
    else:
        model.graph.value_info.extend(inferred.graph.value_info)
        for value, typed in zip(model.graph.output, inferred.graph.output):
            value.type.CopyFrom(typed.type)
    return PreparedModel(model=model, origins=origins, steps=steps, static_batch=static_batch)


# Initializers up to this many elements stay in the copy that shape inference reads: shape, axes,
# scale and index tensors are that small, and inference reads their values.
_SHAPE_RELEVANT_ELEMENTS = 64


def infer_shapes_without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference on a copy without the large weights, which it does not need.

    Inference serializes the whole model; on a VGG-sized model that is most of the conversion's
    time. Each large initializer becomes a typed graph input of the same shape, so every inferred
    type is the one the full model would get. The returned model lacks those weights: read its
    value_info and outputs, never use it as the model.
    """
    graph = model.graph
    small, weights = [], []
    for init in graph.initializer:
        elements = int(np.prod(init.dims)) if init.dims else 1
        (small if elements <= _SHAPE_RELEVANT_ELEMENTS else weights).append(init)
    declared = {value.name for value in graph.input}
    weight_inputs = [helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
                     for init in weights if init.name not in declared]
    light_graph = helper.make_graph(list(graph.node), graph.name, list(graph.input) + weight_inputs,
                                    list(graph.output), initializer=small, value_info=list(graph.value_info))
    light = helper.make_model(light_graph, opset_imports=list(model.opset_import), functions=list(model.functions))
    light.ir_version = model.ir_version
    return onnx.shape_inference.infer_shapes(light, strict_mode=False)


def _drop_initializer_inputs(model: onnx.ModelProto, steps: list[str]) -> None:
    names = {init.name for init in model.graph.initializer}
    kept = [value for value in model.graph.input if value.name not in names]
    if len(kept) != len(model.graph.input):
        steps.append(f"removed {len(model.graph.input) - len(kept)} initializers from the graph inputs")
        del model.graph.input[:]
        model.graph.input.extend(kept)


def _clamp_opset(model: onnx.ModelProto, steps: list[str]) -> tuple[onnx.ModelProto, bool]:
    opset = next((e.version for e in model.opset_import if e.domain in ("", "ai.onnx")), None)
    if opset is None or MIN_OPSET <= opset <= MAX_OPSET:
        return model, False
    target = MIN_OPSET if opset < MIN_OPSET else MAX_OPSET
    try:
        converted = onnx.version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
    except Exception as exc:
        _LOG.debug("version conversion %s -> %s failed: %s", opset, target, exc)
        steps.append(f"opset {opset} kept (version conversion to {target} failed); relying on per-op converters")
        return model, False
    steps.append(f"converted opset {opset} -> {target}")
    return converted, True


def _constant_tensor(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.asarray(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.asarray(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.asarray(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.asarray(list(attr.ints), dtype=np.int64)
    return None


def _fold_constants(model: onnx.ModelProto, origins: dict[str, Origin], steps: list[str], original: onnx.ModelProto) -> None:
    """Evaluate every node whose inputs are all constant and store its outputs as initializers."""
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    original_identities = {
        n.output[0]: n.input[0] for n in original.graph.node if n.op_type == "Identity" and n.input
    }
    opsets = list(model.opset_import)
    float_like = _known_dtypes(model)
    kept: list[onnx.NodeProto] = []
    folded = 0
    for node in graph.node:
        if node.op_type == "Constant":
            value = _constant_tensor(node)
            if value is None:
                kept.append(node)
                continue
            values[node.output[0]] = value
            origins[node.output[0]] = Origin("constant_node", node.output[0])
            continue
        inputs = [name for name in node.input if name]
        if node.op_type == "CastLike" and len(inputs) == 2 and inputs[0] in values and inputs[1] in float_like:
            # CastLike(constant, activation): only the activation's dtype matters, and it is known.
            values[node.output[0]] = np.asarray(values[inputs[0]]).astype(float_like[inputs[1]])
            origins[node.output[0]] = Origin("folded", node.output[0])
            folded += 1
            continue
        foldable = (
            node.domain in ("", "ai.onnx")
            and node.op_type not in _NOT_FOLDABLE
            and inputs
            and all(name in values for name in inputs)
        )
        if not foldable:
            kept.append(node)
            continue
        try:
            outputs = _evaluate_node(ReferenceEvaluator, node, values, opsets)
        except Exception as exc:  # leave it to the converter
            _LOG.debug("could not fold %s (%s): %s", node.name, node.op_type, exc)
            kept.append(node)
            continue
        for name, value in zip(node.output, outputs):
            if not name:
                continue
            values[name] = value
            if node.op_type == "Identity" and name in original_identities:
                origins[name] = Origin("identity", name, original_identities[name])
            elif node.op_type == "Transpose" and origins.get(inputs[0], Origin("", "")).kind == "initializer":
                # legacy exports without constant folding write Linear weights as Transpose(W)
                perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
                origins[name] = Origin("transpose", name, inputs[0], perm)
            else:
                origins[name] = Origin("folded", name)
        folded += 1
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    initializers = [numpy_helper.from_array(np.asarray(values[name]), name) for name in values if name in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    for name in list(origins):
        if name not in used:
            del origins[name]
    if folded:
        steps.append(f"folded {folded} constant nodes into initializers")


def _known_dtypes(model: onnx.ModelProto) -> dict[str, np.dtype]:
    """Element types of graph values, from the inputs and shape inference."""
    try:
        inferred = infer_shapes_without_weights(model)
    except Exception:
        inferred = model
    known = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        elem = value.type.tensor_type.elem_type
        if elem:
            known[value.name] = helper.tensor_dtype_to_np_dtype(elem)
    return known


def _evaluate_node(evaluator_cls, node: onnx.NodeProto, values: dict[str, np.ndarray], opsets) -> list[np.ndarray]:
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.asarray(values[name]).dtype), None)
              for name in node.input if name]
    outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in node.output if name]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    mini = helper.make_model(graph, opset_imports=opsets)
    feeds = {name: np.asarray(values[name]) for name in node.input if name}
    return evaluator_cls(mini).run(None, feeds)


def _make_batch_dynamic(model: onnx.ModelProto, steps: list[str]) -> int | None:
    """Replace a static batch size in the input, output and Reshape shapes by a dynamic one."""
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializer_names]
    if len(inputs) != 1:
        return None
    dim0 = inputs[0].type.tensor_type.shape.dim[0]
    if not dim0.HasField("dim_value"):
        return None
    batch = dim0.dim_value
    static_dims = _static_dims(model)  # before the batch becomes dynamic
    dim0.Clear()
    dim0.dim_param = "batch"
    for value in graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].Clear()
            dims[0].dim_param = "batch"
    rewritten = 0
    inits = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]]).astype(np.int64).copy()
        if shape.ndim != 1 or shape.size == 0 or shape[0] != batch:
            continue
        allowzero = next((a.i for a in node.attribute if a.name == "allowzero"), 0)
        if -1 in shape[1:]:
            # make the other -1 concrete from the static input shape, so the batch can be -1
            dims = static_dims.get(node.input[0])
            known = [int(v) for v in shape[1:] if v != -1]
            if dims and all(d for d in dims) and (0 not in shape or allowzero):
                inferred = int(np.prod(dims)) // (batch * max(int(np.prod(known)), 1))
                shape[1:] = [inferred if v == -1 else v for v in shape[1:]]
            elif not allowzero:
                shape[0] = 0  # copy the batch from the input
                rewritten += 1
                _replace_shape(graph, node, shape, inits)
                continue
            else:
                continue
        shape[0] = -1
        rewritten += 1
        _replace_shape(graph, node, shape, inits)
    steps.append(f"made the static batch {batch} dynamic (input and {rewritten} Reshape shapes)")
    return batch


def _replace_shape(graph: onnx.GraphProto, node: onnx.NodeProto, shape: np.ndarray, inits: dict) -> None:
    new_name = f"{node.input[1]}__dynamic_batch"
    suffix = 1
    while new_name in inits and not np.array_equal(numpy_helper.to_array(inits[new_name]), shape):
        new_name, suffix = f"{node.input[1]}__dynamic_batch{suffix}", suffix + 1
    if new_name not in inits:
        init = numpy_helper.from_array(shape.astype(np.int64), new_name)
        graph.initializer.append(init)
        inits[new_name] = init
    node.input[1] = new_name


def _static_dims(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    try:
        inferred = infer_shapes_without_weights(model)
    except Exception:
        return {}
    dims = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info):
        if value.type.tensor_type.HasField("shape"):
            dims[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    return dims


def _word(text: str | bytes) -> str:
    if isinstance(text, bytes):  # protobuf hands over a name that is not valid UTF-8 as bytes
        text = text.decode("utf-8", "replace")
    return re.sub(r"\W", "_", text, flags=re.ASCII)


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name of word characters: onnx2torch uses them as module names, and
    torch.fx writes those into generated code, where a crafted name (a newline, a quote) broke it. Only
    the prepared copy is renamed; parameters are bound through tensor names, not node names."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        name = _word(node.name)[:100] or f"{_word(node.op_type)}_{index}"
        while name in seen:
            name = f"{name}_{index}"
        node.name = name
        seen.add(name)


def check_conversion_inputs(model: onnx.ModelProto) -> None:
    """Fail early, and clearly, on graphs nobody can convert."""
    if any(node.op_type in ("If", "Loop", "Scan") for node in model.graph.node):
        bad = next(n for n in model.graph.node if n.op_type in ("If", "Loop", "Scan"))
        raise ModelError(f"operator {bad.op_type} (node '{bad.name}') uses control flow, which cannot be converted")
