"""The audit on several draws per model: different seeds and torch thread counts.

One draw of the synthetic samples can decide an audit's outcome, so efficacy is judged on the worst
of several. Each draw runs `auditor audit` as a user would (a subprocess with ``OMP_NUM_THREADS``
set), measures ACC / ASR / RA before and after on the evaluation data, and records the verdicts
and the exit code. Results are added to ``OUT/draws.json`` as they land (a rerun skips finished
draws), and the table gives per model the mean and the worst ASR after.

    python benchmarks/audit_draws.py --model cifar10_badnets --draws 0:2,1:2,2:1 \\
        --eval-data runs/cifar10_test.npz --out runs/draws
    python benchmarks/audit_draws.py --table runs/draws/draws.json [--write docs/bench.md]

``--eval-data`` is an .npz of real labelled images (``auditor.data.formats``), for instance the
CIFAR-10 test set written by ``--write-test-set``; the audit never sees it. ``--quick`` cuts every
stage down for a smoke run (its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- draws-table -->", "<!-- /draws-table -->"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from markers import emit, head_commit  # noqa: E402  (a sibling script module)
# the smoke run purifies with data-free CLP: a fraction of the default recipe's time
QUICK = ["--per-class", "4", "--steps", "1", "--method", "clp", "--nc-steps", "2", "--guard-interpolation", "none"]


def parse_draws(text: str) -> list[tuple[int, int]]:
    """'0:2,1:2,2:1' -> [(seed 0, 2 threads), (1, 2), (2, 1)]."""
    draws = []
    for part in text.split(","):
        seed, _, threads = part.strip().partition(":")
        draws.append((int(seed), int(threads or 1)))
    return draws


def run_draw(model: Path, manifest: Path | None, eval_data: Path, seed: int, threads: int, folder: Path,
             quick: bool) -> dict[str, Any]:
    """One audit, as a subprocess; its report's figures, verdicts, exit code and wall time."""
    command = [sys.executable, "-m", "auditor.cli", "audit", str(model), "--seed", str(seed), "--report-dir", str(folder),
               "--eval-data", str(eval_data), "--overwrite", "--fail-on", "suspicious"]
    if manifest is not None:
        command += ["--attack-from", str(manifest)]
    command += QUICK if quick else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        return {"seed": seed, "threads": threads, "exit": done.returncode, "error": done.stderr.strip()[-500:],
                "seconds": round(seconds, 1)}
    return draw_row(folder, seed, threads, done.returncode, seconds)


