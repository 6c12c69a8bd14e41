"""One purifier setting on one zoo model, measured on the tuning split (for choosing defaults).

Runs a purifier (registry name or steps joined by commas, and ``key=value`` config overrides) on the model's cached SMI samples
(90%, the guard's 10% held out) with 2,500 generator anchors, as an audit does but without the
guard, and prints one JSON line: ACC and ASR before and after on 2,000 CIFAR-10 *training* images
(seed 123; never the test set), the guard's prior-probe agreement (500 generator samples, seed 7),
holdout agreement, seconds, per-round figures and notes. Appends it to ``--log``.

    python benchmarks/tune_purifier.py cifar10_badnets_all2all recipe ibau.inner_mode=untargeted [--smi-dir runs/bench]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from auditor.attacks import attack_from_params
from auditor.data.cifar10 import load_cifar10
from auditor.inversion import SynthSet
from auditor.model import Classifier
from auditor.pipeline import AuditOptions, _prior_samples
from auditor.purify import get_purifier
from auditor.zoo.manifest import read_manifest


def tuning_split(count: int = 2000, seed: int = 123, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The tuning split every purification default was chosen on (CIFAR-10 *training* images)."""
    x, y = load_cifar10("train", data_dir)
    idx = np.random.default_rng(seed).choice(len(x), count, replace=False)
    return x[idx], y[idx]


def to01(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255


def measure(clf: Classifier, x: np.ndarray, y: np.ndarray, attack) -> tuple[float, float | None]:
    """ACC on ``x``, and ASR on its triggered images that count for the attack (None without one)."""
    acc = float((clf.predict(to01(x)).numpy() == y).mean())
    if attack is None:
        return acc, None
    keep = attack.attack_mask(y)
    pred = clf.predict(to01(attack.apply(x[keep]))).numpy()
    return acc, float((pred == attack.target_label(y[keep])).mean())


def parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("method")
    parser.add_argument("overrides", nargs="*", help="purifier config as key=value (JSON values)")
    parser.add_argument("--zoo", type=Path, default=Path("sample_models"))
    parser.add_argument("--smi-dir", type=Path, default=Path("runs/bench"), help="holds MODEL/smi.npz")
    parser.add_argument("--log", type=Path, default=Path("runs/tune_purifier.jsonl"))
    args = parser.parse_args(argv)
    config = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.overrides)}
    entry = {m["name"]: m for m in read_manifest(args.zoo)["models"]}[args.model]
    attack = attack_from_params(entry["attack"], base_dir=args.zoo) if entry.get("attack") else None
    clf = Classifier.from_onnx(args.zoo / entry["file"])
    x, y = tuning_split()
    before = measure(clf, x, y, attack)
    train, holdout = SynthSet.load(args.smi_dir / args.model / "smi.npz").split(0.1, seed=0)
    probe = _prior_samples(clf, AuditOptions(), 500, 7)
    anchors = _prior_samples(clf, AuditOptions(), 2500, 11)
    probe_before = clf.predict(probe)
    started = time.time()
    result = get_purifier(args.method, **config).purify(clf, train.images01, train.labels, anchors=anchors,
                                                        generator=torch.Generator().manual_seed(0))
    seconds = time.time() - started
    after = measure(clf, x, y, attack)
    row = {"model": args.model, "method": args.method, "config": config, "acc_asr_before": before,
           "acc_asr_after": after, "prior_agreement": round(float((clf.predict(probe) == probe_before).float().mean()), 3),
           "holdout_agreement": round(float((clf.predict(holdout.images01) == holdout.labels).float().mean()), 3),
           "seconds": round(seconds), "rounds": result.rounds, "notes": result.notes}
    print(json.dumps(row), flush=True)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as log:
        log.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
