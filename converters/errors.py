"""Errors that name a problem with the user's model, as opposed to bugs in this package.

The CLI turns a ``ModelError`` into one clear message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class ModelError(Exception):
    """The input model cannot be used; the message says why and, where possible, what to do."""


class UnsupportedOperatorError(ModelError):
    """An ONNX node has no converter to PyTorch (ours or onnx2torch's)."""

    def __init__(self, op_type: str, node_name: str, version: int, domain: str = "") -> None:
        where = f"node '{node_name}'" if node_name else "an unnamed node"
        dom = f" (domain '{domain}')" if domain else ""
        super().__init__(
            f"operator {op_type}{dom} at opset {version} in {where} cannot be converted to PyTorch"
        )
        self.op_type = op_type
        self.node_name = node_name
        self.version = version