def draw_row(folder: Path, seed: int, threads: int, exit_code: int, seconds: float) -> dict[str, Any]:
    """The row of one finished audit, read from its report folder."""
    report = json.loads((folder / "report.json").read_text())
    verdict, evaluation = report.get("verdict") or {}, report.get("evaluation") or {}
    return {"seed": seed, "threads": threads, "exit": exit_code, "seconds": round(seconds, 1),
            "before": evaluation.get("before"), "after": evaluation.get("after"),
            "verdict": verdict.get("verdict"), "targets": verdict.get("suspected_targets"),
            "rescan": (verdict.get("rescan") or {}).get("verdict"), "purified": verdict.get("purified"),
            "passes": verdict.get("purified_passes"), "decided_by": (verdict.get("verification") or {}).get("decided_by"),
            "residuals": (verdict.get("verification") or {}).get("residuals"),
            "guard": (report.get("purification") or {}).get("status"),
            "guard_message": (report.get("purification") or {}).get("message"), "timings": report.get("timings")}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: draws, mean and worst ASR after, mean and worst accuracy drop, verdicts, exits."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        runs = [r for r in rows if r["model"] == model and r.get("after")]
        if not runs:
            continue
        asr = [r["after"]["asr"] for r in runs if r["after"].get("asr") is not None]
        drop = [r["before"]["acc"] - r["after"]["acc"] for r in runs]
        out.append({
            "model": model, "draws": len(runs), "asr_before": runs[0]["before"].get("asr"),
            "asr_mean": sum(asr) / len(asr) if asr else None, "asr_worst": max(asr) if asr else None,
            "drop_mean": sum(drop) / len(drop), "drop_worst": max(drop),
            "verdicts": [r["verdict"] for r in runs], "purified": [r["purified"] for r in runs],
            "exits": [r["exit"] for r in runs], "seconds": [r["seconds"] for r in runs],
        })
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def render(document: dict[str, Any]) -> str:
    lines = [f"Draws (seed:threads): {document.get('draws')}; {document.get('eval_data')}; {document.get('machine')}.", "",
             "| model | draws | ASR before | ASR after mean / worst | ACC drop mean / worst (points) | verdicts | "
             "purified | exit codes | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summarize(document["rows"]):
        lines.append(f"| {s['model']} | {s['draws']} | {_pct(s['asr_before'])} | {_pct(s['asr_mean'])} / "
                     f"{_pct(s['asr_worst'])} | {100 * s['drop_mean']:.1f} / {100 * s['drop_worst']:.1f} | "
                     f"{', '.join(map(str, s['verdicts']))} | {', '.join(map(str, s['purified']))} | "
                     f"{', '.join(map(str, s['exits']))} | {', '.join(f'{x:.0f}' for x in s['seconds'])} |")
    lines += code_lines(document["rows"])
    errors = [r for r in document["rows"] if r.get("error")]
    lines += [f"- {r['model']} seed {r['seed']} threads {r['threads']}: exit {r['exit']}: {r['error']}" for r in errors]
    return "\n".join(lines)


def code_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Which code each draw ran at, where the rows say (a change of layout or default changes a seed's draw)."""
    by_code: dict[str, list[str]] = {}
    for r in rows:
        if r.get("code"):
            by_code.setdefault(r["code"], []).append(f"{r['model']} {r['seed']}:{r['threads']}")
    return [f"- Ran at {code}: {', '.join(draws)}." for code, draws in by_code.items()]


def write_test_set(path: Path) -> None:
    """The CIFAR-10 test set as an .npz for --eval-data (outside the repository: it is real data)."""
    import numpy as np

    from auditor.data.cifar10 import load_cifar10

    x, y = load_cifar10("test")
    np.savez(path, x=x, y=y)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="sample_models/NAME.onnx, or a path (repeatable).")
    parser.add_argument("--manifest", type=Path, default=ROOT / "sample_models" / "manifest.json",
                        help="Zoo manifest that names each model's attack ('none' for no attack).")
    parser.add_argument("--draws", default="0:2,1:2,2:1", help="seed:threads pairs [default: 0:2,1:2,2:1].")
    parser.add_argument("--eval-data", type=Path, help="Real labelled images (.npz) to measure on.")
    parser.add_argument("--out", type=Path, default=Path("runs/draws"))
    parser.add_argument("--quick", action="store_true", help="Cut every stage down (smoke run; figures mean nothing).")
    parser.add_argument("--table", type=Path, help="Print the table of this draws.json and exit.")
    parser.add_argument("--write", type=Path, help="With --table: put the table between the draws-table markers of this page.")
    parser.add_argument("--write-test-set", type=Path, help="Write the CIFAR-10 test set to this .npz and exit.")
    parser.add_argument("--from-report", type=Path, help="Record an audit run by hand (its --report-dir) as the draw "
                        "--draws names (one seed:threads), with --exit-code and --seconds, instead of running it.")
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.table:
        emit(render(json.loads(args.table.read_text())), args.write, BEGIN, END)
        return 0
    if args.write_test_set:
        write_test_set(args.write_test_set)
        return 0
    if not args.model or args.eval_data is None:
        parser.error("--model and --eval-data are needed")
    manifest = None if str(args.manifest) == "none" else args.manifest
    draws = parse_draws(args.draws)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "draws.json"
    document = json.loads(path.read_text()) if path.exists() else {"rows": []}
    document.update({"draws": args.draws, "eval_data": str(args.eval_data), "quick": args.quick,
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores", "command": " ".join(sys.argv)})
    for name in args.model:
        model = Path(name) if name.endswith(".onnx") else ROOT / "sample_models" / f"{name}.onnx"
        for seed, threads in draws:
            done = [r for r in document["rows"] if r["model"] == model.stem and (r["seed"], r["threads"]) == (seed, threads)]
            if done and not done[0].get("error"):
                continue
            code = head_commit()  # at the start: the commit the audit runs, not the one when it ends
            if args.from_report:
                row = {"model": model.stem, **draw_row(args.from_report, seed, threads, args.exit_code, args.seconds)}
            else:
                row = {"model": model.stem, **run_draw(model, manifest, args.eval_data, seed, threads,
                                                      args.out / model.stem / f"s{seed}_t{threads}", args.quick)}
            row["code"] = code  # the layout or a default can change a seed's draw between commits
            document["rows"] = [r for r in document["rows"] if r not in done] + [row]
            document["date"] = time.strftime("%Y-%m-%d")
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(document, indent=1))
            temporary.replace(path)
            print(f"{model.stem} seed {seed} threads {threads}: exit {row['exit']}, "
                  f"ASR after {_pct((row.get('after') or {}).get('asr'))}, purified {row.get('purified')}", flush=True)
    print(render(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
