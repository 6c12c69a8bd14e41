"""Wall time of ``auditor audit`` per zoo model, split by stage, with CPU time and peak memory.

This runs the real command, as a user would, once per model, and prints one table row per model:

    python benchmarks/audit_time.py --out runs/audit_time                  # one model at a time
    python benchmarks/audit_time.py --out runs/audit_time --threads 1 --model A --model B &
    python benchmarks/audit_time.py --out runs/audit_time --threads 1 --model C --model D   # one core each

Each audit measures ACC / ASR / RA before and after on the committed 1,000-image evaluation subset
(``--eval-data``), which costs about a second; the purification never sees it. ``--reuse`` renders
the table from the saved ``audit_time.json`` without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STAGES = ("convert", "invert", "detect", "purify", "verify", "write", "evaluate")


def audit_command(model: Path, entry: dict[str, Any], manifest: Path, eval_data: Path, folder: Path) -> list[str]:
    """The ``auditor audit`` call for one zoo model (its attack, if any, measured from the manifest)."""
    exe = shutil.which("auditor")
    command = [exe] if exe else [sys.executable, "-c", "from auditor.cli import main; main()"]
    command += ["audit", str(model), "-o", str(folder / "purified.onnx"), "--report-dir", str(folder / "report"),
                "--eval-data", str(eval_data), "--overwrite", "--fail-on", "never"]
    if entry.get("attack"):
        command += ["--attack-from", f"{manifest}:{entry['name']}"]
    return command


def run_one(command: list[str], log_path: Path, threads: int | None = None) -> dict[str, Any]:
    """Run one audit; its own CPU seconds and peak resident memory come from ``wait4``."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))  # torch reads it at start
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": process.returncode, "wall_s": round(time.perf_counter() - started, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """What the table shows from one audit's report.json."""
    verdict = report.get("verdict") or {}
    evaluation = report.get("evaluation") or {}
    before, after = evaluation.get("before") or {}, evaluation.get("after") or {}
    return {"timings": {k: report["timings"].get(k) for k in (*STAGES, "total")},
            "verdict": verdict.get("verdict"), "purified": verdict.get("purified"),
            "guard": report["purification"]["status"],
            "acc": [before.get("acc"), after.get("acc")], "asr": [before.get("asr"), after.get("asr")]}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def render(rows: list[dict[str, Any]]) -> str:
    head = ("| model | wall s | " + " | ".join(STAGES[1:5]) + " | CPU s | peak MB | verdict | purified | guard "
            "| ACC before → after | ASR before → after |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        t = row["timings"]
        lines.append(f"| {row['model']} | {row['wall_s']:.0f} | " + " | ".join(f"{t[s]:.0f}" for s in STAGES[1:5])
                     + f" | {row['cpu_s']:.0f} | {row['peak_rss_mb']} | {row['verdict']} | {row['purified']} "
                     f"| {row['guard']} | {_pct(row['acc'][0])} → {_pct(row['acc'][1])} "
                     f"| {_pct(row['asr'][0])} → {_pct(row['asr'][1])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=Path("sample_models"))
    parser.add_argument("--eval-data", type=Path, default=Path("sample_models/cifar10_test_1000.npz"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", action="append", help="zoo model name (repeatable; default: all)")
    parser.add_argument("--threads", type=int, help="torch CPU threads for the audit (default: torch's)")
    parser.add_argument("--reuse", action="store_true", help="only render the table from OUT/audit_time.json")
    args = parser.parse_args(argv)

    results_path = args.out / "audit_time.json"
    if not args.reuse:
        manifest = args.zoo / "manifest.json"
        entries = [e for e in json.loads(manifest.read_text())["models"]
                   if e.get("dataset", "cifar10") == "cifar10" and (not args.model or e["name"] in args.model)]
        for entry in entries:
            folder = args.out / entry["name"]
            folder.mkdir(parents=True, exist_ok=True)
            command = audit_command(args.zoo / entry["file"], entry, manifest, args.eval_data, folder)
            print(f"{entry['name']}: {' '.join(command[1:])}", flush=True)
            measured = run_one(command, folder / "audit.log", args.threads)
            if measured["rc"] not in (0, 1):
                print(f"{entry['name']}: the audit failed (exit {measured['rc']}); see {folder / 'audit.log'}")
                continue
            row = {"model": entry["name"], "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                   time.gmtime()), **measured, **summarize(json.loads((folder / "report" / "report.json").read_text()))}
            # read again before writing: two queues may share OUT (one model each at a time, one core each)
            rows = json.loads(results_path.read_text()) if results_path.exists() else []
            rows = [r for r in rows if r["model"] != entry["name"]] + [row]
            results_path.write_text(json.dumps(rows, indent=2))
            print(render([row]).splitlines()[-1], flush=True)
    rows = json.loads(results_path.read_text()) if results_path.exists() else []
    print(render(sorted(rows, key=lambda r: r["model"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
