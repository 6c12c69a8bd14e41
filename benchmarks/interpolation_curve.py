"""What the guard's interpolation trades, measured on audits already run (calibration of the guard).

For each zoo model with an audit folder (``DIR/MODEL/purified.onnx``, as ``benchmarks/audit_time.py``
leaves them), the purified weights are mixed back towards the original ones, theta0 + alpha *
(theta - theta0), pruned weights staying zero, exactly as the guard does. Per alpha: the guard's
data-free signal (agreement with the original on 500 unconditioned generator samples, seed 7: the
guard's own probe) against accuracy drop and ASR on 2,000 CIFAR-10 *training* images (seed 123, the
tuning split; never the test set). One JSON line per (model, alpha); a table at the end.

    python benchmarks/interpolation_curve.py runs/audit_t13q [--model NAME ...] [--out runs/interpolation.jsonl]
    python benchmarks/interpolation_curve.py --render docs/interpolation_curve.jsonl --write docs/purification.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from auditor.attacks import attack_from_params
from auditor.model import Classifier
from auditor.pipeline import AuditOptions, _prior_samples
from auditor.purify import snapshot
from auditor.purify.guard import interpolate
from auditor.zoo.manifest import read_manifest
from markers import emit, json_lines  # noqa: E402  (sibling script module)
from tune_purifier import measure, tuning_split  # the sibling script: the same split and measurement

ALPHAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
SHOWN = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)  # the page's columns; the JSON lines hold every alpha
BEGIN, END = "<!-- interpolation-table -->", "<!-- /interpolation-table -->"


def load(path: Path) -> Classifier:
    return Classifier.from_onnx(path).eval()


def curve(zoo: Path, entry: dict, purified: Path, x, y) -> list[dict]:
    attack = attack_from_params(entry["attack"], base_dir=zoo) if entry.get("attack") else None
    classifier = load(zoo / entry["file"])
    original = snapshot(classifier)
    after = snapshot(load(purified))
    if set(after) != set(original):
        raise SystemExit(f"{purified}: not a purified copy of {entry['file']} (parameter names differ)")
    probe = _prior_samples(classifier, AuditOptions(), 500, 7)
    probe_pred = classifier.predict(probe)
    acc_before, _ = measure(classifier, x, y, attack)
    rows = []
    for alpha in ALPHAS:
        interpolate(classifier, original, after, alpha)
        acc, asr = measure(classifier, x, y, attack)
        rows.append({"model": entry["name"], "alpha": alpha, "acc_drop": round(100 * (acc_before - acc), 2),
                     "asr": None if asr is None else round(100 * asr, 1),
                     "prior_agreement": round(float((classifier.predict(probe) == probe_pred).float().mean()), 3)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def render(rows: list[dict], alphas: tuple[float, ...] = SHOWN) -> str:
    """Per model and share alpha of the weight change kept: probe agreement / accuracy drop (points) / ASR %."""
    lines = ["| model | " + " | ".join(f"α {a:g}" for a in alphas) + " |", "|---|" + "---|" * len(alphas)]
    for name in dict.fromkeys(r["model"] for r in rows):
        by_alpha = {r["alpha"]: r for r in rows if r["model"] == name}
        cells = [f"{r['prior_agreement']:.2f} / {r['acc_drop']:.1f}" + (f" / {r['asr']:.0f}" if r["asr"] is not None else "")
                 if (r := by_alpha.get(a)) else "-" for a in alphas]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audits", type=Path, nargs="?", help="folder with MODEL/purified.onnx per zoo model")
    parser.add_argument("--zoo", type=Path, default=Path("sample_models"))
    parser.add_argument("--model", action="append")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/interpolation.jsonl"))
    parser.add_argument("--render", type=Path, help="Print the table of these JSON lines and exit.")
    parser.add_argument("--write", type=Path, help="With --render: put the table between the interpolation-table markers of this page.")
    args = parser.parse_args(argv)
    if args.render:
        emit(render(json_lines(args.render)), args.write, BEGIN, END)
        return 0
    if args.audits is None:
        parser.error("give the audits folder, or --render")
    x, y = tuning_split(data_dir=args.data_dir)
    rows = []
    for entry in read_manifest(args.zoo)["models"]:
        purified = args.audits / entry["name"] / "purified.onnx"
        if (args.model and entry["name"] not in args.model) or not purified.exists():
            continue
        rows += curve(args.zoo, entry, purified, x, y)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print("\n" + render(rows, ALPHAS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
