"""ONNX <-> trainable PyTorch, knowing nothing about backdoors.

    loaded = load_onnx("model.onnx")          # check the file, derive its ModelSpec
    converted = convert(loaded)                # nn.Module, every weight a trainable Parameter
    parity = compare_with_onnxruntime(converted.module, loaded.model, loaded.spec)
    ... fine-tune converted.module ...
    save_onnx(converted, "out.onnx")           # trained tensors written into the original graph

Importing this package never imports torchvision (see ``_compat``).
"""

from ._compat import import_onnx2torch
from .convert import Binding, ConvertedModel, convert, convert_graph
from .errors import ModelError, UnsupportedOperatorError
from .export import ExportResult, WriteBackError, export_full, save_onnx, write_back
from .limits import LimitError, Limits
from .load import LoadedModel, load_onnx, sha256_file
from .parity import ParityResult, compare_with_onnxruntime, random_inputs
from .spec import ModelSpec

__all__ = [
    "Binding", "ConvertedModel", "ExportResult", "LimitError", "Limits", "LoadedModel", "ModelError", "ModelSpec", "ParityResult",
    "UnsupportedOperatorError", "WriteBackError", "compare_with_onnxruntime", "convert", "convert_graph", "export_full",
    "import_onnx2torch", "load_onnx", "random_inputs", "save_onnx", "sha256_file", "write_back",
]


def convert_file(path, **spec_overrides) -> ConvertedModel:
    """Load and convert in one call (spec fields may be overridden)."""
    return convert(load_onnx(path, spec_overrides=spec_overrides or None))
