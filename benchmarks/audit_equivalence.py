"""Does a change leave the audit's output the same? Purified models of the zoo, compared byte for byte.

A restructuring (or a speed-up) must not buy a different result silently. This runs the audit's own
path (``pipeline.audit``) on zoo models with a small inversion (``pipeline.scan_inversion``: 20 samples
per class) and the default purification, one torch thread, and records per model and seed a sha256 of the
purified model's weights (every initializer, by name), the guard's attempts and what purification found.
Run it on the old code and on the new, then compare: equal hashes mean the same weights, bit for bit. (The
file's own bytes also hold metadata, the purifier's name and the report's hash among them, which a
rename changes.)

    OMP_NUM_THREADS=1 python benchmarks/audit_equivalence.py --models cifar10_sig,cifar10_wanet --seed 1 \
        --out runs/equivalence/new.jsonl [--rescan cifar10_badnets]
    python benchmarks/audit_equivalence.py --compare docs/results/equivalence_before.jsonl \
        docs/results/equivalence_after.jsonl [--write docs/bench.md]

For the old code, run this file with ``PYTHONPATH`` pointing at a checkout of the old commit
(``git worktree add /tmp/old COMMIT``). ``--rescan`` names the models whose audit also detects on the
original and verifies the purified model (minutes more each); the others purify without a verdict.
``--eval-data`` (the zoo's 1,000-image test subset by default) measures each purified model's ACC and
ASR against its manifest attack, so that where weights differ the table says by how much it matters.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from markers import emit, head_commit

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- equivalence-table -->", "<!-- /equivalence-table -->"


def measure(path: Path, zoo: Path, name: str, eval_data: Path) -> dict[str, float]:
    """ACC and ASR of the ONNX file at ``path`` on ``eval_data``, with zoo model ``name``'s attack."""
    from auditor.attacks import attack_from_params
    from auditor.data.formats import load_eval_data
    from auditor.evaluate import OnnxClassifier, evaluate
    from auditor.zoo.manifest import find_entry
    from converters import load_onnx

    entry = find_entry(zoo / "manifest.json", name=name)
    attack = attack_from_params(entry["attack"], base_dir=zoo) if entry.get("attack") else None
    spec = load_onnx(path).spec
    x, y, _names = load_eval_data(eval_data, expect_shape=(spec.height, spec.width, spec.channels))
    figures = evaluate(OnnxClassifier(path, spec), x, y, attack).to_json()
    return {key: round(figures[key], 4) for key in ("acc", "asr") if figures.get(key) is not None}


def run_one(name: str, seed: int, rescan: bool, zoo: Path, folder: Path, eval_data: Path | None) -> dict[str, Any]:
    """One audit of zoo model ``name``; the row the comparison reads."""
    import torch

    from auditor.pipeline import AuditOptions, audit, scan_inversion

    started = time.perf_counter()
    options = AuditOptions(seed=seed, inversion=dataclasses.replace(scan_inversion(), seed=seed), rescan=rescan,
                           overwrite=True)
    output = folder / f"{name}.onnx"
    report = audit(zoo / f"{name}.onnx", output, folder / name, options).report
    purification = report["purification"]
    return {"model": name, "seed": seed, "rescan": rescan, "weights_sha256": weights_sha256(output),
            "status": purification["status"], "message": purification["message"],
            "attempts": [[a["attempt"], a["interpolation"], a["agreement"], a["prior_agreement"], a["passed"]]
                         for a in purification["attempts"]],
            "findings": purification["attempts"][0]["result"]["findings"] if purification["attempts"] else [],
            "verdict": (report.get("verdict") or {}).get("verdict"),
            "purified": (report.get("verdict") or {}).get("purified"),
            "seconds": round(time.perf_counter() - started), "threads": torch.get_num_threads(),
            "commit": head_commit(), **({"test": measure(output, zoo, name, eval_data)} if eval_data else {})}


