"""What a fleet run covers: files, folders, glob patterns and JSON-lines manifests, expanded into one
``FleetItem`` per model.

A registry rarely hands over one neat folder: uploads arrive as lists, exports as trees, and some
models need their own preprocessing (a 0..255 input range, class names). A manifest line carries a
path and optional spec overrides, so that one run covers models that need different settings.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from auditor.errors import AuditorError

MANIFEST_SUFFIXES = (".jsonl", ".ndjson")
MODEL_SUFFIX = ".onnx"
# manifest keys accepted as spec overrides, with the command line's spelling as an alias
_SPEC_KEYS = {"value_range": "value_range", "input_range": "value_range", "mean": "mean", "std": "std",
              "layout": "layout", "class_names": "class_names"}


@dataclass(frozen=True)
class FleetItem:
    """One model of the fleet: its path (as given, so reports name it as the operator does) and the
    spec overrides that apply to it alone."""

    path: Path
    spec_overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _folder_models(folder: Path) -> list[Path]:
    """Every ``*.onnx`` below ``folder``, sorted, so that two runs list the same models in the same order."""
    return sorted(p for p in folder.rglob(f"*{MODEL_SUFFIX}") if p.is_file() and not p.name.startswith("."))


def _spec_overrides(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise AuditorError(f"{where}: 'spec' must be an object of spec fields, got {type(raw).__name__}")
    overrides: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _SPEC_KEYS:
            raise AuditorError(f"{where}: unknown spec field {key!r}; known: {', '.join(sorted(_SPEC_KEYS))}")
        if key in ("value_range", "input_range", "mean", "std"):
            try:
                value = tuple(float(v) for v in value)
            except (TypeError, ValueError) as exc:
                raise AuditorError(f"{where}: {key} must be a list of numbers") from exc
            if key in ("value_range", "input_range") and len(value) != 2:
                raise AuditorError(f"{where}: {key} takes two numbers, [lo, hi]")
        elif key == "class_names":
            if not isinstance(value, list):
                raise AuditorError(f"{where}: class_names must be a list of names")
            value = tuple(str(v) for v in value)
        elif key == "layout" and value not in ("NCHW", "NHWC"):
            raise AuditorError(f"{where}: layout must be NCHW or NHWC")
        overrides[_SPEC_KEYS[key]] = value
    return overrides


def read_manifest(path: Path) -> list[FleetItem]:
    """A JSON-lines manifest: one object per line, ``{"path": ..., "spec": {...}}``; a relative path is
    relative to the manifest's folder (the manifest travels with its models). Blank lines and lines
    starting with ``#`` are skipped."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuditorError(f"{where}: not a JSON object ({exc.msg})") from exc
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise AuditorError(f"{where}: each line needs a \"path\" string")
        model = Path(entry["path"])
        if not model.is_absolute():
            model = path.parent / model
        items.append(FleetItem(model, _spec_overrides(entry.get("spec"), where)))
    return items


def collect(inputs: Iterable[str]) -> list[FleetItem]:
    """The models named by ``inputs``, in order, each once (by path; the same file reached twice, e.g. by
    a folder and a glob, is one model). A name that matches nothing is an error before any work starts:
    a typo must not pass as an empty fleet."""
    items: list[FleetItem] = []
    seen: set[Path] = set()

    def add(item: FleetItem) -> None:
        key = item.path.resolve()
        if key not in seen:
            seen.add(key)
            items.append(item)

    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = _folder_models(path)
            if not found:
                raise AuditorError(f"{path}: no *{MODEL_SUFFIX} file in this folder")
            for model in found:
                add(FleetItem(model))
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            for item in read_manifest(path):
                add(item)
        elif path.is_file():
            add(FleetItem(path))
        elif _is_pattern(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            models = [m for m in matches if m.is_file()]
            if not models:
                raise AuditorError(f"{text}: the pattern matches no file")
            for model in models:
                add(FleetItem(model))
        else:
            raise AuditorError(f"{path}: no such file or folder")
    return items
