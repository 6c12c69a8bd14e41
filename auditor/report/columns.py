"""Which per-class detector figures the report tables show, and which index a finding cites.

The tables used to name reach and weight perturbation by hand, so a class flagged by another voter
(stimulation, warp reach) showed no figure that explained its flag. Every detector that ran now gets
an index column and its main figure, read from the merged per-class rows of ``report.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LABELS = {"neural_cleanse": "NC", "reach": "reach", "stimulation": "stimulation", "warp_reach": "warp reach",
          "signal_reach": "signal reach", "sine_reach": "sine reach", "weight_perturbation": "weight perturbation",
          "feature_reach": "feature reach", "patch": "patch", "max_margin": "max margin"}
# the per-class figure shown beside each detector's index, first one present
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
    columns = []
    for name in detection.get("detectors", {}):
        if name == "neural_cleanse":
            continue
        figure = next((figure for figure in FIGURES if f"{name}.{figure}" in rows[0]), None)
        columns.append(Column(name, LABELS.get(name, name), figure, name in voters))
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
