"""How much does pruning cost, and does the guard's prior probe see it? (calibration of the guard)

For each zoo model: CLP at several thresholds u and ANP (masks learned once on the model's SMI
samples) at several pruning shares, each applied to the *original* model and undone before the
next. Per setting: accuracy drop and ASR on 2,000 CIFAR-10 *training* images (seed 123, the
tuning split; never the test set) and the guard's data-free signal, agreement with the original
on 500 unconditioned generator samples (the guard's probe, seed 7). One JSON line per setting.

    python benchmarks/pruning_calibration.py --smi-dir runs/bench [--model NAME ...] [--out docs/pruning_calibration.jsonl]
    python benchmarks/pruning_calibration.py --render docs/pruning_calibration.jsonl --write docs/purification.md

``--smi-dir`` holds ``MODEL/smi.npz`` from ``auditor bench`` (or ``auditor invert -o DIR/MODEL/smi.npz``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from auditor.attacks import attack_from_params
from auditor.inversion import SynthSet
from auditor.model import Classifier
from auditor.pipeline import AuditOptions, _prior_samples
from auditor.purify import CLP, restore, snapshot
from auditor.purify.anp import ANPConfig, learn_masks
from auditor.purify.neurons import masked_conv_layers, prune_lowest
from auditor.zoo.manifest import read_manifest
from markers import emit, json_lines  # noqa: E402  (sibling script module)
from tune_purifier import measure, tuning_split  # the sibling script: the same split and measurement

CLP_THRESHOLDS = (1.5, 2.0, 2.5, 3.0)
ANP_SHARES = (0.01, 0.02, 0.03, 0.05, 0.08)
BEGIN, END = "<!-- pruning-table -->", "<!-- /pruning-table -->"


def calibrate(zoo: Path, entry: dict, smi: Path, x: np.ndarray, y: np.ndarray) -> list[dict]:
    attack = attack_from_params(entry["attack"], base_dir=zoo) if entry.get("attack") else None
    classifier = Classifier.from_onnx(zoo / entry["file"])
    train, _ = SynthSet.load(smi).split(0.1, seed=0)  # the audit's split: the guard's holdout stays out
    probe = _prior_samples(classifier, AuditOptions(), 500, 7)
    probe_pred = classifier.predict(probe)

    acc_before, _ = measure(classifier, x, y, attack)
    state = snapshot(classifier)
    rows = []

    def record(kind: str, strength: float, pruned: int) -> None:
        acc, asr = measure(classifier, x, y, attack)
        rows.append({"model": entry["name"], "kind": kind, "strength": strength, "pruned": pruned,
                     "acc_drop": round(100 * (acc_before - acc), 2), "asr": None if asr is None else round(100 * asr, 1),
                     "prior_agreement": round(float((classifier.predict(probe) == probe_pred).float().mean()), 3)})
        print(json.dumps(rows[-1]), flush=True)
        restore(classifier, state)

    for u in CLP_THRESHOLDS:
        result = CLP(u=u).purify(classifier)
        record("clp", u, sum(map(len, result.pruned_channels.values())))
    config = ANPConfig(iterations=300)
    masks, average = learn_masks(classifier, masked_conv_layers(classifier, config.min_channels), train.images01,
                                 train.labels, config, torch.Generator().manual_seed(0))
    for share in ANP_SHARES:
        pruned = prune_lowest(masked_conv_layers(classifier, config.min_channels), masks, config.threshold, share,
                              scores=average)
        record("anp", share, sum(map(len, pruned.values())))
    return rows


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    asr = "-" if row["asr"] is None else f"{row['asr']:.1f}"
    return f"{row['acc_drop']:.1f} / {asr} / {row['prior_agreement']:.2f}"


def render(rows: list[dict]) -> str:
    """Per model and setting: accuracy drop (points) / ASR % / the guard's probe agreement."""
    settings = [("clp", u, f"CLP u {u:g}") for u in CLP_THRESHOLDS] + [("anp", s, f"ANP {100 * s:g}%") for s in ANP_SHARES]
    lines = ["| model | " + " | ".join(label for _, _, label in settings) + " |", "|---|" + "---|" * len(settings)]
    for name in dict.fromkeys(r["model"] for r in rows):
        by_setting = {(r["kind"], r["strength"]): r for r in rows if r["model"] == name}
        cells = [_cell(by_setting.get((kind, strength))) for kind, strength, _ in settings]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=Path("sample_models"))
    parser.add_argument("--smi-dir", type=Path)
    parser.add_argument("--model", action="append")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/pruning_calibration.jsonl"))
    parser.add_argument("--render", type=Path, help="Print the table of these JSON lines and exit.")
    parser.add_argument("--write", type=Path, help="With --render: put the table between the pruning-table markers of this page.")
    args = parser.parse_args(argv)
    if args.render:
        emit(render(json_lines(args.render)), args.write, BEGIN, END)
        return 0
    if args.smi_dir is None:
        parser.error("--smi-dir is required (or --render)")
    x, y = tuning_split(data_dir=args.data_dir)
    entries = [m for m in read_manifest(args.zoo)["models"] if not args.model or m["name"] in args.model]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        for entry in entries:
            for row in calibrate(args.zoo, entry, args.smi_dir / entry["name"] / "smi.npz", x, y):
                out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
