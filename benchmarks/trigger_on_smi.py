"""Does a zoo model's real trigger act on its synthetic (SMI) samples as it does on real images?

Every detector here works from the model and its SMI samples alone. If the attack's own trigger,
stamped on those samples, does not send them into the target, no detector that searches for a
trigger on them can find it. This applies each zoo model's trigger (from its manifest entry: the
measurement side, never the audit path) to its saved SMI samples and to the committed real test
subset, and prints the share of the non-target samples the model then assigns to the target.

    python benchmarks/trigger_on_smi.py --smi 'runs/smi_scan/{model}.npz' sample_models/cifar10_sig.onnx ...

All-to-all models are skipped (no single target).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from auditor.attacks import attack_from_params
from auditor.data.formats import load_npz
from auditor.evaluate import OnnxClassifier
from auditor.inversion import SynthSet
from converters.load import load_onnx


def into_target(classifier: OnnxClassifier, x_nhwc: np.ndarray, attack, target: int) -> tuple[float, int]:
    """(share of the images not predicted as ``target`` that the trigger sends there, their count)."""
    clean = classifier.predict(x_nhwc)
    keep = clean != target
    hit = classifier.predict(attack.apply(x_nhwc[keep])) == target
    return float(hit.mean()) if keep.any() else float("nan"), int(keep.sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--smi", required=True, help="SMI file pattern with {model}")
    parser.add_argument("--manifest", type=Path, default=Path("sample_models/manifest.json"))
    parser.add_argument("--data", type=Path, default=Path("sample_models/cifar10_test_1000.npz"))
    args = parser.parse_args(argv)
    entries = {Path(e["file"]).stem: e for e in json.loads(args.manifest.read_text())["models"]}
    real, _ = load_npz(args.data)
    print("| model | attack (target) | SMI samples moved into the target | real test images moved |")
    print("|---|---|---|---|")
    for path in args.models:
        entry = entries[path.stem]
        if not entry.get("attack") or entry["attack"].get("all_to_all"):
            continue
        attack = attack_from_params(entry["attack"], base_dir=args.manifest.parent)
        classifier = OnnxClassifier(path, load_onnx(path).spec)
        synth = SynthSet.load(args.smi.format(model=path.stem))
        smi = np.ascontiguousarray((synth.images01 * 255).round().byte().permute(0, 2, 3, 1).numpy())
        target = int(entry["target"])
        on_smi, n_smi = into_target(classifier, smi, attack, target)
        on_real, n_real = into_target(classifier, real, attack, target)
        print(f"| {path.stem} | {attack.name} ({target}) | {on_smi:.2f} of {n_smi} | {on_real:.2f} of {n_real} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
