"""The held-apart table: the audit and the scan on models and attack families nobody tuned on.

The held-apart models (``heldapart_models/``, recipes in ``auditor.zoo.recipes.HELD_APART_RECIPES``)
use architectures and attack families that the sample zoo, on which every default was chosen, does
not have. Their figures are reported, never used to choose a default. This script joins three
committed JSON files into one table: the models' manifest (the truth: family, target, figures on
the test set of each model's domain), a fleet scan's ``index.json`` (the scan's verdicts) and an
``audit_draws.py`` document (the audits, measured on the same test sets: CIFAR-10 or MNIST).

    auditor fleet scan heldapart_models --workers 2 -o runs/fleet_ha
    cp runs/fleet_ha/index.json docs/results/heldapart_scan.json
    python benchmarks/audit_draws.py --manifest heldapart_models/manifest.json --model heldapart_models/NAME.onnx \\
        --draws 0:1 --eval-data runs/cifar10_test.npz --out runs/draws_ha_NAME   # MNIST models: runs/mnist_test.npz
    python benchmarks/held_apart.py --collect runs/draws_ha_*/draws.json --draws docs/results/draws_heldapart.json
    python benchmarks/held_apart.py --scans docs/results/heldapart_scan.json \\
        --draws docs/results/draws_heldapart.json --write docs/bench.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- heldapart-table -->", "<!-- /heldapart-table -->"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_draws import code_lines, summarize  # noqa: E402  (sibling script modules)
from markers import emit  # noqa: E402


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _scan_rows(index: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(row["path"]).stem: row for row in index.get("models", [])}


def detection_outcome(truth: dict[str, Any], verdict: str | None, targets: list[int] | None) -> str:
    """'found' (backdoored, true target listed), 'wrong target', 'missed', 'false alarm' or 'right' (clean)."""
    if verdict is None:
        return "-"
    if truth.get("attack") is None:
        return "false alarm" if verdict == "backdoored" else "right"
    if verdict != "backdoored":
        return "missed" if verdict == "clean" else "suspicious only"
    if truth["attack"].get("all_to_all"):
        return "found"
    return "found" if truth.get("target") in (targets or []) else "wrong target"


def rows(manifest: dict[str, Any], scans: dict[str, Any] | None, draws: dict[str, Any] | None) -> list[dict[str, Any]]:
    scanned = _scan_rows(scans) if scans else {}
    audited = {s["model"]: s for s in summarize(draws["rows"])} if draws else {}
    runs = {}
    for row in (draws or {}).get("rows", []):
        runs.setdefault(row["model"], []).append(row)
    out = []
    for entry in manifest["models"]:
        name = Path(entry["file"]).stem
        scan = scanned.get(name) or {}
        audit = audited.get(name)
        audit_runs = [r for r in runs.get(name, []) if r.get("after")]
        out.append({
            "model": name, "family": (entry["attack"] or {}).get("name", "none (clean)"),
            "architecture": entry["architecture"], "target": entry.get("target"),
            "acc": entry["metrics"]["test"]["acc"], "asr": entry["metrics"]["test"].get("asr"),
            "scan": scan.get("verdict"), "scan_targets": scan.get("suspected_targets"),
            "scan_outcome": detection_outcome(entry, scan.get("verdict"), scan.get("suspected_targets")),
            "audit_verdicts": [r["verdict"] for r in audit_runs],
            "audit_outcomes": [detection_outcome(entry, r["verdict"], r.get("targets")) for r in audit_runs],
            "audit": audit, "exits": [r["exit"] for r in audit_runs],
        })
    return out


def render(manifest: dict[str, Any], scans: dict[str, Any] | None, draws: dict[str, Any] | None) -> str:
    table = rows(manifest, scans, draws)
    lines = ["| model | attack family | architecture | target | ACC / ASR before % | scan: verdict (targets) | "
             "audit: verdict | ASR after % mean / worst | ACC drop mean / worst (points) | purified | exit codes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        a = r["audit"]
        scan = "-" if r["scan"] is None else f"{r['scan']} ({', '.join(map(str, r['scan_targets'] or [])) or '-'}): {r['scan_outcome']}"
        audit_verdict = ", ".join(f"{v}: {o}" for v, o in zip(r["audit_verdicts"], r["audit_outcomes"])) or "-"
        removal = "-" if a is None else f"{_pct(a['asr_mean'])} / {_pct(a['asr_worst'])}"
        drop = "-" if a is None else f"{100 * a['drop_mean']:.1f} / {100 * a['drop_worst']:.1f}"
        purified = "-" if a is None else ", ".join(map(str, a["purified"]))
        lines.append(f"| {r['model']} | {r['family']} | {r['architecture']} | {'-' if r['target'] is None else r['target']} | "
                     f"{_pct(r['acc'])} / {_pct(r['asr'])} | {scan} | {audit_verdict} | {removal} | {drop} | {purified} | "
                     f"{', '.join(map(str, r['exits'])) or '-'} |")
    lines += ["", *summary_lines(table, scans, draws)]
    return "\n".join(lines)


def summary_lines(table: list[dict[str, Any]], scans: dict[str, Any] | None, draws: dict[str, Any] | None) -> list[str]:
    backdoored = [r for r in table if r["target"] is not None]
    clean = [r for r in table if r["family"] == "none (clean)"]
    out = []
    if scans:
        scanned = [r for r in backdoored if r["scan"] is not None]
        scanned_clean = [r for r in clean if r["scan"] is not None]
        found = sum(r["scan_outcome"] == "found" for r in scanned)
        alarms = sum(r["scan_outcome"] == "false alarm" for r in scanned_clean)
        out.append(f"- Scan ({scans.get('command', 'scan')}, {scans.get('created', '')[:10]}): {found} of {len(scanned)} "
                   f"backdoored models flagged `backdoored` with their target; {alarms} of {len(scanned_clean)} clean "
                   f"models flagged.")
    audited = [r for r in backdoored if r["audit"] and r["audit"]["asr_mean"] is not None]
    if draws and audited:
        mean_asr = sum(r["audit"]["asr_mean"] for r in audited) / len(audited)
        worst = max(r["audit"]["asr_worst"] for r in audited)
        drop = sum(r["audit"]["drop_mean"] for r in audited) / len(audited)
        out.append(f"- Audit ({draws.get('draws')}; {draws.get('eval_data')}): {len(audited)} backdoored models audited, "
                   f"mean ASR after {_pct(mean_asr)}%, worst {_pct(worst)}%, mean accuracy drop {100 * drop:.1f} points.")
    if draws:
        out += code_lines(draws["rows"])
    return out


def collect(paths: list[Path]) -> dict[str, Any]:
    """One document from several audit_draws.py runs (one per model or queue): their rows, and what each ran."""
    documents = [json.loads(p.read_text()) for p in paths]
    rows = [row for d in documents for row in d["rows"]]
    return {"draws": ", ".join(sorted({d["draws"] for d in documents})),
            "eval_data": "the whole test set of each model's domain (" +
                         ", ".join(sorted({d["eval_data"] for d in documents})) + ")",
            "machine": documents[0].get("machine") if documents else None,
            "date": max((d.get("date", "") for d in documents), default=""),
            "commands": [d.get("command") for d in documents], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "heldapart_models" / "manifest.json")
    parser.add_argument("--scans", type=Path, help="index.json of `auditor fleet scan` over the held-apart models")
    parser.add_argument("--draws", type=Path, help="draws.json of benchmarks/audit_draws.py over them")
    parser.add_argument("--write", type=Path, help="Put the table between the heldapart-table markers of this page.")
    parser.add_argument("--collect", type=Path, nargs="+", help="Merge these draws.json files into --draws and exit.")
    args = parser.parse_args(argv)
    if args.collect:
        if args.draws is None:
            parser.error("--collect needs --draws, the file to write")
        args.draws.write_text(json.dumps(collect(args.collect), indent=1) + "\n")
        return 0
    manifest = json.loads(args.manifest.read_text())
    scans = json.loads(args.scans.read_text()) if args.scans else None
    draws = json.loads(args.draws.read_text()) if args.draws else None
    emit(render(manifest, scans, draws), args.write, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
