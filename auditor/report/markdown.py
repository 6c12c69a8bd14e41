"""A readable Markdown page from a report dict.

Every text that comes from the model or its file (path, class names, layout, messages that quote
them) goes through ``escape.markdown``: a crafted name must not add a heading, a link or HTML."""

from __future__ import annotations

from typing import Any

from .columns import OVERLAP_NOTE, detector_columns, purification_steps
from .escape import markdown as md


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _diversity_text(diversity: dict[str, Any]) -> str:
    return (f"diversity: within-class spread {diversity.get('spread')} (unrelated images about 1.41), "
            f"near-duplicates {_pct(diversity.get('near_duplicates'))}")


def render_markdown(report: dict[str, Any]) -> str:
    lines: list[str] = []
    spec = report.get("spec", {})
    purification = report.get("purification", {})
    lines.append(f"# auditor {md(report.get('command', ''))} report")
    lines.append("")
    verdict = report.get("verdict")
    if verdict:
        if verdict.get("purified") is not None:  # an audit: whether the purified model may ship comes first
            state = "passes verification" if verdict.get("purified_passes") else "FAILS verification"
            lines += [f"**Purified model: {md(verdict['purified'])} — {state}**", ""]
            # the reasons quote class names, which come from the model
            lines += [f"- {md(reason)}" for reason in (verdict.get("verification") or {}).get("decided_by", [])] + [""]
        targets = ", ".join(str(t) for t in verdict.get("suspected_targets", [])) or "none"
        lines += [f"**Original model: {md(verdict['verdict'])}** (score {verdict['score']:.2f}, suspected target(s): "
                  f"{targets})", ""]
    lines.append(f"- input: {md(report['input']['path'])} (sha256 `{report['input']['sha256'][:16]}…`)")
    if report.get("output"):
        lines.append(f"- output: {md(report['output']['path'])} (sha256 `{report['output']['sha256'][:16]}…`)")
    lines.append(f"- model: {md(spec.get('channels'))}x{md(spec.get('height'))}x{md(spec.get('width'))} "
                 f"{md(spec.get('layout'))}, {md(spec.get('num_classes'))} classes, output {md(spec.get('output_kind'))}")
    lines.append(f"- tool {md(report['tool']['version'])}, seed {md(report.get('seed'))}, "
                 f"created {md(report.get('created'))}")
    if purification:
        lines.append(f"- purification: **{md(purification.get('status'))}** — {md(purification.get('message'))}")
    lines.append("")

    evaluation = report.get("evaluation")
    if evaluation:
        lines += ["## Measured on real data", "",
                  "| | ACC | ASR | RA |", "|---|---|---|---|"]
        for when in ("before", "after"):
            e = evaluation.get(when) or {}
            lines.append(f"| {when} | {_pct(e.get('acc'))} | {_pct(e.get('asr'))} | {_pct(e.get('ra'))} |")
        lines.append("")

    inversion = report.get("inversion")
    if inversion:
        kept = inversion.get("kept", {}).get("overall", {})
        lines += ["## Synthetic samples (stabilized model inversion)", "",
                  f"{inversion.get('samples', {}).get('total')} samples ({inversion.get('method')}); "
                  f"{_diversity_text(inversion.get('diversity') or {})}.", "",
                  "| confidence | stable: input noise | parameter noise | worst-case input | worst-case parameters |",
                  "|---|---|---|---|---|",
                  f"| {kept.get('confidence')} | {kept.get('input_noise')} | {kept.get('param_noise')} | "
                  f"{kept.get('worst_input')} | {kept.get('worst_param')} |", "",
                  "![synthetic samples, one row per class](synthetic_samples.png)", ""]

    detection = report.get("detection")
    if detection:
        columns = detector_columns(report)
        head = ["class", "NC anomaly index", "trigger L1", "trigger success"]
        for c in columns:
            head.append(f"{c.label} index{' (votes)' if c.votes else ''}")
            if c.figure:
                head.append(c.heading)
        lines += ["## Detection per class", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in detection["per_class"]:
            cells = [f"{row['class']} {md(row['name'])}", str(row.get("neural_cleanse.index", "n/a")),
                     str(row.get("neural_cleanse.mask_l1", "n/a")), _pct(row.get("neural_cleanse.attack_success"))]
            for c in columns:
                cells.append(str(row.get(f"{c.detector}.index", "n/a")))
                if c.figure:
                    value = row.get(f"{c.detector}.{c.figure}")
                    cells.append(_pct(value) if c.percent else str(value if value is not None else "n/a"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if (report.get("artifacts") or {}).get("triggers"):
            lines += ["![reversed triggers: mask, pattern, mask x pattern per class](triggers.png)", ""]

    if purification:
        lines += ["## Purification attempts", ""]
        if purification.get("threshold_basis"):
            lines += [f"Guard threshold: {md(purification['threshold_basis'])}.", ""]
        lines += ["| attempt | method | share of the change kept | holdout agreement | "
                  "prior-probe agreement | passed |", "|---|---|---|---|---|---|"]
        for attempt in purification.get("attempts", []):
            lines.append(f"| {attempt['attempt']} | {md(attempt['purifier'])} | {attempt.get('interpolation', 1.0):g} | "
                         f"{_pct(attempt.get('agreement'))} | {_pct(attempt.get('prior_agreement'))} | "
                         f"{'yes' if attempt.get('passed') else 'no'} |")
        lines.append("")
        steps, which = purification_steps(purification)
        if steps:
            lines += [f"Steps of the {which}:", "", "| step | acted | what it found or did | seconds |", "|---|---|---|---|"]
            for step in steps:
                what = step.get("finding") or "; ".join(step.get("notes") or []) or "-"
                lines.append(f"| {md(step.get('name'))} | {'yes' if step.get('acted') else 'no'} | {md(what, 300)} | "
                             f"{float(step.get('seconds') or 0):.1f} |")
            lines.append("")

    verification = report.get("verification")
    if verification:
        parity = verification["write_back_parity"]
        lines += ["## Verification", "",
                  f"- written by {verification['export_method']}; max abs difference to the purified module in "
                  f"onnxruntime {parity['max_abs']:.2e} ({'OK' if parity['ok'] else 'FAILED'})",
                  f"- graph node-for-node the original: {'yes' if verification['node_for_node'] else 'no'}", ""]

    timings = report.get("timings")
    if timings:
        lines += ["## Time per stage", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
        lines.append("")
        if any("." in k for k in timings):
            lines += [OVERLAP_NOTE, ""]
    return "\n".join(lines)
