"""Which per-class detector figures the report tables show, and which index a finding cites.

Every detector that ran gets an index column and its main figure, read from the merged per-class rows
of ``report.json``: a class flagged by any voter shows the figure that explains its flag. Each
detector's label and figure are its own class attributes, read from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# the per-class figure shown beside the index of a detector outside the registry, first one present
FIGURES = ("reach", "share", "flip_in_share", "share_of_flips", "max_margin")
PERCENT = {"reach", "share", "flip_in_share", "share_of_flips"}
FIGURE_LABELS = {"reach": "share", "share": "share", "flip_in_share": "flip-in share", "share_of_flips": "share of flips",
                 "max_margin": "margin"}
# under the time table of both renderers, where it has ``stage.detector`` rows
OVERLAP_NOTE = ("Rows named stage.detector give one detector's wall time within that stage; detectors may run side "
                "by side (more than one detection worker on a CPU), so these can overlap and need not add up to the "
                "stage.")


@dataclass(frozen=True)
class Column:
    detector: str
    label: str
    figure: str | None  # key of the figure in the merged rows (``{detector}.{figure}``), if any
    votes: bool

    @property
    def percent(self) -> bool:
        return self.figure in PERCENT

    @property
    def heading(self) -> str:
        """The figure's column heading."""
        return f"{self.label} {FIGURE_LABELS.get(self.figure or '', self.figure)}"


def detector_columns(report: dict[str, Any], key: str = "detection") -> list[Column]:
    """One column pair per detector that ran in ``report[key]`` (the detection, or an audit's re-scan),
    Neural Cleanse excepted (its table has its own three columns)."""
    detection = report.get(key) or {}
    rows = detection.get("per_class") or [{}]
    voters = set(((report.get("verdict") or {}).get("thresholds") or {}).get("voters", ()))
    from auditor.detect import DETECTORS, detector_label

    columns = []
    for name in detection.get("detectors", {}):
        if name == "neural_cleanse":
            continue
        declared = DETECTORS[name].figure if name in DETECTORS else None
        candidates = (declared,) if declared else FIGURES
        figure = next((figure for figure in candidates if f"{name}.{figure}" in rows[0]), None)
        columns.append(Column(name, detector_label(name), figure, name in voters))
    return columns


def cited_index(report: dict[str, Any], row: dict[str, Any]) -> tuple[float | None, str | None]:
    """(index, detector) of the voter that rates this class highest, divided by the voter's scale as
    the verdict does, among the voters whose index may vote for the class (``conclusive``); Neural
    Cleanse's index when none did."""
    thresholds = (report.get("verdict") or {}).get("thresholds") or {}
    scales = dict(tuple(pair) for pair in thresholds.get("voter_scales", ()))
    detectors = (report.get("detection") or {}).get("detectors", {})
    best: tuple[float | None, str | None] = (None, None)
    for voter in thresholds.get("voters", ()):
        conclusive = detectors.get(voter, {}).get("conclusive", True)
        if isinstance(conclusive, list):
            conclusive = conclusive[row["class"]] if row.get("class", len(conclusive)) < len(conclusive) else True
        value = row.get(f"{voter}.index") if conclusive else None
        if value is not None and (best[0] is None or value / scales.get(voter, 1.0) > best[0]):
            best = (round(value / scales.get(voter, 1.0), 4), voter)
    if best[0] is None and row.get("neural_cleanse.index") is not None:
        best = (row["neural_cleanse.index"], "neural_cleanse")
    return best


def purification_steps(purification: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The step records to show, and whose they are: the kept attempt's, else (nothing kept) the first attempt's,
    where the steps found what they found on the unpurified model."""
    final = purification.get("final")
    if final:
        return list(final.get("steps") or []), "kept attempt"
    attempts = purification.get("attempts") or []
    first = attempts[0].get("result") if attempts else None
    return list((first or {}).get("steps") or []), "first attempt (undone)"
