"""Channels-last against NCHW: the passes the audit makes, timed per model on this CPU.

``auditor.model.Classifier`` keeps the audited network in channels-last (NHWC strides), because
oneDNN's convolutions and max-pooling run faster in that layout on CPU. This script measures the
three kinds of pass the audit makes, in both layouts, on the same weights and images:

  forward           predictions and scoring (reach, probes, the guard): no gradient
  grad to input     the trigger searches (universal perturbations, patches, Neural Cleanse) and
                    the inversion: gradient with respect to the images only
  grad to weights   purification's training steps: gradient with respect to the weights

Each pass runs ``--reps`` times per layout, interleaved, and the table gives the median seconds
and the speed-up (NCHW / channels-last). The thread count is fixed (``--threads``) and recorded.

    python benchmarks/memory_format.py --out docs/results/memory_format.json
    python benchmarks/memory_format.py --render docs/results/memory_format.json --write docs/bench.md
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from auditor.model import Classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markers import add_render_options, head_commit, render_if_asked  # noqa: E402  (sibling script module)

BEGIN, END = "<!-- memory-format-table -->", "<!-- /memory-format-table -->"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("sample_models/cifar10_badnets.onnx", "heldapart_models/ha_vgg_bpp.onnx",
                  "heldapart_models/ha_mobilenet_ftrojan.onnx", "heldapart_models/ha_preact_lowfreq.onnx",
                  "heldapart_models/ha_mnist_lenet_badnets.onnx")
PASSES = ("forward", "grad to input", "grad to weights")


def _passes(network: torch.nn.Module, inputs: torch.Tensor) -> dict[str, Callable[[], None]]:
    """The three passes on ``network`` for model inputs already in the layout to time."""
    def forward() -> None:
        with torch.inference_mode():
            network(inputs)

    def grad_to_input() -> None:
        x = inputs.clone().requires_grad_(True)
        torch.autograd.grad(_first(network(x)).logsumexp(1).sum(), x)

    def grad_to_weights() -> None:
        network.zero_grad(set_to_none=True)
        _first(network(inputs)).logsumexp(1).sum().backward()

    return dict(zip(PASSES, (forward, grad_to_input, grad_to_weights)))


def _first(out: Any) -> torch.Tensor:
    return (out[0] if isinstance(out, (tuple, list)) else out).flatten(1)


def measure_model(path: Path, batch: int, reps: int, seed: int = 0) -> dict[str, Any]:
    """Median seconds per pass and layout on one model (the layouts interleaved, rep by rep)."""
    classifier = Classifier.from_onnx(path)
    spec = classifier.spec
    channels_last = classifier.network
    nchw = copy.deepcopy(channels_last).to(memory_format=torch.contiguous_format)
    images = torch.rand(batch, spec.channels, spec.height, spec.width, generator=torch.Generator().manual_seed(seed))
    runs = {"nchw": _passes(nchw, spec.to_model_input(images).contiguous()),
            "channels_last": _passes(channels_last, classifier.network_input(images))}
    row: dict[str, Any] = {"model": path.stem, "batch": batch, "reps": reps}
    for name in PASSES:
        seconds: dict[str, list[float]] = {"nchw": [], "channels_last": []}
        for layout in seconds:
            runs[layout][name]()  # warm-up
        for _ in range(reps):
            for layout, timed in seconds.items():
                start = time.perf_counter()
                runs[layout][name]()
                timed.append(time.perf_counter() - start)
        row[name] = {layout: round(statistics.median(values), 4) for layout, values in seconds.items()}
    return row


def render(document: dict[str, Any]) -> str:
    machine = document["machine"]
    lines = [f"Median seconds per pass ({document['reps']} interleaved repetitions, batch {document['batch']}, "
             f"{document['threads']} torch thread(s)); {machine}; at `{document.get('commit') or '?'}`.",
             "", "| model | pass | NCHW s | channels-last s | speed-up |", "|---|---|---:|---:|---:|"]
    for row in document["rows"]:
        for name in PASSES:
            cell = row[name]
            lines.append(f"| {row['model']} | {name} | {cell['nchw']:.3f} | {cell['channels_last']:.3f} | "
                         f"{cell['nchw'] / cell['channels_last']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", action="append", type=Path, help="ONNX file (repeatable) [default: five "
                        "architectures from sample_models/ and heldapart_models/].")
    parser.add_argument("--batch", type=int, default=128, help="Images per pass.")
    parser.add_argument("--reps", type=int, default=10, help="Timed repetitions per pass and layout.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads.")
    parser.add_argument("--note", help="What else ran on the machine, recorded beside the machine.")
    parser.add_argument("--out", type=Path, help="Write the measurements to this JSON file.")
    add_render_options(parser, "this JSON file")
    args = parser.parse_args(argv)
    if render_if_asked(args, render, BEGIN, END):
        return 0
    torch.set_num_threads(args.threads)
    models = args.model or [ROOT / m for m in DEFAULT_MODELS]
    rows = []
    for path in models:
        rows.append(measure_model(path, args.batch, args.reps))
        print(f"{path.stem}: " + ", ".join(f"{n} {rows[-1][n]['nchw'] / rows[-1][n]['channels_last']:.2f}x"
                                           for n in PASSES), file=sys.stderr, flush=True)
    document = {"batch": args.batch, "reps": args.reps, "threads": args.threads, "commit": head_commit(),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
                           + (f", {args.note}" if args.note else ""),
                "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(render(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
