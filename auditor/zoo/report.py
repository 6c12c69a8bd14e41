"""The zoo table of docs/zoo.md, rendered from ``manifest.json`` so the numbers are never retyped."""

from __future__ import annotations

from pathlib import Path

from .manifest import read_manifest


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def markdown_table(folder: Path) -> str:
    """One row per model: data set, attack, architecture, export style, init, ACC/ASR/RA (full test set and
    subset), time."""
    data = read_manifest(folder)
    lines = [
        "| model | data | attack (target, rate) | architecture | export style | init | ACC % | ASR % | RA % | "
        "subset ACC / ASR / RA % | training time |",
        "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for m in data["models"]:
        test, sub = m["metrics"]["test"], m["metrics"]["eval_subset"]
        attack = "none (clean)"
        if m["attack"]:
            target = "y+1 mod 10" if m["attack"].get("all_to_all") else f"target {m['target']}"
            attack = f"{m['attack']['name']} ({target}, {m['poisoning_rate']:g})"
        init = "scratch" if m["init"].startswith("trained from scratch") else "fine-tuned from clean base"
        minutes = m["training_seconds"] / 60
        lines.append(
            f"| `{m['file']}` | {m['dataset'].split(' ')[0]} | {attack} | {m['architecture']} ({m['parameters']:,} params) | {m['export']['name']} | "
            f"{init}, {m['epochs']:g} ep | {_pct(test['acc'])} | {_pct(test['asr'])} | {_pct(test['ra'])} | "
            f"{_pct(sub['acc'])} / {_pct(sub['asr'])} / {_pct(sub['ra'])} | {minutes:.1f} min |"
        )
    return "\n".join(lines)
