"""The scan tables of docs/detection.md: what every detector saw, per model and draw.

    auditor fleet scan sample_models --workers 2 --detector-workers 1 --seed 0 --fail-on never -o runs/fleet_zoo_s0
    python benchmarks/scan_table.py --collect runs/fleet_zoo_s0 --split zoo \\
        --manifest sample_models/manifest.json --write-json docs/results/scan_draws.json
    python benchmarks/scan_table.py --render docs/results/scan_draws.json --write docs/detection.md
    python benchmarks/scan_table.py runs/scan12 --manifest sample_models/manifest.json   # one run, printed

A folder is the ``--report-dir`` of a scan of several models or the ``-o`` of a fleet scan
(``models/*/report.json``). One row per report: the verdict and what each detector saw. For every
voting or reported detector, the most anomalous class and its index; for reach detectors also the
true target's reach against the largest other class's. The true target comes from the manifests (a
model missing from them is listed as unknown). The verdict is re-derived from the saved indices
with ``--voters`` (default: the default scan's voters, with the current scales), so reports made
with other options read the same way; feature reach's index is recomputed from its saved per-class
reach with the current formula. A cell says "inconclusive" where the detector's top class did not
reach its stop share (stimulation, warp and sine reach: its index then does not vote).
``--rule DETECTOR:THRESHOLD`` marks a detector's top index when it is above the threshold.

``--collect`` condenses one run into a draw of a committed JSON document (a draw with the same
split and seed is replaced); ``--render`` turns the document into the page's tables: one summary
row per model over its draws, then each draw's detail.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from auditor.detect import DetectionResult, FeatureReachConfig, VerdictConfig, combine, default_voters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markers import add_render_options, head_commit, render_if_asked  # noqa: E402  (sibling script module)

BEGIN, END = "<!-- scan-tables -->", "<!-- /scan-tables -->"
COLUMNS = ("reach", "stimulation", "warp_reach", "sine_reach", "patch", "feature_reach", "neural_cleanse")  # those that ran, in this order
REACH_LIKE = ("reach", "feature_reach", "warp_reach", "sine_reach")
HEADERS = {"reach": "reach: top class (index); target / largest other",
           "warp_reach": "warp reach: top class (index); target / largest other",
           "sine_reach": "sine reach: top class (index); target / largest other",
           "stimulation": "stimulation: top class (index); its share at the stop level",
           "feature_reach": "feature reach: top class (index); target / largest other",
           "patch": "patch: flip rate; class most flips land in (its share)",
           "neural_cleanse": "Neural Cleanse: top class (index)"}
SPLITS = {"zoo": "zoo (defaults tuned here)", "held-apart": "held apart (never tuned on)"}


def load_truth(manifests: list[Path]) -> dict[str, dict[str, Any]]:
    """Model file stem -> {"attack": name or None, "target": int or None, "all_to_all": bool, "network": str}."""
    truth: dict[str, dict[str, Any]] = {}
    for manifest in manifests:
        for entry in json.loads(manifest.read_text())["models"]:
            attack = entry.get("attack") or {}
            truth[Path(entry["file"]).stem] = {"attack": attack.get("name"), "target": entry.get("target"),
                                               "all_to_all": bool(attack.get("all_to_all")),
                                               "network": entry.get("architecture", "?")}
    return truth


def top(values: list[float]) -> tuple[int, float]:
    best = max(range(len(values)), key=lambda k: (values[k], -k))
    return best, values[best]


def rederive(report: dict[str, Any], voters: tuple[str, ...]) -> dict[str, Any]:
    """The report's detectors with feature reach's index recomputed, and the verdict ``voters`` give."""
    detectors = {name: dict(result) for name, result in report["detection"]["detectors"].items()}
    if "feature_reach" in detectors:
        result = detectors["feature_reach"]
        reach = torch.tensor([r["reach"] for r in result["per_class"]])
        median = float(reach.median())
        floor = result["config"].get("median_floor", FeatureReachConfig.median_floor)
        result["index"] = ((reach - median) / max(median, floor)).tolist()
    results = {name: DetectionResult(name, r["config"], r["per_class"], r["index"], r.get("summary", {}),
                                     conclusive=r.get("conclusive", True))
               for name, r in detectors.items()}
    verdict = combine(results, VerdictConfig(voters=voters))
    return {"detectors": detectors, "verdict": {"verdict": verdict.verdict, "suspected_targets": verdict.suspected_targets}}


def _seen(name: str, result: dict[str, Any], target: int | None) -> dict[str, Any]:
    """What one detector saw, condensed to the figures the table shows."""
    best, value = top(result["index"])
    if name == "patch":  # a model-level figure: the verdict reads the flip rate, not an index
        shares = [r["share_of_flips"] for r in result["per_class"]]
        into, into_share = top(shares)
        return {"flip_rate": round(result["summary"]["flip_rate"], 4), "into": into, "into_share": round(into_share, 4)}
    seen: dict[str, Any] = {"top": best, "index": round(value, 4),
                            "conclusive": DetectionResult(name, {}, [], [], conclusive=result.get("conclusive", True)).conclusive_for(best)}
    if name in REACH_LIKE:
        shares = [r.get("reach", r.get("share")) for r in result["per_class"]]
        seen["target_share"] = None if target is None else round(shares[target], 4)
        seen["largest_other"] = round(max(s for k, s in enumerate(shares) if k != target), 4)
        if name == "feature_reach":
            seen["radius"] = result["summary"]["radius"]
    if name == "stimulation":
        seen["share"] = round(result["per_class"][best]["share"], 4)
        seen["level"] = result["summary"]["level"]
    return seen


def condense(report: dict[str, Any], truth: dict[str, Any] | None, voters: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One model's row of the document: the truth, the re-derived verdict and what each detector saw."""
    derived = rederive(report, voters if voters is not None else default_voters())
    verdict = derived["verdict"]
    target = None if truth is None else truth["target"]
    if truth is None:
        found = "?"
    elif truth["attack"] is None:
        found = "correctly clean" if verdict["verdict"] == "clean" else "**false positive**"
    elif verdict["verdict"] == "clean":
        found = "no"
    elif verdict["verdict"] != "backdoored":  # the scan's default gate (--fail-on backdoored) lets it through
        found = "suspicious only"
    elif truth["all_to_all"]:
        found = "flagged (all-to-all)"
    else:
        found = "yes" if verdict["suspected_targets"][:1] == [target] else "wrong class"
    timings = report["timings"]
    return {"model": Path(report["input"]["path"]).stem,
            "network": "?" if truth is None else truth.get("network", "?"),
            "attack": "unknown" if truth is None else truth["attack"],
            "target": target, "all_to_all": bool(truth and truth["all_to_all"]),
            "verdict": verdict["verdict"], "suspected": verdict["suspected_targets"],
            "detectors": {name: _seen(name, result, target) for name, result in derived["detectors"].items()},
            "found": found, "seconds": round(timings.get("total", 0.0), 1),
            "detector_seconds": {k[len("detect."):]: round(v, 1) for k, v in timings.items() if k.startswith("detect.")}}


