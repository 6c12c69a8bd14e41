"""Are SMI samples as stable as real data, and more stable than the ablations?

For every zoo model (or the ones named), per-sample stability figures (confidence; share of
predictions unchanged under random input noise, random parameter noise, worst-case input and
worst-case parameters) for:
  real      2,500 CIFAR-10 *test* images (250 per class), true labels
  smi       the default stabilized inversion, 250 per class
  nostab    --no-stability
  pixels    --pixels
  public    2,500 Tiny-ImageNet images labelled by the model's own predictions (no inversion)
and a trigger check: how often a clean zoo model agrees with the label of the SMI samples made
for the backdoored model's target class, next to its agreement on the other classes (samples
that reach the target class through the trigger instead of class features would lower it).

    python benchmarks/smi_stability.py [--model NAME ...] [--per-class 250] [--steps 200] [--out docs/smi]
                                       [--reuse DIR ...]
    python benchmarks/smi_stability.py --render docs/smi/smi_stability.json --write docs/inversion.md

Every sample set is also scored per class (``per_class`` in the JSON, and
``smi_stability_per_class.md``): a mean can hide one class whose samples are unstable.
``--reuse DIR`` (repeatable) scores sample sets saved by an earlier run (DIR/MODEL-CONFIG.npz) or
by ``auditor bench`` (DIR/MODEL/smi.npz) instead of inverting again; their inversion time is taken
from the file's own summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from auditor.data.cifar10 import load_cifar10
from auditor.data.tinyimagenet import load_tinyimagenet
from auditor.inversion import (InversionConfig, StabilityConfig, SynthSet, invert, save_class_grid,
                               stability_scores, summarize)
from auditor.inversion.diversity import pixel_diversity
from auditor.model import Classifier
from auditor.zoo.manifest import read_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markers import add_render_options, render_if_asked  # noqa: E402  (sibling script module)

BEGIN, END = "<!-- smi-stability-table -->", "<!-- /smi-stability-table -->"

KEYS = ("confidence", "input_noise", "param_noise", "worst_input", "worst_param")
# At the calibrated radii every SMI sample is stable; 4x radii (real data: roughly 20-45% stable)
# separate the sample sets that saturate there.
HARD = StabilityConfig(input_noise=16 / 255, param_noise=0.05, worst_input_eps=4 / 255, worst_param_rho=0.01)
HARD_KEYS = ("input_noise", "param_noise", "worst_input", "worst_param")


def classifier_for(path: Path) -> Classifier:
    return Classifier.from_onnx(path)


def to01(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255


def balanced(x: np.ndarray, y: np.ndarray, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.nonzero(y == c)[0], per_class, replace=False) for c in range(10)])
    return x[idx], y[idx]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", default="sample_models")
    parser.add_argument("--model", action="append")
    parser.add_argument("--per-class", type=int, default=250)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--configs", default="real,smi,nostab,pixels,public")
    parser.add_argument("--out", default="runs/smi")
    parser.add_argument("--reuse", type=Path, action="append", default=[],
                        help="folder with MODEL-CONFIG.npz from an earlier run, or MODEL/smi.npz from `auditor bench` "
                             "(same default inversion): score those samples instead of inverting again")
    add_render_options(parser, "this smi_stability.json")
    args = parser.parse_args(argv)
    if render_if_asked(args, render, BEGIN, END):
        return 0
    zoo, out = Path(args.zoo), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(zoo)
    entries = [m for m in manifest["models"] if not args.model or m["name"] in args.model]
    clean_refs = [m for m in manifest["models"] if not m.get("attack")]
    x_test, y_test = load_cifar10("test")
    x_real, y_real = balanced(x_test, y_test, args.per_class)
    x_pub, _, _ = load_tinyimagenet()
    x_pub = x_pub[np.random.default_rng(0).choice(len(x_pub), 10 * args.per_class, replace=False)]
    base = InversionConfig(per_class=args.per_class)
    if args.steps:
        base = replace(base, steps=args.steps)
    configs = args.configs.split(",")
    results = json.loads((out / "smi_stability.json").read_text()) if (out / "smi_stability.json").exists() else {}
    for entry in entries:
        clf = classifier_for(zoo / entry["file"])
        row: dict = results.get(entry["name"], {})
        for config in configs:
            started = time.perf_counter()
            if config == "real":
                images, labels = to01(x_real), torch.from_numpy(y_real).long()
                scores = stability_scores(clf, images, labels)
            elif config == "public":
                images = to01(x_pub)
                labels = clf.predict(images)
                scores = stability_scores(clf, images, labels)
            else:
                cached = find_cached(args.reuse, entry["name"], config)
                if cached is not None and not args.steps and args.per_class == 250:
                    synth = SynthSet.load(cached)
                    started -= float(synth.summary.get("seconds", {}).get("total", 0.0))  # its inversion time
                    print(f"{entry['name']} {config}: scoring {cached}", flush=True)
                else:
                    cfg = replace(base, stability=config != "nostab")
                    synth = invert(clf, cfg, pixels=config == "pixels")
                images, labels, scores = synth.images01, synth.labels, synth.scores
                save_class_grid(images, labels, 10, out / f"{entry['name']}-{config}.png", per_row=8, scale=1)
                synth.save(out / f"{entry['name']}-{config}.npz")
                if config == "smi" and entry.get("attack") and entry["attack"].get("target") is not None:
                    row["trigger_check"] = trigger_check(images, labels, int(entry["attack"]["target"]), clean_refs, zoo)
            seconds = time.perf_counter() - started
            summary, hard = summarize(scores, labels, 10), summarize(stability_scores(clf, images, labels, HARD), labels, 10)
            spread = pixel_diversity(images, labels, 10)
            row[config] = {**summary["overall"], "diversity": spread["spread"],
                           "seconds": round(seconds, 1), "n": int(len(labels)),
                           "hard": {k: hard["overall"][k] for k in HARD_KEYS},
                           "per_class": {c: {**figures, "hard": {k: hard["per_class"][c][k] for k in HARD_KEYS},
                                             "diversity": spread["per_class"].get(c, {}).get("spread")}
                                         for c, figures in summary["per_class"].items()}}
            print(entry["name"], config, {k: v for k, v in row[config].items() if k != "per_class"}, flush=True)
            results[entry["name"]] = row
            (out / "smi_stability.json").write_text(json.dumps(results, indent=2))
    (out / "smi_stability.md").write_text(render(results))
    (out / "smi_stability_per_class.md").write_text(render_per_class(results))
    print(render(results))
    return 0


def find_cached(folders: list[Path], model: str, config: str) -> Path | None:
    """A saved sample set for ``model``/``config`` in the --reuse folders (real and public never are)."""
    for folder in folders:
        for path in (folder / f"{model}-{config}.npz", folder / model / f"{config}.npz"):
            if path.exists():
                return path
    return None


def trigger_check(images: torch.Tensor, labels: torch.Tensor, target: int, clean_refs: list[dict], zoo: Path) -> dict:
    """Agreement of clean zoo models with the intended labels, on the target class vs the others."""
    check = {}
    for ref in clean_refs:
        pred = classifier_for(zoo / ref["file"]).predict(images)
        ok = (pred == labels).float()
        check[ref["name"]] = {"target_class": round(float(ok[labels == target].mean()), 4),
                              "other_classes": round(float(ok[labels != target].mean()), 4),
                              "predicted_as_target_from_other_classes": round(
                                  float((pred[labels != target] == target).float().mean()), 4)}
    return check


def render(results: dict) -> str:
    lines = ["| model | samples | n | confidence | input noise | param noise | worst input | worst param "
             "| 4x: input noise | param noise | worst input | worst param | diversity | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        for config in ("real", "smi", "nostab", "pixels", "public"):
            if config in row:
                r = row[config]
                hard = r.get("hard", {})
                lines.append(f"| {name} | {config} | {r['n']} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) + " | "
                             + " | ".join(f"{hard[k]:.3f}" if k in hard else "-" for k in HARD_KEYS)
                             + f" | {r['diversity']:.3f} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


PER_CLASS_ROWS = (("confidence", "confidence", False), ("input noise", "input_noise", False),
                  ("param noise", "param_noise", False), ("worst input", "worst_input", False),
                  ("worst param", "worst_param", False), ("4x worst input", "worst_input", True),
                  ("4x worst param", "worst_param", True), ("diversity", "diversity", False))


def render_per_class(results: dict) -> str:
    """One table per model: a row per (sample set, figure), a column per class."""
    out = ["# SMI stability per class", "",
           "Made by `benchmarks/smi_stability.py` with `smi_stability.md` (the per-model means); the",
           "columns are the samples' labels (real: true labels; public: the model's own predictions).",
           "Figures: mean confidence in the label, and the share of labels unchanged under each perturbation",
           "at the calibrated radii and at 4x radii (`HARD` in the script); diversity is the within-class",
           "spread of 8x8 grey thumbnails (`auditor.inversion.diversity`; about 1.41 for unrelated images).", ""]
    for name, row in results.items():
        classes = sorted({int(c) for config in row.values() if isinstance(config, dict)
                          for c in config.get("per_class", {})})
        if not classes:
            continue
        out += [f"## {name}", "", "| samples | figure | " + " | ".join(map(str, classes)) + " | min |",
                "|---|---|" + "---|" * (len(classes) + 1)]
        for config in ("real", "smi", "nostab", "pixels", "public"):
            per_class = row.get(config, {}).get("per_class")
            if not per_class:
                continue
            for label, key, hard in PER_CLASS_ROWS:
                values = [(per_class[str(c)]["hard"] if hard else per_class[str(c)]).get(key) if str(c) in per_class
                          else None for c in classes]
                shown = [v for v in values if v is not None]
                lowest = f"{min(shown):.2f}" if shown else "-"
                out.append(f"| {config} | {label} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in values)
                           + f" | {lowest} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
