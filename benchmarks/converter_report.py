"""Converter coverage table: the ONNX model-zoo files shipped inside the onnx package, and the
test matrix of architectures x exporters x batch kinds. Prints Markdown tables.

    python benchmarks/converter_report.py [--matrix]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from converters import compare_with_onnxruntime, convert, load_onnx, save_onnx  # noqa: E402
from converters.errors import ModelError  # noqa: E402


def light_models() -> None:
    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    print("| model | opset | converted | parity max abs | trainable params | seconds |")
    print("|---|---|---|---|---|---|")
    for path in sorted(folder.glob("*.onnx")):
        started = time.perf_counter()
        try:
            loaded = load_onnx(path)
            converted = convert(loaded)
            parity = compare_with_onnxruntime(converted.module, loaded.model, loaded.spec, batch_sizes=(1, 2))
            row = ("yes", f"{parity.max_abs:.1e}", f"{converted.parameter_counts()['trainable']:,}")
        except ModelError as exc:
            row = (f"no: {exc}".replace("|", "/")[:120], "-", "-")
            loaded = None
        opset = loaded.opset if loaded else "-"
        print(f"| {path.stem} | {opset} | {row[0]} | {row[1]} | {row[2]} | {time.perf_counter() - started:.1f} |")


def matrix() -> None:
    from model_matrix import ARCHITECTURES, EXPORTERS, build, export

    print("| architecture | exporter | batch | parity | write-back parity | export method |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ARCHITECTURES:
            for exporter in EXPORTERS:
                for batch in ("dynamic", "static"):
                    path = export(build(arch), exporter, Path(tmp) / "m.onnx", 4 if batch == "static" else None)
                    loaded = load_onnx(path)
                    converted = convert(loaded)
                    parity = compare_with_onnxruntime(converted.module, loaded.model, loaded.spec)
                    params = [p for p in converted.module.parameters() if p.requires_grad]
                    optimizer = torch.optim.SGD(params, lr=0.05)
                    x = torch.rand(6, 3, 16, 16)
                    for _ in range(3):
                        optimizer.zero_grad()
                        torch.nn.functional.cross_entropy(converted.module(x), torch.arange(6) % 10).backward()
                        optimizer.step()
                    result = save_onnx(converted, Path(tmp) / "out.onnx", overwrite=True)
                    print(f"| {arch} | {exporter} | {batch} | {parity.max_abs:.1e} | {result.parity.max_abs:.1e} | "
                          f"{result.method} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrix", action="store_true",
                        help="also build, convert and write back the test matrix of architectures and exporters")
    args = parser.parse_args(argv)
    light_models()
    if args.matrix:
        print()
        matrix()
    return 0


if __name__ == "__main__":
    sys.exit(main())
