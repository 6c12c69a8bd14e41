"""SARIF 2.1.0 (what GitHub code scanning and other dashboards ingest): one result per finding.

Findings: each suspected backdoor target class of a model (``error`` when backdoored, ``warning``
when suspicious), and, after ``audit``, a purified model that still fails its re-scan. A clean
model gives a run with no results, which dashboards read as "fixed".

Artifact locations are percent-encoded URI references (a path with spaces or non-ASCII characters is
not a valid ``uri-reference``, and code-scanning uploads validate it); message texts quote the model's
class names and path through ``escape`` (plain text, with a Markdown twin for viewers that render it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from .columns import cited_index
from .escape import markdown, sarif_text

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/auditor/auditor/blob/main/docs/ci.md"

RULES: list[dict[str, Any]] = [
    {
        "id": "AUD001",
        "name": "BackdoorTargetClass",
        "shortDescription": {"text": "Model has a backdoor target class"},
        "fullDescription": {"text": "A class of this model can be reached from every other class far more easily "
                                    "than the others, by one small universal input perturbation, one smooth warp, or "
                                    "by raising one hidden channel (anomaly indices on model-inversion samples): the "
                                    "signature of an all-to-one backdoor."},
        "help": {"text": "Do not deploy the model as is. Run `auditor audit MODEL` to remove the backdoor without "
                         "clean data, or obtain the model from a trusted source.",
                 "markdown": "Do not deploy the model as is. Run `auditor audit MODEL` to remove the backdoor "
                             "without clean data, or obtain the model from a trusted source."},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "backdoor", "ml-supply-chain"]},
    },
    {
        "id": "AUD002",
        "name": "PurifiedModelStillFlagged",
        "shortDescription": {"text": "Purified model fails verification"},
        "fullDescription": {"text": "After `auditor audit`, a trigger found on the original model still works on the purified model, or its fresh re-scan is not clean."},
        "help": {"text": "Inspect report.html; try another purifier (--method) or more synthetic samples."},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "backdoor"]},
    },
]


def artifact_uri(path: str, base: Path | None) -> str:
    """A URI reference for ``path``: relative to ``base`` when under it, else a ``file:`` URI for an absolute
    path; every character outside the unreserved set and '/' is percent-encoded (UTF-8), ':' included, so
    that a first segment cannot read as a scheme."""
    p = Path(path)
    if base is not None:
        try:
            return quote(p.resolve().relative_to(base.resolve()).as_posix(), safe="/")
        except ValueError:
            pass
    if p.is_absolute():
        return p.as_uri()
    return quote(p.as_posix(), safe="/")


def _message(text: str, markdown_text: str) -> dict[str, str]:
    return {"text": text, "markdown": markdown_text}


def sarif_results(report: dict[str, Any], base: Path | None = None) -> list[dict[str, Any]]:
    """The SARIF results of one report."""
    verdict = report.get("verdict")
    if not verdict:
        return []
    path = report["input"]["path"]
    uri = artifact_uri(path, base)
    sha = report["input"]["sha256"]
    location = [{"physicalLocation": {"artifactLocation": {"uri": uri}}}]
    rows = {row["class"]: row for row in report.get("detection", {}).get("per_class", [])}
    results = []
    level = {"backdoored": "error", "suspicious": "warning"}.get(verdict["verdict"])
    if level:
        for target in verdict["suspected_targets"]:
            row = rows.get(target, {})
            name = row.get("name", str(target))
            index, detector = cited_index(report, row)
            detail = (f"looks like a backdoor target (verdict {verdict['verdict']}, anomaly index "
                      f"{'n/a' if index is None else f'{index:.2f}'}{f' from {detector}' if detector else ''}).")
            results.append({
                "ruleId": "AUD001", "ruleIndex": 0, "level": level, "kind": "fail",
                "message": _message(
                    f"{sarif_text(path)}: class {target} ({sarif_text(name)}) {detail}",
                    f"{markdown(path)}: class {target} ({markdown(name)}) {markdown(detail)}"),
                "locations": location,
                "partialFingerprints": {"modelSha256/class": f"{sha}/{target}"},
                "properties": {"verdict": verdict["verdict"], "class": target, "className": name,
                               "anomalyIndex": index, "indexFrom": detector, "score": verdict["score"],
                               "maskL1": row.get("neural_cleanse.mask_l1"), "reach": row.get("reach.reach")},
            })
    purified = verdict.get("purified")
    if purified is not None and not verdict.get("purified_passes", True):
        output = report.get("output") or {}
        out_path = output.get("path", report["input"]["path"])
        out_uri = artifact_uri(out_path, base)
        decided_by = (verdict.get("verification") or {}).get("decided_by", [])
        detail = f"the purified model fails verification ({purified}): " + "; ".join(decided_by)
        results.append({
            "ruleId": "AUD002", "ruleIndex": 1, "level": "error", "kind": "fail",
            "message": _message(f"{sarif_text(out_path)}: {sarif_text(detail)}",
                                f"{markdown(out_path)}: {markdown(detail)}"),
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": out_uri}}}],
            "partialFingerprints": {"modelSha256/rescan": f"{sha}/rescan"},
            "properties": {"verdict": purified, "rescanVerdict": (verdict.get("rescan") or {}).get("verdict")},
        })
    return results


def render_sarif(reports: list[dict[str, Any]], base: Path | None = None) -> dict[str, Any]:
    """One SARIF log with one run over every report (several models scanned at once)."""
    version = reports[0]["tool"]["version"] if reports else "unknown"
    results = [r for report in reports for r in sarif_results(report, base)]
    artifacts = [{"location": {"uri": artifact_uri(r["input"]["path"], base)},
                  "hashes": {"sha-256": r["input"]["sha256"]}} for r in reports]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "auditor", "version": version, "semanticVersion": version,
                                "informationUri": INFO_URI, "rules": RULES}},
            "artifacts": artifacts,
            "results": results,
            "columnKind": "unicodeCodePoints",
        }],
    }
