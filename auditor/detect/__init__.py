"""Backdoor detection from the suspect model alone, one class per method behind ``Detector``.

    results = run_detectors(classifier, synth.images01, synth.labels, DetectionConfig())
    verdict = combine(results, VerdictConfig())   # clean / suspicious / backdoored

The samples are synthetic (``auditor.inversion``), never real data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor

from auditor.errors import AuditorError
from auditor.model import Classifier

from .base import DetectionResult, Detector, ProgressFn, anomaly_index
from .feature_reach import FeatureReach, FeatureReachConfig
from .max_margin import MaxMargin, MaxMarginConfig
from .neural_cleanse import NeuralCleanse, NeuralCleanseConfig, trigger_images
from .patch import Patch, PatchConfig
from .perturbation import WeightPerturbation, WeightPerturbationConfig
from .reach import Reach, ReachConfig
from .stimulation import ChannelStimulation, StimulationConfig
from .trigger_family import (SignalReach, SignalReachConfig, SineReach, SineReachConfig, TriggerFamilyReach, WarpReach,
                             WarpReachConfig)
from .verdict import VERDICTS, Verdict, VerdictConfig, combine, fails, worst

DETECTORS: dict[str, type[Detector]] = {cls.name: cls for cls in (NeuralCleanse, WeightPerturbation, Reach, Patch,
                                                                FeatureReach, ChannelStimulation, MaxMargin, WarpReach,
                                                                SignalReach, SineReach)}


def get_detector(name: str, **config: Any) -> Detector:
    """A detector by registry name with its reference defaults unless overridden."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise AuditorError(f"unknown detector {name!r}; known: {', '.join(list_detectors())}") from None
    return cls(**config)


def list_detectors() -> list[str]:
    return sorted(DETECTORS)


def default_voters() -> tuple[str, ...]:
    """The detectors that declare ``votes``, in registry order: the default verdict's voters."""
    return tuple(name for name, cls in DETECTORS.items() if cls.votes)


def default_voter_scales() -> tuple[tuple[str, float], ...]:
    """(voter, scale) for the voters whose index is on another scale than a MAD-scaled one."""
    return tuple((name, cls.vote_scale) for name, cls in DETECTORS.items() if cls.votes and cls.vote_scale != 1.0)


def detector_label(name: str) -> str:
    """The detector's short name for headings; the name itself for one outside the registry (a report
    written by a plug-in detector, read where the plug-in is not installed)."""
    cls = DETECTORS.get(name)
    return (cls.label or name) if cls else name


def detector_signal(name: str) -> str:
    """How a verdict's reason names what the detector saw in a class."""
    cls = DETECTORS.get(name)
    return (cls.signal or name) if cls else name


@dataclass
class DetectionConfig:
    """Which detectors run, their settings, and the verdict's thresholds."""

    # the long ones first (Neural Cleanse, reach, patch), so that side-by-side workers finish together
    detectors: tuple[str, ...] = ("neural_cleanse", "reach", "patch", "weight_perturbation", "stimulation",
                                  "warp_reach", "sine_reach")
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # detector name -> config overrides
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    threads: int | None = 1  # torch CPU threads while detecting (restored after); None keeps torch's setting
    # detectors run side by side in this many workers (CPU only), each on its own model copy; 1: one after another
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))

    def to_json(self) -> dict[str, Any]:
        return {"detectors": list(self.detectors), "settings": self.settings, "verdict": self.verdict.to_json(),
                "threads": self.threads, "workers": self.workers}

    def deciding_only(self) -> "DetectionConfig":
        """The same configuration restricted to the detectors the verdict reads (voters, the auxiliary
        detector when its threshold is set, the patch detector): for a re-scan, which needs a verdict,
        not the reported-only figures (Neural Cleanse took a third of a re-scan's time)."""
        needed = set(self.verdict.voters) | {"patch"}
        if self.verdict.aux_threshold is not None:
            needed.add(self.verdict.auxiliary)
        return replace(self, detectors=tuple(d for d in self.detectors if d in needed))


def run_detectors(classifier: Classifier, images01: Tensor, labels: Tensor, config: DetectionConfig = DetectionConfig(),
                  *, seed: int = 0, progress: ProgressFn | None = None) -> dict[str, DetectionResult]:
    """Every configured detector on the same synthetic samples; results in the configured order."""
    import torch

    if config.workers < 1:
        raise AuditorError(f"detection needs at least one worker, got {config.workers}")
    before = torch.get_num_threads()
    if config.threads is not None and classifier.device.type == "cpu":
        torch.set_num_threads(config.threads)
    try:
        detectors = [(name, get_detector(name, **config.settings.get(name, {}))) for name in config.detectors]
        if config.workers == 1 or classifier.device.type != "cpu" or len(detectors) < 2:
            return {name: detector.detect(classifier, images01, labels, seed=seed, progress=progress)
                    for name, detector in detectors}
        return _side_by_side(classifier, images01, labels, detectors, config.workers, config.threads, seed, progress)
    finally:
        torch.set_num_threads(before)


def _side_by_side(classifier: Classifier, images01: Tensor, labels: Tensor, detectors: list[tuple[str, Detector]],
                  workers: int, threads: int | None, seed: int, progress: ProgressFn | None
                  ) -> dict[str, DetectionResult]:
    """Run the detectors in threads (torch releases the GIL inside its kernels). Each gets a private
    copy of the model: detectors toggle gradients, hook channels and perturb weights, which must never
    reach a neighbour. Progress counts finished detectors (per-step bars would interleave)."""
    import copy
    from concurrent.futures import ThreadPoolExecutor, as_completed

    import torch

    def run(detector: Detector) -> DetectionResult:
        if threads is not None:  # OpenMP's thread count is per thread: a new thread starts at the machine's
            torch.set_num_threads(threads)
        return detector.detect(copy.deepcopy(classifier), images01, labels, seed=seed, progress=None)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="detector") as pool:
        futures = {pool.submit(run, detector): name for name, detector in detectors}
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()  # a detector's error surfaces here, before the others' results are used
                if progress:
                    progress(done, len(detectors), f"{futures[future]} done")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # do not start the queued ones after a failure
            raise
        by_name = {name: future.result() for future, name in futures.items()}
    return {name: by_name[name] for name, _ in detectors}


__all__ = ["ChannelStimulation", "DETECTORS", "default_voter_scales", "default_voters", "detector_label", "detector_signal", "DetectionConfig", "DetectionResult", "Detector", "FeatureReach", "FeatureReachConfig", "MaxMargin", "MaxMarginConfig", "NeuralCleanse", "NeuralCleanseConfig", "Patch", "PatchConfig", "Reach", "ReachConfig", "SignalReach", "SignalReachConfig", "SineReach", "SineReachConfig", "StimulationConfig", "TriggerFamilyReach",
           "VERDICTS", "Verdict", "VerdictConfig", "WarpReach", "WarpReachConfig", "WeightPerturbation", "WeightPerturbationConfig", "anomaly_index",
           "combine", "fails", "get_detector", "list_detectors", "run_detectors", "trigger_images", "worst"]
