"""Patch search on saved scan samples: from an empty mask against from the grid start, and where the flips go.

    python benchmarks/patch_on_scan_samples.py runs/smi_scan sample_models/*.onnx runs/holdout/*.onnx \
        --search grid:100 --search grid:300 --search empty:300

For each model, the samples ``DIR/MODEL.npz`` (the scan's quick inversion, all of them; else the
``.npz`` beside the model) are searched with the patch detector's settings (16 pixels, L1 0.05, batch
100) for each ``--search START:STEPS``, START ``grid`` (from ``grid_patch``'s square, as the detector)
or ``empty`` (from an empty mask). One JSON line per search: the flip rate, the
grid square's own flip rate, the share of the flips the most-receiving class takes, how many distinct
classes the source classes' flips mostly go to, and the mutual information (nats) between the
source class and the class a flip lands in (all-to-all's y -> y+1 mapping: high).
"""
import argparse
import json
from pathlib import Path

import torch

from auditor.inversion import SynthSet
from auditor.model import Classifier
from auditor.universal import grid_patch, untargeted_patch


def entropy(counts: torch.Tensor) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("samples", type=Path, help="folder of MODEL.npz scan samples")
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--search", action="append", default=[], metavar="START:STEPS",
                        help="grid:100 (the detector), grid:300, empty:300, ... (repeatable; default grid:100)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.models:
        clf = Classifier.from_onnx(path).eval()
        for p in clf.parameters():
            p.requires_grad_(False)
        saved = args.samples / f"{path.stem}.npz"
        x = SynthSet.load(saved if saved.exists() else path.with_suffix(".npz")).images01.float()
        k = clf.num_classes
        for search in args.search or ["grid:100"]:
            start_kind, steps = search.split(":")[0], int(search.split(":")[1])
            if start_kind not in ("grid", "empty"):
                raise SystemExit(f"--search wants grid:STEPS or empty:STEPS, got {search!r}")
            draw = torch.Generator().manual_seed(0)
            start = grid_patch(clf, x, pixels=16, generator=draw) if start_kind == "grid" else None
            found = untargeted_patch(clf, x, pixels=16, steps=steps, l1=0.05, batch_size=100, generator=draw,
                                     start=start)
            flipped = found.stamped != found.own
            joint = torch.zeros(k, k)
            joint.index_put_((found.own[flipped], found.stamped[flipped]), torch.ones(int(flipped.sum())),
                             accumulate=True)
            rows = [a for a in range(k) if joint[a].sum() > 0]
            conditional = sum(float(joint[a].sum() / joint.sum()) * entropy(joint[a]) for a in rows)
            print(json.dumps({
                "model": path.stem, "start": start_kind, "steps": steps, "flip_rate": round(found.flip_rate, 3),
                "grid_square_flip_rate": round(start.flip_rate, 3) if start else None,
                "largest_share": round(found.largest_share(k), 2),
                "distinct_destinations": len({int(joint[a].argmax()) for a in rows}),
                "mutual_information": round(entropy(joint.sum(0)) - conditional, 2) if rows else 0.0,
                "box": found.box}), flush=True)


if __name__ == "__main__":
    main()
