"""The detection table of docs/detection.md, from the reports of one ``auditor scan`` run.

    auditor scan sample_models/*.onnx runs/holdout*/*.onnx --report-dir runs/scan12 --fail-on never
    python benchmarks/scan_table.py runs/scan12 --manifest sample_models/manifest.json \
        --manifest runs/holdout/manifest.json --manifest runs/holdout_w24/manifest.json

One row per report folder: the verdict and what each detector saw. For every voting or reported
detector, the most anomalous class and its index; for reach detectors also the true target's reach
against the largest other class's. The true target comes from the manifests (a model missing from
them is listed as unknown). The verdict is re-derived from the saved indices with ``--voters``
(default: the default scan's voters, with the current scales), so reports made
with other options read the same way; feature reach's index is recomputed from its saved per-class
reach with the current formula. A cell says "inconclusive" where the detector's top class did not
reach its stop share (stimulation, warp reach: its index then does not vote).
``--rule DETECTOR:THRESHOLD`` marks a detector's top index when it is above the threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from auditor.detect import DetectionResult, FeatureReachConfig, VerdictConfig, combine, default_voters


COLUMNS = ("reach", "stimulation", "warp_reach", "sine_reach", "patch", "feature_reach", "neural_cleanse")  # those that ran, in this order
HEADERS = {"reach": "reach: top class (index); target / largest other",
           "warp_reach": "warp reach: top class (index); target / largest other",
           "sine_reach": "sine reach: top class (index); target / largest other",
           "stimulation": "stimulation: top class (index); its share at the stop level",
           "feature_reach": "feature reach: top class (index); target / largest other",
           "patch": "patch: flip rate; class most flips land in (its share)",
           "neural_cleanse": "Neural Cleanse: top class (index)"}


def load_truth(manifests: list[Path]) -> dict[str, dict[str, Any]]:
    """Model file stem -> {"attack": name or None, "target": int or None, "all_to_all": bool}."""
    truth: dict[str, dict[str, Any]] = {}
    for manifest in manifests:
        for entry in json.loads(manifest.read_text())["models"]:
            attack = entry.get("attack") or {}
            truth[Path(entry["file"]).stem] = {"attack": attack.get("name"), "target": entry.get("target"),
                                               "all_to_all": bool(attack.get("all_to_all"))}
    return truth


def top(index: list[float]) -> tuple[int, float]:
    best = max(range(len(index)), key=lambda k: (index[k], -k))
    return best, index[best]


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


def row(report: dict[str, Any], truth: dict[str, Any] | None, thresholds: dict[str, float],
        voters: tuple[str, ...] | None = None, columns: tuple[str, ...] = COLUMNS) -> list[str]:
    derived = rederive(report, voters if voters is not None else default_voters())
    detectors, verdict = derived["detectors"], derived["verdict"]
    target = None if truth is None else truth["target"]
    attack = "unknown" if truth is None else (truth["attack"] or "none (clean)")
    label = attack if truth is None or truth["attack"] is None else f"{attack} ({'y+1' if truth['all_to_all'] else target})"
    cells = [Path(report["input"]["path"]).stem, label,
             f"**{verdict['verdict']}**", ", ".join(map(str, verdict["suspected_targets"])) or "-"]
    for name in columns:
        result = detectors.get(name)
        if result is None:
            cells.append("not run")
            continue
        best, value = top(result["index"])
        if name == "patch":  # a model-level figure: the verdict reads the flip rate, not an index
            shares = [r["share_of_flips"] for r in result["per_class"]]
            into = max(range(len(shares)), key=lambda k: (shares[k], -k))
            flip = result["summary"]["flip_rate"]
            flags = " flags" if flip >= VerdictConfig.patch_threshold else ""
            cells.append(f"{flip:.2f}; {into} ({shares[into]:.2f}){flags}")
            continue
        cell = f"{best} ({value:.2f})"
        if name in ("reach", "feature_reach", "warp_reach", "sine_reach"):
            shares = [r.get("reach", r.get("share")) for r in result["per_class"]]
            others = max(s for k, s in enumerate(shares) if k != target) if target is not None else max(shares)
            cell += f"; {shares[target]:.2f} / {others:.2f}" if target is not None else f"; - / {others:.2f}"
            if name == "feature_reach":
                cell += f" at r={result['summary']['radius']:.3f}"
        conclusive = DetectionResult(name, {}, [], [], conclusive=result.get("conclusive", True)).conclusive_for(best)
        if name == "stimulation":
            share = result["per_class"][best]["share"]
            cell += f"; {share:.2f} at level {result['summary']['level']:g}"
        if not conclusive:
            cell += ", inconclusive"
        if name in thresholds:
            cell += " flags" if value > thresholds[name] else ""
        cells.append(cell)
    if truth is None:
        found = "?"
    elif truth["attack"] is None:
        found = "correctly clean" if verdict["verdict"] == "clean" else "**false positive**"
    elif verdict["verdict"] == "clean":
        found = "no"
    elif truth["all_to_all"]:
        found = "flagged (all-to-all)"
    else:
        found = "yes" if verdict["suspected_targets"][:1] == [target] else "wrong class"
    timings = report["timings"]
    cells += [found, f"{timings.get('total', 0):.0f} s ({', '.join(f'{k[7:]} {v:.0f}' for k, v in timings.items() if k.startswith('detect.'))})"]
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="--report-dir of a scan of several models")
    parser.add_argument("--manifest", type=Path, action="append", default=[], help="zoo manifest(s) with the truth")
    parser.add_argument("--rule", action="append", default=[], help="DETECTOR:THRESHOLD, marks indices above it")
    parser.add_argument("--voters", default=",".join(default_voters()),
                        help="comma-separated detectors whose index decides the verdict (default: the scan's)")
    args = parser.parse_args(argv)
    truth = load_truth(args.manifest)
    thresholds = {name: float(value) for name, value in (r.split(":") for r in args.rule)}
    reports = [(path, json.loads(path.read_text())) for path in sorted(args.folder.glob("*/report.json"))]
    ran = {name for _, report in reports for name in report["detection"]["detectors"]}
    columns = tuple(name for name in COLUMNS if name in ran)
    print("| model | attack (target) | verdict | suspected | "
          + " | ".join(HEADERS[name] for name in columns) + " | found | scan wall (detector s) |")
    print("|" + "---|" * (6 + len(columns)))
    for path, report in reports:
        cells = row(report, truth.get(path.parent.name), thresholds, tuple(args.voters.split(",")), columns)
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