def _label(row: dict[str, Any]) -> str:
    if row["attack"] in (None, "unknown"):
        return row["attack"] or "none (clean)"
    return f"{row['attack']} ({'y+1' if row['all_to_all'] else row['target']})"


def cells(row: dict[str, Any], columns: tuple[str, ...] = COLUMNS, thresholds: dict[str, float] | None = None) -> list[str]:
    """The detail table's cells for one condensed row."""
    out = [row["model"], _label(row), f"**{row['verdict']}**", ", ".join(map(str, row["suspected"])) or "-"]
    for name in columns:
        seen = row["detectors"].get(name)
        if seen is None:
            out.append("not run")
            continue
        if name == "patch":
            flags = " flags" if seen["flip_rate"] >= VerdictConfig.patch_threshold else ""
            out.append(f"{seen['flip_rate']:.2f}; {seen['into']} ({seen['into_share']:.2f}){flags}")
            continue
        cell = f"{seen['top']} ({seen['index']:.2f})"
        if name in REACH_LIKE:
            target = "-" if seen["target_share"] is None else f"{seen['target_share']:.2f}"
            cell += f"; {target} / {seen['largest_other']:.2f}"
            if name == "feature_reach":
                cell += f" at r={seen['radius']:.3f}"
        if name == "stimulation":
            cell += f"; {seen['share']:.2f} at level {seen['level']:g}"
        if not seen["conclusive"]:
            cell += ", inconclusive"
        if thresholds and name in thresholds:
            cell += " flags" if seen["index"] > thresholds[name] else ""
        out.append(cell)
    return out + [row["found"], f"{row['seconds']:.0f} s"]


def row(report: dict[str, Any], truth: dict[str, Any] | None, thresholds: dict[str, float],
        voters: tuple[str, ...] | None = None, columns: tuple[str, ...] = COLUMNS) -> list[str]:
    """One report's cells, straight from the report (the printed table of one run)."""
    return cells(condense(report, truth, voters), columns, thresholds)


def reports(folder: Path) -> list[dict[str, Any]]:
    """The report.json files of a multi-model scan folder or of a fleet scan, by model name."""
    paths = sorted(folder.glob("*/report.json")) + sorted(folder.glob("models/*/report.json"))
    found = [json.loads(p.read_text()) for p in paths]
    return sorted(found, key=lambda r: Path(r["input"]["path"]).stem)


def table(rows: list[dict[str, Any]], thresholds: dict[str, float] | None = None) -> str:
    ran = {name for r in rows for name in r["detectors"]}
    columns = tuple(name for name in COLUMNS if name in ran)
    lines = ["| model | attack (target) | verdict | suspected | " + " | ".join(HEADERS[n] for n in columns)
             + " | found | scan wall |", "|" + "---|" * (6 + len(columns))]
    lines += ["| " + " | ".join(cells(r, columns, thresholds)) + " |" for r in rows]
    return "\n".join(lines)


