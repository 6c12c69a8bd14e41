"""Resource limits for models from untrusted sources, checked on the graph's declarations alone.

A hostile file can be small and still make the tool allocate without bound: external data it
points to (many times over), an input it declares as 1x3x100000x100000, billions of declared
parameters, or a graph deep enough to exhaust a recursive pass. Each check here reads only the
protobuf's dims and the external-data entries, before any tensor is materialized or any external
file is read, and each refusal names the limit and the command-line option that raises it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import onnx
from onnx import TensorProto

from .errors import ModelError

MB = 1024 * 1024


class LimitError(ModelError):
    """A model exceeds a resource limit; the message names the limit and the option that raises it."""


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class Limits:
    """The most the tool accepts from one model (each one a command-line option of the same name)."""

    max_bytes: int = _env_int("AUDITOR_MAX_MODEL_BYTES", 2 * 1024**3)  # the file plus all its external data
    max_tensor_elements: int = 1 << 27  # any one declared tensor, dynamic dims counted as 1 (512 MiB of float32)
    max_parameters: int = 500_000_000  # elements of all initializers and Constant tensors
    max_nodes: int = 100_000  # nodes, those of subgraphs included
    max_depth: int = 10_000  # longest chain of nodes from an input to an output

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_tensor_elements", "max_parameters", "max_nodes", "max_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


# the option that raises each limit, for the refusal messages
OPTIONS = {
    "max_bytes": "--max-model-mb",
    "max_tensor_elements": "--max-tensor-elements",
    "max_parameters": "--max-parameters",
    "max_nodes": "--max-nodes",
    "max_depth": "--max-graph-depth",
}


def megabytes(count: int) -> str:
    """A byte count for a message: MB to one decimal, or bytes when that would read 0.0 MB."""
    return f"{count / MB:.1f} MB" if count >= MB // 10 else f"{count:,} bytes"


def _refuse(path: Path, what: str, limit_name: str, limit_text: str) -> LimitError:
    return LimitError(f"{path}: {what}, more than the limit of {limit_text} (raise it with {OPTIONS[limit_name]})")


def check_file_size(path: Path, limits: Limits) -> int:
    """The .onnx file's own size, refused before it is read when it alone exceeds the byte limit."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise _refuse(path, f"the file is {megabytes(size)}", "max_bytes", megabytes(limits.max_bytes))
    return size


