"""`import converters` works with torchvision present, missing or broken, and leaves torch.onnx usable;
onnxruntime falls back to the CPU with one log line."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent(
    """
    import io, sys, warnings
    {setup}
    import converters
    converters.import_onnx2torch()
    import converters.ops
    assert 'onnx2torch' in sys.modules
    import torch
    warnings.simplefilter('ignore')
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), io.BytesIO(), dynamo=False)
    print('OK', type(sys.modules.get('torchvision')).__name__)
    """
)


def _run(setup: str, extra_path: Path | None = None) -> str:
    env_path = [str(ROOT)] + ([str(extra_path)] if extra_path else [])
    code = CHECK.format(setup=setup)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": ":".join(env_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_torchvision_missing() -> None:
    # None in sys.modules makes `import torchvision` raise ImportError, as if it were not installed
    assert "OK" in _run("sys.modules['torchvision'] = None")


def test_torchvision_broken(tmp_path: Path) -> None:
    # what PyPI's torchvision does beside a CPU torch build
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    assert "OK" in _run("", extra_path=tmp_path)


def test_torchvision_present(tmp_path: Path) -> None:
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text("from . import ops\n__version__ = 'fake'\n")
    (fake / "ops.py").write_text("def nms(*a, **k):\n    pass\n\ndef roi_align(*a, **k):\n    pass\n")
    assert "OK module" in _run("", extra_path=tmp_path)


def test_cuda_request_falls_back_to_cpu_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    from onnx import TensorProto, helper

    from converters import runtime

    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    runtime._warned_fallback = False
    with caplog.at_level(logging.WARNING, logger="converters.runtime"):
        for _ in range(2):
            session = runtime.create_session(model.SerializeToString(), device="cuda")
    assert session.get_providers() == ["CPUExecutionProvider"]
    messages = [r.getMessage() for r in caplog.records if "running on CPU" in r.getMessage()]
    assert len(messages) == 1, messages
