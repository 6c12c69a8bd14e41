"""Probe: does the maximum achievable logit margin per class expose the triggers the scan misses?

MM-BD (Wang, Xiang, Miller, Kesidis, IEEE S&P 2024) observes that backdoor training leaves the
target class with an abnormally large *maximum margin*: max over all inputs x in [0, 1]^d of
z_t(x) - max_{k != t} z_k(x). It needs no data at all (random starts), and the paper reports it on
patch, blended, warping and clean-label triggers alike. This probe prints the per-class maximum
margin and two outlier scores: the MAD anomaly index (high side) and MM-BD's p-value of the largest
margin under a Gamma null fitted to the other classes.

    python benchmarks/max_margin.py sample_models/cifar10_wanet.onnx sample_models/cifar10_clean_a.onnx
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from auditor.detect.max_margin import MaxMargin, MaxMarginConfig
from auditor.model import Classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--starts", type=int, default=MaxMarginConfig.starts)
    parser.add_argument("--steps", type=int, default=MaxMarginConfig.steps)
    parser.add_argument("--lr", type=float, default=MaxMarginConfig.lr)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jsonl", type=Path, help="append one JSON line per model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = MaxMargin(starts=args.starts, steps=args.steps, lr=args.lr)
    for path in args.models:
        clf = Classifier.from_onnx(path).eval()
        started = time.perf_counter()
        result = detector.detect(clf, torch.zeros(0, *clf.spec.image_shape), torch.zeros(0, dtype=torch.long), seed=args.seed)
        seconds = time.perf_counter() - started
        margins = [row["max_margin"] for row in result.per_class]
        top, index = result.top()
        print(f"{path.stem:32s} {seconds:5.0f}s top {top} index {index:5.2f} p {result.summary['p_value']:.2g}  "
              + " ".join(f"{m:6.1f}" for m in margins), flush=True)
        if args.jsonl:
            with args.jsonl.open("a") as fh:
                fh.write(json.dumps({"model": path.stem, "seconds": seconds, **result.to_json()}) + "\n")


if __name__ == "__main__":
    main()
