"""Patch search from an empty mask against the search begun at the grid's best square, per sample set.

    python benchmarks/patch_start.py cifar10_badnets_all2all=runs/smi_final/cifar10_badnets_all2all-smi.npz ...

Each argument is a zoo model and an SMI set of it (``auditor invert -o``); the search runs on the set's
purification split (the audit's 10% hold-out removed) with the purifier's settings and search seed.
Prints one JSON line per set: the grid square's flip rate and place, then for each search its flip
rate, the box its mask spans, the largest share of the flips one class receives, and its seconds.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from auditor.inversion import SynthSet
from auditor.model import Classifier
from auditor.purify.ibau import IBAUConfig
from auditor.universal import grid_patch, untargeted_patch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="+", metavar="MODEL=NPZ")
    parser.add_argument("--zoo", type=Path, default=Path("sample_models"))
    parser.add_argument("--grid-seed", type=int, default=2, help="the grid's probe draw (2: as the purifier at seed 0)")
    args = parser.parse_args()
    c = IBAUConfig()
    for spec in args.sets:
        name, path = spec.split("=", 1)
        classifier = Classifier.from_onnx(args.zoo / f"{name}.onnx").eval()
        for param in classifier.parameters():
            param.requires_grad_(False)
        train, _ = SynthSet.load(Path(path)).split(0.1, seed=0)
        started = time.perf_counter()
        start = grid_patch(classifier, train.images01, pixels=c.patch_pixels, generator=torch.Generator().manual_seed(args.grid_seed))
        row = {"model": name, "set": path, "grid": {"flip_rate": round(start.flip_rate, 3), "top": start.top,
                                                    "left": start.left, "value": start.value,
                                                    "seconds": round(time.perf_counter() - started, 1)}}
        for label, begin in (("from_empty", None), ("from_grid", start)):
            started = time.perf_counter()
            search = untargeted_patch(classifier, train.images01, pixels=c.patch_pixels, steps=c.patch_steps,
                                      l1=c.patch_l1, batch_size=c.batch_size, start=begin,
                                      generator=torch.Generator().manual_seed(1))
            row[label] = {"flip_rate": round(search.flip_rate, 3), "box": search.box,
                          "largest_share": round(search.largest_share(classifier.num_classes), 3),
                          "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
