"""ONNX -> a PyTorch module in which every weight is trainable, bound to the original tensors.

onnx2torch turns Conv/Gemm/BatchNorm weights into parameters but leaves weights of other ops
(MatMul, Add, Mul, ...) as buffers of an ``initializers`` container. We promote those float
tensors to parameters too, freeze the preprocessing constants of a baked-in normalization and
scalar constants, and record for every parameter which ONNX initializer it came from and how
(``Binding``), so that trained values can be written back into the original graph.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from ._compat import import_onnx2torch
from .errors import ModelError, UnsupportedOperatorError
from .load import LoadedModel
from .prepare import MIN_OPSET, PreparedModel, check_conversion_inputs, prepare_for_conversion

_LOG = logging.getLogger(__name__)


@dataclass
class Binding:
    """A module tensor and the prepared-graph initializer it was made from.

    ``transform``: "identity"; "gemm_b" (Linear weight = B * alpha); "gemm_bt" (weight = B.T * alpha);
    "gemm_c" (bias = C * beta). ``scale`` holds alpha or beta.
    """

    tensor: str  # qualified name in the module (parameter or buffer)
    onnx_name: str
    transform: str = "identity"
    scale: float = 1.0
    trainable: bool = True

    def to_onnx(self, value: np.ndarray) -> np.ndarray:
        """Undo the transform: module value -> ONNX initializer value."""
        if self.transform == "gemm_bt":
            return (value / self.scale).T
        if self.transform in ("gemm_b", "gemm_c"):
            return value / self.scale
        return value


@dataclass
class ConvertedModel:
    module: nn.Module
    loaded: LoadedModel
    prepared: PreparedModel
    bindings: list[Binding]
    frozen: dict[str, str] = field(default_factory=dict)  # module tensor -> reason it is not trainable

    def parameter_counts(self) -> dict[str, int]:
        trainable = sum(p.numel() for p in self.module.parameters() if p.requires_grad)
        frozen_params = sum(p.numel() for p in self.module.parameters() if not p.requires_grad)
        buffers = sum(b.numel() for b in self.module.buffers() if b.is_floating_point())
        return {"total": trainable + frozen_params + buffers, "trainable": trainable, "frozen": frozen_params + buffers}

    def frozen_report(self) -> dict[str, int]:
        """Frozen element counts grouped by reason."""
        sizes = dict(self.module.named_parameters())
        sizes.update(dict(self.module.named_buffers()))
        report: dict[str, int] = {}
        for name, reason in self.frozen.items():
            if name in sizes and sizes[name].is_floating_point():
                report[reason] = report.get(reason, 0) + sizes[name].numel()
        return report


def convert(loaded: LoadedModel) -> ConvertedModel:
    """Prepare, convert and parametrize; the module is in eval mode."""
    prepared = prepare_for_conversion(loaded.model)
    check_conversion_inputs(prepared.model)
    module = _convert_with_fallback(prepared)
    module.eval()
    bindings, frozen = _parametrize(module, prepared, loaded.preprocessing_initializers)
    return ConvertedModel(module=module, loaded=loaded, prepared=prepared, bindings=bindings, frozen=frozen)


def convert_graph(model: onnx.ModelProto) -> nn.Module:
    """Any ONNX graph (not only a classifier: a user's image generator, say) -> a torch module,
    through the same preparation, operator converters and error naming; weights stay as
    onnx2torch leaves them, and nothing is bound for write-back."""
    prepared = prepare_for_conversion(model)
    check_conversion_inputs(prepared.model)
    return _convert_with_fallback(prepared).eval()


def _convert_with_fallback(prepared: PreparedModel) -> nn.Module:
    import_onnx2torch()
    from . import ops  # noqa: F401  (registers our converters)

    try:
        return _run_onnx2torch(prepared.model)
    except UnsupportedOperatorError as first:
        opset = next((e.version for e in prepared.model.opset_import if e.domain in ("", "ai.onnx")), 0)
        if opset >= 13:
            raise
        try:  # old opsets: the same op often has a converter at a newer version
            upgraded = onnx.version_converter.convert_version(prepared.model, 13)
        except Exception:
            raise first from None
        module = _run_onnx2torch(upgraded)
        prepared.model = upgraded
        prepared.steps.append(f"converted opset {opset} -> 13 for operator {first.op_type}")
        return module


def _run_onnx2torch(model: onnx.ModelProto) -> nn.Module:
    onnx2torch = import_onnx2torch()
    try:
        return onnx2torch.convert(model, attach_onnx_mapping=True)
    except NotImplementedError as exc:
        raise _unsupported(model, exc) from exc
    except KeyError as exc:
        raise ModelError(f"conversion failed: tensor {exc} is computed at run time where a constant is needed") from exc
    except ModelError:
        raise
    except Exception as exc:  # onnx2torch on a graph it cannot build: the model is unsupported, not our bug
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:300]
        raise ModelError(f"onnx2torch cannot convert the model: {type(exc).__name__}: {first}") from exc


def _unsupported(model: onnx.ModelProto, exc: Exception) -> ModelError:
    """Name the operator and node behind onnx2torch's NotImplementedError.

    The error may come from a missing converter or from a converter that rejects the node's
    attributes; converting node by node finds the culprit (only done on failure).
    """
    from onnx2torch.node_converters.registry import get_converter
    from onnx2torch.onnx_graph import OnnxGraph

    opset = {e.domain: e.version for e in model.opset_import}
    try:
        graph = OnnxGraph(model.graph)
    except Exception:
        return ModelError(f"conversion failed: {exc}")
    for onnx_node in graph.nodes.values():
        version = opset.get(onnx_node.domain, opset.get("", MIN_OPSET))
        try:
            converter = get_converter(domain=onnx_node.domain, operation_type=onnx_node.operation_type, version=version)
        except NotImplementedError:
            return UnsupportedOperatorError(onnx_node.operation_type, onnx_node.name, version, onnx_node.domain)
        try:
            converter(onnx_node, graph)
        except NotImplementedError as node_exc:
            error = UnsupportedOperatorError(onnx_node.operation_type, onnx_node.name, version, onnx_node.domain)
            error.args = (f"{error.args[0]}: {node_exc}",)
            return error
        except Exception:
            continue
    return ModelError(f"conversion failed: {exc}")


def _forward_arg_names(module: nn.Module) -> list[str]:
    return list(inspect.signature(module.forward).parameters.keys())


def _parametrize(
    module: nn.Module, prepared: PreparedModel, preprocessing: dict[str, str]
) -> tuple[list[Binding], dict[str, str]]:
    graph = prepared.model.graph
    producers = {out: node for node in graph.node for out in node.output}
    init_values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    bindings: list[Binding] = []
    frozen: dict[str, str] = {}
    container_names: dict[str, str] = {}  # buffer name in the initializers container -> onnx name

    for fx_node in module.graph.nodes:  # type: ignore[union-attr]
        if fx_node.op != "call_module":
            continue
        sub = module.get_submodule(fx_node.target)
        mapping = getattr(sub, "onnx_mapping", None)
        if mapping is None:
            continue
        arg_names = _forward_arg_names(sub)
        positions = list(enumerate(fx_node.args))
        positions += [(arg_names.index(k), v) for k, v in fx_node.kwargs.items() if k in arg_names]
        for index, arg in positions:
            if getattr(arg, "op", None) == "get_attr" and index < len(mapping.inputs):
                container_names[arg.target.split(".", 1)[1]] = mapping.inputs[index]
        onnx_node = producers.get(mapping.outputs[0]) if mapping.outputs else None
        own = list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False))
        if onnx_node is None or not own:
            continue
        bindings += _bind_module_tensors(fx_node.target, sub, onnx_node, init_values, frozen)
    bindings = _tie_shared_parameters(module, bindings)

    container = module.get_submodule("initializers") if hasattr(module, "initializers") else None
    if container is not None:
        container_names = _tie_shared_initializers(module, container, container_names)
        for buffer_name, onnx_name in container_names.items():
            tensor = getattr(container, buffer_name)
            qualified = f"initializers.{buffer_name}"
            if not tensor.is_floating_point():
                continue
            if onnx_name in preprocessing:
                frozen[qualified] = "preprocessing constant (baked-in normalization)"
                bindings.append(Binding(qualified, onnx_name, trainable=False))
                continue
            if tensor.numel() <= 1:
                frozen[qualified] = "scalar constant"
                bindings.append(Binding(qualified, onnx_name, trainable=False))
                continue
            delattr(container, buffer_name)
            container.register_parameter(buffer_name, nn.Parameter(tensor.detach().clone()))
            bindings.append(Binding(qualified, onnx_name))
    for name, param in module.named_parameters():
        param.requires_grad_(name not in frozen)
    return bindings, frozen


def _tie_shared_parameters(module: nn.Module, bindings: list[Binding]) -> list[Binding]:
    """Layers made from one ONNX initializer share one Parameter, so training keeps them tied."""
    kept: list[Binding] = []
    owners: dict[tuple[str, str, float], Binding] = {}
    for binding in bindings:
        key = (binding.onnx_name, binding.transform, binding.scale)
        first = owners.get(key)
        if first is None or not binding.trainable:
            owners.setdefault(key, binding)
            kept.append(binding)
            continue
        owner_path, _, owner_attr = first.tensor.rpartition(".")
        path, _, attr = binding.tensor.rpartition(".")
        setattr(module.get_submodule(path), attr, getattr(module.get_submodule(owner_path), owner_attr))
    return kept


def _tie_shared_initializers(module: nn.Module, container: nn.Module, names: dict[str, str]) -> dict[str, str]:
    """onnx2torch gives every use of an initializer its own buffer; one ONNX tensor used twice
    (a LayerNorm weight in a decomposed graph) must stay one tensor, or training unties it."""
    first: dict[str, str] = {}
    rename: dict[str, str] = {}
    for buffer_name, onnx_name in names.items():
        if onnx_name in first:
            rename[buffer_name] = first[onnx_name]
        else:
            first[onnx_name] = buffer_name
    if not rename:
        return names
    for fx_node in module.graph.nodes:  # type: ignore[union-attr]
        if fx_node.op == "get_attr" and fx_node.target.startswith("initializers."):
            buffer_name = fx_node.target.split(".", 1)[1]
            if buffer_name in rename:
                fx_node.target = f"initializers.{rename[buffer_name]}"
    for buffer_name in rename:
        delattr(container, buffer_name)
    module.recompile()  # type: ignore[operator]
    return {b: o for b, o in names.items() if b not in rename}


def _bind_module_tensors(
    prefix: str, sub: nn.Module, onnx_node: onnx.NodeProto, init_values: dict[str, np.ndarray], frozen: dict[str, str]
) -> list[Binding]:
    bindings = []
    inputs = [name for name in onnx_node.input[1:] if name in init_values]
    if onnx_node.op_type == "Gemm" and isinstance(sub, nn.Linear):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in onnx_node.attribute}
        trans_b = bool(attrs.get("transB", 0))
        bindings.append(Binding(f"{prefix}.weight", onnx_node.input[1], "gemm_b" if trans_b else "gemm_bt",
                                float(attrs.get("alpha", 1.0))))
        if sub.bias is not None and len(onnx_node.input) > 2:
            bindings.append(Binding(f"{prefix}.bias", onnx_node.input[2], "gemm_c", float(attrs.get("beta", 1.0))))
        return bindings
    used: set[str] = set()
    for name, tensor in list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False)):
        if not tensor.is_floating_point():
            continue
        value = tensor.detach().cpu().numpy()
        match = next(
            (n for n in inputs if n not in used and init_values[n].shape == value.shape
             and np.array_equal(init_values[n].astype(value.dtype), value)),
            None,
        )
        qualified = f"{prefix}.{name}"
        is_param = isinstance(tensor, nn.Parameter)
        if match is None:
            if is_param:
                frozen[qualified] = "no matching ONNX initializer"
            continue
        used.add(match)
        if not is_param:
            frozen[qualified] = "running statistic"
        bindings.append(Binding(qualified, match, trainable=is_param))
    return bindings


def module_state(converted: ConvertedModel) -> dict[str, torch.Tensor]:
    """Every bound tensor of the module by its qualified name (parameters and buffers)."""
    state = dict(converted.module.named_parameters())
    state.update(dict(converted.module.named_buffers()))
    return state
