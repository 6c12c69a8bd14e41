"""Probe for the stimulation detector (``auditor.detect.stimulation``) on saved SMI samples.

Prints, per model, the level where the ladder stopped, every class's share there (the largest share
of the other classes' samples one raised channel sends into the class), the top class and its index,
and the detector's time. With ``--full`` it climbs every level instead of stopping.

    python benchmarks/channel_stimulation.py --smi 'runs/smi_scan/{model}.npz' sample_models/cifar10_wanet.onnx
    python benchmarks/channel_stimulation.py --smi runs/smi_full/cifar10_input_aware.npz --relabel PURIFIED.onnx
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from auditor.detect import ChannelStimulation
from auditor.inversion import SynthSet
from auditor.model import Classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--smi", required=True, help="SMI file pattern with {model}")
    parser.add_argument("--depth", type=float, default=0.75)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--levels", help="comma-separated ladder (default: the detector's)")
    parser.add_argument("--full", action="store_true", help="climb every level (stop_share above 1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jsonl", type=Path, help="append one JSON line per model")
    parser.add_argument("--relabel", action="store_true",
                        help="label the samples with each model's own predictions, as the audit's re-scan of a "
                             "purified model does")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    levels = {"levels": tuple(float(v) for v in args.levels.split(","))} if args.levels else {}
    detector = ChannelStimulation(depth=args.depth, per_class=args.per_class, stop_share=2.0 if args.full else 0.5,
                                  **levels)
    for path in args.models:
        clf = Classifier.from_onnx(path).eval()
        synth = SynthSet.load(args.smi.format(model=path.stem))
        labels = clf.predict(synth.images01.float()) if args.relabel else synth.labels
        result = detector.detect(clf, synth.images01.float(), labels)
        top, index = result.top()
        levels = result.summary["levels"]
        print(f"{path.stem:28s} {result.seconds:5.0f}s top {top} ({index:5.2f})"
              + ("" if result.conclusive_for(top) else " inconclusive"), flush=True)
        for j, level in enumerate(levels):
            row = [r["share_by_level"][j] for r in result.per_class]
            print(f"    level {level:4g}: " + " ".join(f"{v:.2f}" for v in row), flush=True)
        if args.jsonl:
            with args.jsonl.open("a") as fh:
                fh.write(json.dumps({"model": path.stem, "seconds": result.seconds, **result.to_json()}) + "\n")


if __name__ == "__main__":
    main()