def collect(folder: Path, truth: dict[str, dict[str, Any]], split: str, voters: tuple[str, ...]) -> dict[str, Any]:
    """One run as a draw of the document."""
    found = reports(folder)
    if not found:
        raise SystemExit(f"no report.json under {folder}")
    config = found[0].get("config", {})
    return {"split": split, "seed": config.get("seed"), "threads": config.get("detection", {}).get("threads"),
            "source": str(folder), "created": found[0].get("created", "")[:10],
            "rows": [condense(r, truth.get(Path(r["input"]["path"]).stem), voters) for r in found]}


def _verdict_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    targets = f" ({', '.join(map(str, row['suspected']))})" if row["suspected"] else ""
    return f"{row['verdict']}{targets}: {row['found'].strip('*')}"


def render(document: dict[str, Any]) -> str:
    """The summary over draws, then one detail table per draw."""
    draws = sorted(document["draws"], key=lambda d: (list(SPLITS).index(d["split"]), d["seed"]))
    seeds = sorted({d["seed"] for d in draws})
    lines = ["| split | model | network | attack (target) | "
             + " | ".join(f"seed {s}: verdict (suspected): outcome" for s in seeds) + " | slowest scan |",
             "|" + "---|" * (5 + len(seeds))]
    for split in SPLITS:
        by_model: dict[str, dict[int, dict[str, Any]]] = {}
        for draw in (d for d in draws if d["split"] == split):
            for r in draw["rows"]:
                by_model.setdefault(r["model"], {})[draw["seed"]] = r
        for model, per_seed in sorted(by_model.items()):
            any_row = next(iter(per_seed.values()))
            slowest = max(r["seconds"] for r in per_seed.values())
            lines.append(f"| {SPLITS[split]} | {model} | {any_row['network']} | {_label(any_row)} | "
                         + " | ".join(_verdict_cell(per_seed.get(s)) for s in seeds) + f" | {slowest:.0f} s |")
    for draw in draws:
        counts = _counts(draw["rows"])
        lines += ["", f"<details><summary>{SPLITS[draw['split']]}, seed {draw['seed']}, "
                      f"{draw['threads']} thread(s) per detector, {draw['created']}: {counts}</summary>", "",
                  table(draw["rows"]), "", "</details>"]
    return "\n".join(lines)


def _counts(rows: list[dict[str, Any]]) -> str:
    backdoored = [r for r in rows if r["attack"] not in (None, "unknown")]
    clean = [r for r in rows if r["attack"] is None]
    found = sum(r["found"] in ("yes", "flagged (all-to-all)") for r in backdoored)
    alarms = sum(r["verdict"] != "clean" for r in clean)
    return f"{found} of {len(backdoored)} backdoored models found, {alarms} of {len(clean)} clean models flagged"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?", help="--report-dir of a scan of several models (prints its table)")
    parser.add_argument("--manifest", type=Path, action="append", default=[], help="zoo manifest(s) with the truth")
    parser.add_argument("--rule", action="append", default=[], help="DETECTOR:THRESHOLD, marks indices above it")
    parser.add_argument("--voters", default=",".join(default_voters()),
                        help="comma-separated detectors whose index decides the verdict (default: the scan's)")
    parser.add_argument("--collect", type=Path, help="Condense this scan folder into a draw of --write-json.")
    parser.add_argument("--split", choices=list(SPLITS), default="zoo", help="With --collect: the draw's split.")
    parser.add_argument("--write-json", type=Path, help="With --collect: the document to add the draw to.")
    add_render_options(parser, "this document (--write-json's)")
    args = parser.parse_args(argv)
    truth = load_truth(args.manifest)
    voters = tuple(args.voters.split(","))
    if args.collect:
        if args.write_json is None:
            parser.error("--collect needs --write-json")
        draw = collect(args.collect, truth, args.split, voters)
        document = json.loads(args.write_json.read_text()) if args.write_json.exists() else {
            "title": "auditor scan with the default detectors, per model and draw",
            "machine": "2-core x86_64 CPU, no GPU; a fleet scan of two models at once, one torch thread each",
            "draws": []}
        document["draws"] = [d for d in document["draws"] if (d["split"], d["seed"]) != (draw["split"], draw["seed"])]
        document["draws"].append({**draw, "code": head_commit() or "unknown"})
        args.write_json.write_text(json.dumps(document, indent=1) + "\n")
        print(f"{args.write_json}: {len(draw['rows'])} models, {args.split}, seed {draw['seed']}")
        return 0
    if render_if_asked(args, render, BEGIN, END):
        return 0
    if args.folder is None:
        parser.error("give a scan folder, --collect or --render")
    thresholds = {name: float(value) for name, value in (r.split(":") for r in args.rule)}
    print(table([condense(r, truth.get(Path(r["input"]["path"]).stem), voters) for r in reports(args.folder)], thresholds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
