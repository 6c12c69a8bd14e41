"""Probe for the attacks the scan misses: targeted universal perturbations in a hidden layer's features.

Input-space reach (``auditor.detect.reach``) finds BadNets and Blended but not WaNet, Input-Aware or
SIG, whose triggers are not one small input delta. Their effect may still be one small *feature*
delta. For every class t this adds one delta to the output of the convolution at relative depth
``--depth`` (L2 radius ``--rel`` times the mean per-sample feature norm, normalized steps) and
measures the share of the other classes' SMI samples it sends into t. Prints, per model and radius,
the per-class reach and the anomaly index (high side, MAD floor 0.05) of the most reachable class
and of class 0 (the zoo's all-to-one target). Not a detector yet: the radius has to be calibrated.

    python benchmarks/feature_reach.py --depth 0.75 --rel 0.1,0.15 cifar10_wanet cifar10_clean_a

SMI samples come from ``--smi-dir``/MODEL/smi.npz (made by ``auditor bench`` or ``auditor invert``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from auditor.detect.base import anomaly_index, balanced_pick
from auditor.detect.feature_reach import reach_ladder
from auditor.inversion import SynthSet
from auditor.model import Classifier


def feature_reach(clf: Classifier, images01: torch.Tensor, labels: torch.Tensor, depth: float, rel: float,
                  steps: int = 20, per_class: int = 20, seed: int = 0) -> torch.Tensor:
    """Per class: the share of other classes' samples one feature-space delta sends into it."""
    return feature_reach_ladder(clf, images01, labels, depth, (rel,), steps, per_class, seed)[0]


def feature_reach_ladder(clf: Classifier, images01: torch.Tensor, labels: torch.Tensor, depth: float,
                         rels: tuple[float, ...], steps: int = 20, per_class: int = 20, seed: int = 0) -> torch.Tensor:
    """Reach per radius (rows) and class (columns): one delta per class, grown through the radii in
    order and warm-started from the last, ``steps`` steps at each, so a ladder of radii costs about
    what one radius costs with all the steps."""
    idx = balanced_pick(labels, clf.num_classes, per_class, torch.Generator().manual_seed(seed))
    convs = [m for m in clf.network.modules() if isinstance(m, nn.Conv2d)]
    conv = convs[int(depth * (len(convs) - 1))]  # the detector rounds instead (0.5 -> another layer here)
    return reach_ladder(clf, images01[idx], conv, list(rels), steps)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--zoo", type=Path, default=Path("sample_models"))
    parser.add_argument("--smi-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--depth", type=float, default=0.75, help="relative depth of the convolution (0 first, 1 last)")
    parser.add_argument("--rel", default="0.1,0.15", help="radii relative to the mean feature norm")
    parser.add_argument("--ladder", action="store_true", help="grow one delta per class through the radii "
                        "(--steps at each) and print the reach at every radius")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--crossing", default="", help="with --ladder: per class, the first radius at which the "
                        "reach reaches each of these levels (comma-separated), scored on the small side")
    parser.add_argument("--smi-file", help="path pattern with {model} instead of --smi-dir/MODEL/smi.npz")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        clf = Classifier.from_onnx(args.zoo / f"{name}.onnx").eval()
        for p in clf.parameters():
            p.requires_grad_(False)
        synth = SynthSet.load(Path(args.smi_file.format(model=name)) if args.smi_file else args.smi_dir / name / "smi.npz")
        if args.ladder:
            started = time.time()
            rels = tuple(float(r) for r in args.rel.split(","))
            ladder = feature_reach_ladder(clf, synth.images01, synth.labels, args.depth, rels, args.steps)
            for rel, shares in zip(rels, ladder):
                index = anomaly_index(shares, side="high", floor=0.05)
                top = int(shares.argmax())
                print(f"| {name} | {args.depth} | {rel} | {top} ({shares[top]:.2f}, index {index[top]:.1f}) | "
                      f"{shares[0]:.2f} ({index[0]:.1f}) | {float(shares.median()):.2f} | "
                      + " ".join(f"{v:.2f}" for v in shares) + " |", flush=True)
            for level in (float(v) for v in args.crossing.split(",") if v):
                crossed = ladder >= level
                first = torch.where(crossed.any(0), crossed.float().argmax(0), torch.tensor(len(rels)))
                radius = torch.tensor([*rels, rels[-1] * 2])[first]  # never crossed: twice the last rung
                index = anomaly_index(radius, side="low", floor=0.005)
                ranked = radius.argsort(stable=True)
                print(f"{name} crossing {level}: first {int(ranked[0])} at {radius[ranked[0]]:.3f} (index "
                      f"{index[ranked[0]]:.1f}), second {int(ranked[1])} at {radius[ranked[1]]:.3f}; class 0 at "
                      f"{radius[0]:.3f} ({index[0]:.1f}); all " + " ".join(f"{v:.3f}" for v in radius), flush=True)
            print(f"{name}: {time.time() - started:.0f} s", flush=True)
            continue
        for rel in (float(r) for r in args.rel.split(",")):
            started = time.time()
            shares = feature_reach(clf, synth.images01, synth.labels, args.depth, rel)
            index = anomaly_index(shares, side="high", floor=0.05)
            top = int(shares.argmax())
            print(f"| {name} | {args.depth} | {rel} | {top} ({shares[top]:.2f}, index {index[top]:.1f}) | "
                  f"{shares[0]:.2f} ({index[0]:.1f}) | {float(shares.median()):.2f} | "
                  + " ".join(f"{v:.2f}" for v in shares) + f" | {time.time() - started:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