def _subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every graph nested in its nodes' attributes (If, Loop, Scan bodies)."""
    stack = [graph]
    while stack:
        current = stack.pop()
        yield current
        for node in current.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    stack.append(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(attr.graphs)


def all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for graph in _subgraphs(model.graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from attr.tensors


def _product(dims: Iterable[int]) -> int:
    total = 1
    for dim in dims:
        total *= max(int(dim), 1)
    return total


def _value_elements(value: onnx.ValueInfoProto) -> tuple[int, list[int | str]] | None:
    """(elements, shape as written) of a declared tensor; dynamic dims count as 1. None when no shape."""
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    dims = value.type.tensor_type.shape.dim
    shown: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return _product(d.dim_value for d in dims if d.HasField("dim_value")), shown


def check_declared_tensors(model: onnx.ModelProto, path: Path, limits: Limits) -> None:
    """Every declared tensor shape (inputs, outputs, value_info) within ``max_tensor_elements``. Weights
    listed among the inputs (older exporters do) are left to ``max_parameters``: a large weight is normal,
    and its size is bounded by the bytes that hold it."""
    for graph in _subgraphs(model.graph):
        weights = {tensor.name for tensor in graph.initializer}
        for kind, values in (("input", graph.input), ("output", graph.output), ("tensor", graph.value_info)):
            for value in values:
                if value.name in weights:
                    continue
                found = _value_elements(value)
                if found is not None and found[0] > limits.max_tensor_elements:
                    shape = "x".join(str(d) for d in found[1])
                    raise _refuse(path, f"{kind} '{value.name}' declares {found[0]:,} elements ({shape})",
                                  "max_tensor_elements", f"{limits.max_tensor_elements:,} elements")


def check_structure(model: onnx.ModelProto, path: Path, limits: Limits) -> None:
    """Node count, parameter count and graph depth, from the protobuf's declarations only."""
    nodes = sum(len(graph.node) for graph in _subgraphs(model.graph))
    if nodes > limits.max_nodes:
        raise _refuse(path, f"the graph has {nodes:,} nodes", "max_nodes", f"{limits.max_nodes:,} nodes")
    parameters = sum(_product(tensor.dims) for tensor in all_tensors(model))
    if parameters > limits.max_parameters:
        raise _refuse(path, f"the weights declare {parameters:,} parameters", "max_parameters",
                      f"{limits.max_parameters:,} parameters")
    depth = graph_depth(model.graph, path)
    if depth > limits.max_depth:
        raise _refuse(path, f"the graph is {depth:,} nodes deep", "max_depth", f"{limits.max_depth:,} nodes")


def graph_depth(graph: onnx.GraphProto, path: Path) -> int:
    """The longest chain of nodes, iteratively (no recursion to exhaust); a cycle is refused."""
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name:
                producer[name] = index
    consumers: list[list[int]] = [[] for _ in graph.node]
    pending = [0] * len(graph.node)
    for index, node in enumerate(graph.node):
        for name in set(node.input):
            source = producer.get(name)
            if source is not None:
                consumers[source].append(index)
                pending[index] += 1
    depth = [1] * len(graph.node)
    ready = [index for index, count in enumerate(pending) if count == 0]
    done = 0
    while ready:
        index = ready.pop()
        done += 1
        for user in consumers[index]:
            depth[user] = max(depth[user], depth[index] + 1)
            pending[user] -= 1
            if pending[user] == 0:
                ready.append(user)
    if done != len(graph.node):
        raise ModelError(f"{path}: the graph has a cycle ({len(graph.node) - done} nodes depend on each other)")
    return max(depth, default=0)


def external_data_bytes(tensor: onnx.TensorProto, target: Path, path: Path) -> int:
    """How many bytes inlining ``tensor`` would read from ``target`` (its ``length``, else the rest of the file)."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    try:
        offset = int(info.get("offset", 0) or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError as exc:
        raise ModelError(f"{path}: tensor '{tensor.name}' has a malformed external-data offset or length") from exc
    size = target.stat().st_size
    if offset < 0 or (length is not None and length < 0) or offset > size:
        raise ModelError(f"{path}: tensor '{tensor.name}' points past the end of its external data file")
    available = size - offset
    if length is not None and length > available:
        raise ModelError(f"{path}: tensor '{tensor.name}' asks for {length:,} bytes of external data; "
                         f"the file holds {available:,} from its offset")
    count = available if length is None else length
    declared = _declared_bytes(tensor)
    if declared is not None and count != declared:
        # what onnx would read is the length (or the rest of the file), whatever the dims say: a tiny
        # tensor could otherwise pull in a huge file, and the mismatch fails later anyway
        raise ModelError(f"{path}: tensor '{tensor.name}' would read {count:,} bytes of external data; "
                         f"its shape and type declare {declared:,}")
    return count


def _declared_bytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes the tensor's dims and element type call for, when the type has a fixed size."""
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except Exception:
        return None
    if itemsize == 0 or tensor.data_type == TensorProto.STRING:
        return None
    return _product(tensor.dims) * itemsize


def check_total_bytes(path: Path, file_size: int, external: int, limits: Limits) -> None:
    """The file and the external data it would read, together, within ``max_bytes``."""
    total = file_size + external
    if total > limits.max_bytes:
        raise _refuse(path, f"the model with its external data is {megabytes(total)}", "max_bytes",
                      megabytes(limits.max_bytes))


def is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL
