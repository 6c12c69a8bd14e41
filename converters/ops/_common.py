"""Shared helpers for our onnx2torch converters: registration bookkeeping and constant inputs.

Everything here goes through onnx2torch's own registry (``add_converter`` /
``_CONVERTER_REGISTRY``); nothing of onnx2torch is forked. ``converters.ops`` has already run
``import_onnx2torch()`` before any family module imports this file.
"""

from __future__ import annotations

import logging
from typing import Callable, NamedTuple, Optional

import torch
from onnx import defs
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter
from onnx2torch.onnx_graph import OnnxGraph, ValueType
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, get_const_value

_LOG = logging.getLogger(__name__)

Converter = Callable[[OnnxNode, OnnxGraph], OperationConverterResult]


class Registration(NamedTuple):
    """One (op, since_version) entry that this package put into onnx2torch's registry."""

    operation_type: str
    version: int
    how: str  # "new", "delegates to <Op> <v>" or "replaces onnx2torch's <Op> <v>: <why>"


# Keyed by (op, version) so that a second import of a family module cannot double-record.
_ADDED: dict[tuple[str, int], Registration] = {}


def _key(operation_type: str, version: int) -> OperationDescription:
    return OperationDescription(domain=defs.ONNX_DOMAIN, operation_type=operation_type, version=version)


def _is_ours(converter: Converter) -> bool:
    return getattr(converter, "__auditor_converter__", False)


def register(operation_type: str, versions: tuple[int, ...], how: str = "new") -> Callable[[Converter], Converter]:
    """Register ``converter`` for each since_version that onnx2torch does not cover itself.

    If onnx2torch (a newer release) already has a converter for a key, its own converter wins
    and ours is not installed: we only fill gaps. Re-registering our own entry (module reload)
    is a no-op instead of add_converter's "already registered" error.
    """

    def deco(converter: Converter) -> Converter:
        converter.__auditor_converter__ = True  # type: ignore[attr-defined]
        for version in versions:
            existing = _CONVERTER_REGISTRY.get(_key(operation_type, version))
            if existing is not None:
                if _is_ours(existing):
                    _CONVERTER_REGISTRY[_key(operation_type, version)] = converter
                else:
                    _LOG.debug("onnx2torch already converts %s-%d; keeping its converter", operation_type, version)
                    continue
            else:
                add_converter(operation_type=operation_type, version=version)(converter)
            _ADDED[(operation_type, version)] = Registration(operation_type, version, how)
        return converter

    return deco


def replace(operation_type: str, version: int, why: str) -> Callable[[Converter], Converter]:
    """Replace onnx2torch's own converter for one key, on purpose.

    ``add_converter`` refuses existing keys, so a fix for a buggy onnx2torch converter has to
    overwrite the registry entry directly; ``why`` is recorded for ``registered_versions()``.
    """

    def deco(converter: Converter) -> Converter:
        converter.__auditor_converter__ = True  # type: ignore[attr-defined]
        _CONVERTER_REGISTRY[_key(operation_type, version)] = converter
        _ADDED[(operation_type, version)] = Registration(
            operation_type, version, f"replaces onnx2torch's {operation_type}-{version}: {why}"
        )
        return converter

    return deco


def original_converter(operation_type: str, version: int) -> Converter:
    """onnx2torch's converter for exactly (op, version); raises if onnx2torch has none.

    Used by delegations and by replacements that keep the original for the cases it gets right.
    Looked up once at import, before any replacement, and cached.
    """
    key = (operation_type, version)
    if key not in _ORIGINALS:
        converter = _CONVERTER_REGISTRY.get(_key(operation_type, version))
        if converter is None:
            raise LookupError(f"onnx2torch has no converter for {operation_type}-{version} to delegate to")
        _ORIGINALS[key] = converter
    return _ORIGINALS[key]


_ORIGINALS: dict[tuple[str, int], Converter] = {}


def delegate(
    operation_type: str,
    versions: tuple[int, ...],
    to_version: int,
    check: Optional[Callable[[OnnxNode, OnnxGraph], None]] = None,
) -> None:
    """Register ``versions`` of ``operation_type`` as the existing ``to_version`` converter.

    For new versions that only widen the type list (bfloat16, float8, int4, ...): for float
    tensors the semantics are unchanged. ``check`` may reject the nodes where they are not.
    """
    target = original_converter(operation_type, to_version)

    def converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        if check is not None:
            check(node, graph)
        return target(node, graph)

    converter.__name__ = f"convert_{operation_type}_via_{to_version}"
    register(operation_type, versions, how=f"delegates to {operation_type}-{to_version}")(converter)


def describe(node: OnnxNode) -> str:
    """'<Op> node "<name>"' for error messages, so users can find the node in their model."""
    return f'{node.operation_type} node "{node.name or node.unique_name}"'


def optional_input(node: OnnxNode, index: int) -> Optional[str]:
    """Name of input ``index``, or None when it is absent or given as the empty string."""
    if index < len(node.input_values) and node.input_values[index] != "":
        return node.input_values[index]
    return None


def is_constant(name: str, graph: OnnxGraph) -> bool:
    """Whether ``name`` is an initializer or the output of a Constant node."""
    if graph.value_type(name) == ValueType.GRAPH_INITIALIZER:
        return True
    if graph.value_type(name) == ValueType.NODE_OUTPUT:
        return graph.value_as_node_output(name)[0].operation_type == "Constant"
    return False


def constant_input(node: OnnxNode, graph: OnnxGraph, index: int, what: str) -> Optional[torch.Tensor]:
    """Constant value of input ``index`` as a tensor, None when absent.

    Raises NotImplementedError naming the node when the input is computed at run time, because
    the converter needs the value to build a static module.
    """
    name = optional_input(node, index)
    if name is None:
        return None
    try:
        value = get_const_value(name, graph)
    except KeyError as exc:
        raise NotImplementedError(
            f"{describe(node)}: input {index} ({what}, tensor '{name}') must be a constant "
            "(initializer or Constant node); computed values are not supported"
        ) from exc
    return value if isinstance(value, torch.Tensor) else torch.tensor(value)


def constant_ints(node: OnnxNode, graph: OnnxGraph, index: int, what: str) -> Optional[list[int]]:
    """Constant integer input (axes, pads, shape, split) as a Python list, None when absent."""
    value = constant_input(node, graph, index, what)
    return None if value is None else [int(v) for v in value.reshape(-1).tolist()]


def registrations() -> list[Registration]:
    """What this package added to onnx2torch's registry, sorted by op and version."""
    return sorted(_ADDED.values())
