"""Run any registered detectors on saved SMI samples and print one row per model and detector.

For probing a detector's separation on fixed samples without re-inverting: every class's figure
(``share`` where the detector has one), the top class, its anomaly index, whether it may vote, and
the attack's true target from the zoo manifest (measurement only: the detectors never see it).

    python benchmarks/detector_on_smi.py --smi 'runs/smi_scan/{model}.npz' --detector warp_reach \\
        --detector signal_reach sample_models/*.onnx
    python benchmarks/detector_on_smi.py ... --set warp_reach.max_shift=1.0
    python benchmarks/detector_on_smi.py --smi 'runs/smi_full/{model}.npz' --detector patch --relabel \\
        DIR/cifar10_wanet.onnx   # a purified model under its original's name, as the audit's re-scan sees it
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from auditor.detect import get_detector
from auditor.inversion import SynthSet, invert
from auditor.model import Classifier
from auditor.pipeline import scan_inversion


def parse_settings(items: list[str]) -> dict[str, dict[str, object]]:
    """``detector.field=value`` -> {detector: {field: value}}, values read as JSON where they parse."""
    settings: dict[str, dict[str, object]] = {}
    for item in items:
        key, _, raw = item.partition("=")
        name, _, fieldname = key.partition(".")
        if not fieldname or not raw:
            raise SystemExit(f"--set wants detector.field=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        settings.setdefault(name, {})[fieldname] = value
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--smi", required=True, help="SMI file pattern with {model}")
    parser.add_argument("--detector", action="append", required=True, help="registry name (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="detector.field=value (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--manifest", type=Path, default=Path("sample_models/manifest.json"))
    parser.add_argument("--relabel", action="store_true",
                        help="label the samples with each model's own predictions, as the audit's re-scan of a "
                             "purified model does")
    parser.add_argument("--jsonl", type=Path, help="append one JSON line per model and detector")
    parser.add_argument("--invert-missing", action="store_true",
                        help="invert a missing sample file as the scan does at --seed, and save it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = parse_settings(args.set)
    detectors = [get_detector(name, **settings.get(name, {})) for name in args.detector]
    targets = {}
    if args.manifest.exists():
        for entry in json.loads(args.manifest.read_text())["models"]:
            attack = entry.get("attack") or {}
            targets[Path(entry["file"]).stem] = "all" if attack.get("all_to_all") else entry.get("target")
    print("| model | target | detector | share per class | top (index) | votes | flip rate | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.models:
        clf = Classifier.from_onnx(path).eval()
        smi = Path(args.smi.format(model=path.stem))
        if args.invert_missing and not smi.exists():
            torch.manual_seed(args.seed)  # as the scan seeds torch before it inverts
            invert(clf, dataclasses.replace(scan_inversion(), seed=args.seed)).save(smi)
        synth = SynthSet.load(smi)
        labels = clf.predict(synth.images01.float()) if args.relabel else synth.labels
        for detector in detectors:
            result = detector.detect(clf, synth.images01.float(), labels, seed=args.seed)
            top, index = result.top()
            figures = " ".join(f"{row.get('share', row.get('reach', row.get('share_of_flips', float('nan')))):.2f}"
                               for row in result.per_class)
            flip = result.summary.get("flip_rate")  # the patch detector's model-level figure
            print(f"| {path.stem} | {targets.get(path.stem, '-')} | {detector.name} | {figures} | {top} ({index:.2f}) "
                  f"| {'yes' if result.conclusive_for(top) else 'no'} | {'-' if flip is None else f'{flip:.3f}'} "
                  f"| {result.seconds:.1f} |", flush=True)
            if args.jsonl:
                with args.jsonl.open("a") as fh:
                    fh.write(json.dumps({"model": path.stem, "seconds": result.seconds, **result.to_json()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
