"""Converter coverage: the ONNX model-zoo files shipped inside the onnx package, and the test matrix of
architectures x exporters x batch kinds, measured into JSON and rendered into docs/converters.md.

    python benchmarks/converter_report.py --json docs/results/converter_coverage.json [--matrix]
    python benchmarks/converter_report.py --render docs/results/converter_coverage.json --write docs/converters.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LIGHT = ("<!-- converter-light -->", "<!-- /converter-light -->")
MATRIX = ("<!-- converter-matrix -->", "<!-- /converter-matrix -->")


def light_models() -> list[dict[str, Any]]:
    """One row per model-zoo file: converted or why not, parity with onnxruntime at batches 1 and 2, seconds."""
    import onnx

    from converters import compare_with_onnxruntime, convert, load_onnx
    from converters.errors import ModelError

    rows = []
    for path in sorted((Path(onnx.__file__).parent / "backend" / "test" / "data" / "light").glob("*.onnx")):
        started = time.perf_counter()
        row: dict[str, Any] = {"model": path.stem, "opset": None, "converted": False, "error": None,
                               "parity_max_abs": None, "trainable_parameters": None}
        try:
            loaded = load_onnx(path)
            row["opset"] = loaded.opset
            converted = convert(loaded)
            parity = compare_with_onnxruntime(converted.module, loaded.model, loaded.spec, batch_sizes=(1, 2))
            row.update(converted=True, parity_max_abs=parity.max_abs,
                       trainable_parameters=converted.parameter_counts()["trainable"])
        except ModelError as exc:
            row["error"] = str(exc)
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(f"{path.stem}: {'converted' if row['converted'] else row['error']} in {row['seconds']} s", flush=True)
    return rows


def matrix() -> list[dict[str, Any]]:
    """One row per architecture, exporter and batch kind: conversion parity, write-back parity after training."""
    import torch

    from converters import compare_with_onnxruntime, convert, load_onnx, save_onnx

    sys.path.insert(0, str(ROOT / "tests"))
    from model_matrix import ARCHITECTURES, EXPORTERS, build, export

    rows = []
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
                    rows.append({"architecture": arch, "exporter": exporter, "batch": batch,
                                 "parity_max_abs": parity.max_abs, "write_back_max_abs": result.parity.max_abs,
                                 "export_method": result.method})
    return rows


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {**{name: version(name) for name in ("torch", "onnx", "onnxruntime", "onnx2torch")},
            "machine": platform.machine()}


def render_light(document: dict[str, Any]) -> str:
    lines = [f"Measured {document['date']} ({', '.join(f'{k} {v}' for k, v in document['versions'].items())}); "
             "seconds: load, convert and check parity, on a shared 2-core CPU.", "",
             "| model | opset | converted | parity max abs | trainable params | seconds |", "|---|---|---|---|---|---|"]
    for r in document["light"]:
        converted = "yes" if r["converted"] else f"no: {r['error']}".replace("|", "/")[:120]
        parity = "-" if r["parity_max_abs"] is None else f"{r['parity_max_abs']:.1e}"
        params = "-" if r["trainable_parameters"] is None else f"{r['trainable_parameters']:,}"
        lines.append(f"| {r['model']} | {r['opset'] or '-'} | {converted} | {parity} | {params} | {r['seconds']} |")
    return "\n".join(lines)


def render_matrix(document: dict[str, Any]) -> str:
    lines = ["| architecture | exporter | batch | parity | write-back parity | export method |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['architecture']} | {r['exporter']} | {r['batch']} | {r['parity_max_abs']:.1e} | "
              f"{r['write_back_max_abs']:.1e} | {r['export_method']} |" for r in document.get("matrix", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="measure, and write the rows here")
    parser.add_argument("--matrix", action="store_true",
                        help="with --json: also build, convert and write back the architectures x exporters matrix")
    parser.add_argument("--render", type=Path, help="a JSON written by --json, to render")
    parser.add_argument("--write", type=Path, help="with --render: the page whose marked tables are replaced")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from markers import emit

    if args.json:
        document = {"date": time.strftime("%Y-%m-%d"), "versions": _versions(), "light": light_models(),
                    "matrix": matrix() if args.matrix else []}
        args.json.write_text(json.dumps(document, indent=1) + "\n")
        return 0
    if args.render:
        document = json.loads(args.render.read_text())
        emit(render_light(document), args.write, *LIGHT)
        if document.get("matrix"):
            emit(render_matrix(document), args.write, *MATRIX)
        return 0
    parser.error("give --json (measure) or --render (format)")
    return 2


if __name__ == "__main__":
    sys.exit(main())
