"""The audits' purified models on the whole CIFAR-10 test set (measurement only).

``benchmarks/audit_time.py`` evaluates each audit on the committed 1,000-image subset, where one
image is 0.1 point and a 2-point accuracy difference sits within the noise. This script takes the purified models
such a run left (``DIR/MODEL/purified.onnx``) and measures them and the originals on all 10,000
test images with onnxruntime: ACC, ASR, RA and DER as ``auditor bench`` computes them, plus the
guard's status and the verdicts from each audit's report. Prints a markdown table.

``--bench-json`` also writes the rows as an ``auditor bench`` document (config ``smi_ibau``: the
audit *is* SMI + I-BAU, run as users run it), so that ``auditor bench --merge ... --matrix`` can put
the audits in the matrix's "ours" column; a row's seconds are the audit's own total.

    python benchmarks/audit_test_set.py runs/audit_t14 [--zoo sample_models] [--out runs/audit_t14/test_set.json]
        [--bench-json runs/audit_t14/bench.json]
    python benchmarks/audit_test_set.py --render docs/results/zoo_audits.json --write docs/bench.md

``--render`` turns the committed summary of such a run (``docs/results/zoo_audits.json``, which
the README's results table also reads) into docs/bench.md's "Audits on the zoo" table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import auditor.bench as auditor_bench
from auditor.attacks import attack_from_params
from auditor.data.cifar10 import load_cifar10
from auditor.evaluate import OnnxClassifier, evaluate
from auditor.zoo.manifest import read_manifest
from converters import load_onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markers import add_render_options, render_if_asked  # noqa: E402  (sibling script module)

BEGIN, END = "<!-- zoo-audits-table -->", "<!-- /zoo-audits-table -->"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _fig(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(document: dict) -> str:
    """The committed audits, one row per model (figures in %, as the document holds them)."""
    lines = ["| model | ACC before → after | drop | ASR before → after | RA after | DER | verdict | re-scan "
             "| wall s (detect, purify, re-scan) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in document["rows"]:
        verdict = r["verdict"] + (f" ({r['verdict_by']})" if r.get("verdict_by") else "")
        asr = "-" if r["asr_before"] is None else f"{_fig(r['asr_before'])} → {_fig(r['asr_after'])}"
        lines.append(f"| {r['model']} | {_fig(r['acc_before'])} → {_fig(r['acc_after'])} | {_fig(r['acc_drop'])} | "
                     f"{asr} | {_fig(r['ra_after'])} | {_fig(r['der'])} | {verdict} | {r['rescan']} | "
                     f"{r['wall_s']} ({r['detect_s']}, {r['purify_s']}, {r['rescan_s']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audits", type=Path, nargs="?", help="folder with MODEL/purified.onnx and MODEL/report/report.json")
    parser.add_argument("--zoo", type=Path, default=Path("sample_models"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--bench-json", type=Path, default=None, help="also write an `auditor bench` document")
    add_render_options(parser, "this committed summary")
    args = parser.parse_args(argv)
    if render_if_asked(args, render, BEGIN, END):
        return 0
    if args.audits is None:
        parser.error("give the audits folder, or --render")
    x, y = load_cifar10("test", args.data_dir)
    rows = []
    for entry in read_manifest(args.zoo)["models"]:
        folder = args.audits / entry["name"]
        if not (folder / "purified.onnx").exists():
            continue
        original = args.zoo / entry["file"]
        spec = load_onnx(original).spec
        attack = attack_from_params(entry["attack"], base_dir=args.zoo) if entry.get("attack") else None
        before = evaluate(OnnxClassifier(original, spec), x, y, attack).to_json()
        after = evaluate(OnnxClassifier(folder / "purified.onnx", spec), x, y, attack).to_json()
        report = json.loads((folder / "report" / "report.json").read_text())
        rows.append({"model": entry["name"], "before": before, "after": after,
                     **auditor_bench.row_metrics(before, after),
                     "acc_drop": round(100 * (before["acc"] - after["acc"]), 2),
                     "verdict": report["verdict"]["verdict"], "rescan": report["verdict"]["rescan"]["verdict"],
                     "guard": report["purification"]["status"], "seconds": report["timings"]["total"]})
        print(f"{entry['name']}: done", flush=True)
    print(f"\nCIFAR-10 test set, {len(x)} images\n")
    print("| model | ACC before → after | drop | ASR before → after | RA after | DER | verdict | re-scan | guard |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, a = r["before"], r["after"]
        print(f"| {r['model']} | {pct(b['acc'])} → {pct(a['acc'])} | {r['acc_drop']:.1f} | {pct(b.get('asr'))} → "
              f"{pct(a.get('asr'))} | {pct(a.get('ra'))} | {pct(r['der'])} | {r['verdict']} | {r['rescan']} | "
              f"{r['guard']} |")
    backdoored = [r for r in rows if r["after"].get("asr") is not None]
    clean = [r for r in rows if r["after"].get("asr") is None]
    if backdoored:
        print(f"\nbackdoored: mean ASR after {pct(sum(r['after']['asr'] for r in backdoored) / len(backdoored))}%, "
              f"max {pct(max(r['after']['asr'] for r in backdoored))}%, mean DER "
              f"{pct(sum(r['der'] for r in backdoored) / len(backdoored))}, largest drop "
              f"{max(r['acc_drop'] for r in backdoored):.1f} points")
    if clean:
        print(f"clean: largest drop {max(r['acc_drop'] for r in clean):.1f} points")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    if args.bench_json:
        args.bench_json.write_text(json.dumps(bench_document(args.audits, rows, len(x)), indent=2))
    return 0


def bench_document(audits: Path, rows: list[dict], test_images: int) -> dict:
    """The rows as ``auditor bench`` writes them: a no-defense row and an ``smi_ibau`` row per model."""
    bench_rows = []
    for r in rows:
        bench_rows.append({"model": r["model"], "config": "none", **auditor_bench.row_metrics(r["before"], r["before"]),
                           "seconds": 0.0})
        bench_rows.append({"model": r["model"], "config": "smi_ibau",
                           **auditor_bench.row_metrics(r["before"], r["after"]),
                           "seconds": r["seconds"], "guard": r["guard"]})
    return auditor_bench.bench_document(
        bench_rows,
        command=f"auditor audit (benchmarks/audit_time.py --out {audits}); benchmarks/audit_test_set.py {audits}",
        machine=f"{platform.machine()}, audits as benchmarks/audit_time.py ran them",
        test_set=f"CIFAR-10 test ({test_images:,})",
        reference_data="none: the audits use no real images",
    )


if __name__ == "__main__":
    sys.exit(main())