def weights_sha256(path: Path) -> str:
    """sha256 over the ONNX file's initializers (name and values), sorted by name: the weights, not the metadata."""
    import onnx
    from onnx import numpy_helper

    digest = hashlib.sha256()
    for tensor in sorted(onnx.load(str(path)).graph.initializer, key=lambda t: t.name):
        digest.update(tensor.name.encode())
        digest.update(numpy_helper.to_array(tensor).tobytes())
    return digest.hexdigest()


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _message(row: dict[str, Any]) -> str:
    """The guard's message without the purifier's name, which a rename changes."""
    return re.sub(r"^[\w,]+: ", "", row["message"])


def render(before: list[dict[str, Any]], after: list[dict[str, Any]], labels: tuple[str, str]) -> str:
    """One row per (model, seed) run on both sides: whether the purified weights, the guard's attempts, its
    message and the findings are the same, and the seconds of each side."""
    old = {(r["model"], r["seed"]): r for r in before}
    lines = [f"Old code: {labels[0]}; new code: {labels[1]}.", "",
             "| model | seed | verdict run | same weights | same guard attempts | same guard message | "
             "same findings | guard status | test ACC / ASR old → new | seconds old / new |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    same = 0
    rows = [r for r in after if (r["model"], r["seed"]) in old]
    for new in rows:
        was = old[(new["model"], new["seed"])]
        equal = was["weights_sha256"] == new["weights_sha256"]
        same += equal
        lines.append(f"| {new['model']} | {new['seed']} | {'yes' if new['rescan'] else 'no'} | "
                     f"{'yes' if equal else '**no**'} | {'yes' if was['attempts'] == new['attempts'] else '**no**'} | "
                     f"{'yes' if _message(was) == _message(new) else '**no**'} | "
                     f"{'yes' if was['findings'] == new['findings'] else '**no**'} | {new['status']} | "
                     f"{_figures(was)} → {_figures(new)} | {was['seconds']} / {new['seconds']} |")
    lines += ["", f"{same} of {len(rows)} purified models have the same weights, bit for bit."]
    return "\n".join(lines)


def commits(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> tuple[str, str]:
    """Each side's commits, as its rows recorded them."""
    old, new = (", ".join(sorted({str(r.get("commit")) for r in rows})) for rows in (before, after))
    return old, new


def _figures(row: dict[str, Any]) -> str:
    test = row.get("test") or {}
    return " / ".join("-" if test.get(key) is None else f"{100 * test[key]:.1f}" for key in ("acc", "asr"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="zoo model names, joined by commas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rescan", default="", help="models (joined by commas) whose audit detects and verifies too")
    parser.add_argument("--zoo", type=Path, default=ROOT / "sample_models")
    parser.add_argument("--out", type=Path, help="JSON lines, one per audit, appended")
    parser.add_argument("--eval-data", type=Path, default=ROOT / "sample_models" / "cifar10_test_1000.npz",
                        help="real test images to measure ACC and ASR on ('none': skip)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("OLD", "NEW"), help="two files of --out to compare")
    parser.add_argument("--labels", nargs=2, default=None, metavar=("OLD", "NEW"),
                        help="what the two sides are (default: the commits recorded in the rows)")
    parser.add_argument("--write", type=Path, help="the page whose marked section gets the comparison")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (read_rows(path) for path in args.compare)
        labels = tuple(args.labels) if args.labels else commits(before, after)
        emit(render(before, after, labels), args.write, BEGIN, END)
        return 0
    if not args.models or not args.out:
        parser.error("give --models and --out (or --compare OLD NEW)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rescan = set(filter(None, args.rescan.split(",")))
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            eval_data = None if str(args.eval_data) == "none" else args.eval_data
            row = run_one(name, args.seed, name in rescan, args.zoo, Path(folder), eval_data)
            print(json.dumps(row), flush=True)
            with args.out.open("a") as out:
                out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
