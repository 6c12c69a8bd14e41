"""Detectors and the verdict rule: the anomaly index, Neural Cleanse on a model with a planted
backdoor, the weight-perturbation signal, and how indices become clean/suspicious/backdoored."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from auditor.detect import (DETECTORS, ChannelStimulation, MaxMargin, DetectionConfig, DetectionResult, FeatureReach, NeuralCleanse, Patch, Reach, SignalReach, SineReach, VerdictConfig, WarpReach, WeightPerturbation, anomaly_index,
                            combine, default_voters, fails, get_detector, list_detectors, run_detectors, worst)
from auditor.detect.trigger_family import smooth_warp
from auditor.errors import AuditorError
from auditor.model import Classifier
from converters import ModelSpec

K, SIDE = 6, 8
TARGET = 2


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster, and much faster on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Planted(nn.Module):
    """A linear classifier on 8x8 images with a planted all-to-one backdoor: a white 2x2 patch in
    the bottom-right corner sends every image to class TARGET."""

    def __init__(self, backdoor: bool = True) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(K, 3 * SIDE * SIDE, generator=g) * 0.3)
        self.backdoor = backdoor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = x.flatten(1) @ self.weight.T
        if not self.backdoor:
            return logits
        patch = x[:, :, -2:, -2:].flatten(1).mean(1)
        boost = 50 * torch.sigmoid(20 * (patch - 0.8))
        onehot = torch.zeros(K)
        onehot[TARGET] = 1
        return logits + boost[:, None] * onehot


def _classifier(backdoor: bool = True) -> Classifier:
    spec = ModelSpec("input", "logits", 3, SIDE, SIDE, K)
    return Classifier(Planted(backdoor), spec)


def _samples(classifier: Classifier, per_class: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, images pushed towards the class (what inversion would return), labelled by the model."""
    g = torch.Generator().manual_seed(1)
    w = classifier.network.weight.detach().view(K, 3, SIDE, SIDE)
    images = []
    for c in range(K):
        noise = torch.rand(per_class, 3, SIDE, SIDE, generator=g)
        images.append((0.5 * noise + 0.5 * (w[c].sign() + 1) / 2).clamp(0, 1))
    x = torch.cat(images)
    return x, classifier.predict(x)


def test_anomaly_index_matches_the_definition() -> None:
    values = torch.tensor([10.0, 11.0, 9.0, 10.5, 9.5, 2.0])
    median = values.median()
    mad = (values - median).abs().median()
    expected = (median - values) / (1.4826 * mad)
    assert torch.allclose(anomaly_index(values, "low"), expected.float(), atol=1e-5)
    assert torch.allclose(anomaly_index(values, "high"), -expected.float(), atol=1e-5)
    assert int(anomaly_index(values).argmax()) == 5


def test_anomaly_index_of_identical_values_is_finite() -> None:
    index = anomaly_index(torch.full((5,), 3.0))
    assert torch.isfinite(index).all() and float(index.abs().max()) == 0.0


def test_neural_cleanse_finds_the_planted_target() -> None:
    classifier = _classifier()
    x, y = _samples(classifier)
    assert len(set(y.tolist())) >= K - 1
    result = NeuralCleanse(steps=120, per_class=12, batch_per_class=8).detect(classifier, x, y, seed=0)
    best, index = result.top()
    assert best == TARGET and index > 2
    figures = result.per_class[TARGET]
    assert figures["attack_success"] >= 0.9 and figures["reached_target"]
    assert figures["mask_l1"] < min(f["mask_l1"] for f in result.per_class if f["class"] != TARGET)
    assert result.images["mask"].shape == (K, 1, SIDE, SIDE) and result.images["pattern"].shape == (K, 3, SIDE, SIDE)
    assert combine({"neural_cleanse": result}).verdict == "clean"  # reported, not voting by default
    verdict = combine({"neural_cleanse": result}, VerdictConfig(voters=("neural_cleanse", "reach")))
    assert verdict.verdict == "backdoored" and verdict.suspected_targets[0] == TARGET
    # the model is untouched: parameters keep requires_grad and values
    assert all(p.requires_grad for p in classifier.parameters())


def test_neural_cleanse_is_deterministic_under_a_seed() -> None:
    classifier = _classifier()
    x, y = _samples(classifier, per_class=6)
    a = NeuralCleanse(steps=15, per_class=6).detect(classifier, x, y, seed=3)
    b = NeuralCleanse(steps=15, per_class=6).detect(classifier, x, y, seed=3)
    assert a.to_json() == b.to_json()


def test_weight_perturbation_reports_a_share_per_class() -> None:
    classifier = _classifier(backdoor=False)
    x, y = _samples(classifier, per_class=6)
    result = WeightPerturbation(radii=(0.05,), ascent_steps=1).detect(classifier, x, y)
    assert len(result.per_class) == K and len(result.index) == K
    assert all(0.0 <= row["flip_in_share"] <= 1.0 for row in result.per_class)


def test_registry_and_bad_options() -> None:
    assert list_detectors() == sorted(DETECTORS) and all(DETECTORS[name].name == name for name in DETECTORS)
    assert isinstance(get_detector("neural_cleanse", steps=3), NeuralCleanse)
    with pytest.raises(AuditorError, match="unknown detector"):
        get_detector("nope")
    with pytest.raises(AuditorError, match="bad option"):
        get_detector("neural_cleanse", nonsense=1)
    classifier = _classifier()
    with pytest.raises(AuditorError, match="non-empty"):
        NeuralCleanse().detect(classifier, torch.empty(0, 3, SIDE, SIDE), torch.empty(0, dtype=torch.long))


def _result(name: str, index: list[float]) -> DetectionResult:
    return DetectionResult(name, {}, [{"class": k} for k in range(len(index))], index)


@pytest.mark.parametrize("index, expected, targets", [
    ([0.1, -0.5, 0.3, 0.0, 1.0], "clean", []),
    ([0.1, -0.5, 1.7, 0.0, 1.0], "suspicious", [2]),
    ([0.1, 3.5, 1.7, 0.0, 2.4], "backdoored", [1, 4, 2]),
])
def test_verdict_from_a_voting_index(index: list[float], expected: str, targets: list[int]) -> None:
    verdict = combine({"reach": _result("reach", index)})
    assert verdict.verdict == expected and verdict.suspected_targets == targets
    assert verdict.score == pytest.approx(max(0.0, *index))
    assert verdict.reasons


def test_verdict_thresholds_are_configurable_and_the_auxiliary_signal_optional() -> None:
    reach = _result("reach", [0.1, 1.7, 0.0, 0.2])
    aux = _result("weight_perturbation", [0.0, 5.0, 0.0, 4.0])
    assert combine({"reach": reach, "weight_perturbation": aux}).verdict == "suspicious"  # aux does not vote
    assert combine({"reach": reach}, VerdictConfig(threshold=1.6)).verdict == "backdoored"
    voting = VerdictConfig(aux_threshold=3.0)
    alone = combine({"reach": _result("reach", [0.0] * 4), "weight_perturbation": aux}, voting)
    assert alone.verdict == "suspicious" and set(alone.suspected_targets) == {1, 3}


def test_either_voter_decides_and_the_score_is_the_largest_index() -> None:
    nc = _result("neural_cleanse", [0.1, 1.7, 0.0, 0.2])
    reach = _result("reach", [0.0, 0.3, -0.5, 6.0])
    verdict = combine({"neural_cleanse": nc, "reach": reach}, VerdictConfig(voters=("neural_cleanse", "reach")))
    assert verdict.verdict == "backdoored" and verdict.suspected_targets == [3, 1]
    assert verdict.score == pytest.approx(6.0)
    assert any("universal perturbation" in r for r in verdict.reasons)
    assert combine({"neural_cleanse": nc, "reach": reach}).suspected_targets == [3]  # reach alone votes by default
    only_nc = combine({"neural_cleanse": nc, "reach": reach}, VerdictConfig(voters=("neural_cleanse",)))
    assert only_nc.verdict == "suspicious" and only_nc.suspected_targets == [1]


def test_stimulation_votes_with_its_own_thresholds_and_only_when_conclusive() -> None:
    reach = _result("reach", [0.1, 0.3, 0.0, 0.2])
    # a natural class at 3.1 (Blended's class 2 on the zoo) is below stimulation's own threshold of 5
    natural = combine({"reach": reach, "stimulation": _result("stimulation", [0.0, 0.5, 3.1, 0.2])})
    assert natural.verdict == "clean" and natural.suspected_targets == []
    found = combine({"reach": reach, "stimulation": _result("stimulation", [14.5, 0.5, 0.0, 0.2])})
    assert found.verdict == "backdoored" and found.suspected_targets == [0]
    assert any("raising one hidden channel" in r and "14.50 > 5" in r for r in found.reasons)
    assert found.score == pytest.approx(14.5 / 2.5)  # on reach's scale, so that the thresholds apply to it
    doubtful = combine({"reach": reach, "stimulation": _result("stimulation", [4.0, 0.5, 0.0, 0.2])})
    assert doubtful.verdict == "suspicious" and any("4.00 > 3.75" in r for r in doubtful.reasons)
    # no channel moved half the samples within the ladder: a large index from a small share does not count
    weak = _result("stimulation", [14.5, 0.5, 0.0, 0.2])
    weak.conclusive = False
    assert combine({"reach": reach, "stimulation": weak}).verdict == "clean"
    assert combine({"reach": reach, "stimulation": weak}).score == pytest.approx(0.3)
    # per class: only the class one channel filled votes (Input-Aware's audit: class 1 at 7.2 from a share of 0.16)
    beside = _result("stimulation", [25.6, 7.2, 0.0, 0.2])
    beside.conclusive = [True, False, False, False]
    assert combine({"reach": reach, "stimulation": beside}).suspected_targets == [0]
    # its scale is configurable; voters without one are on reach's
    unscaled = VerdictConfig(voter_scales=())
    assert combine({"reach": reach, "stimulation": _result("stimulation", [0.0, 0.5, 3.1, 0.2])}, unscaled).verdict == "backdoored"
    assert unscaled.scale("stimulation") == 1.0 and VerdictConfig().scale("reach") == 1.0


def test_gate_rules() -> None:
    assert worst(["clean", "backdoored", "suspicious"]) == "backdoored" and worst([]) == "clean"
    assert fails("backdoored", "backdoored") and not fails("suspicious", "backdoored")
    assert fails("suspicious", "suspicious") and not fails("clean", "suspicious")
    assert not fails("backdoored", "never")


def test_reach_finds_the_planted_target_and_leaves_the_model_untouched() -> None:
    classifier = _classifier()
    x, y = _samples(classifier)
    before = [p.detach().clone() for p in classifier.parameters()]
    result = Reach(radius=1.5, steps=20, per_class=12).detect(classifier, x, y, seed=0)
    best, index = result.top()
    print("reach per class:", [round(r["reach"], 2) for r in result.per_class], "index", round(index, 2))
    assert best == TARGET and index > 2
    assert result.per_class[TARGET]["reach"] > max(r["reach"] for r in result.per_class if r["class"] != TARGET)
    assert all(r["delta_l2"] <= 1.5 + 1e-4 for r in result.per_class)
    assert result.images["delta"].shape == (K, 3, SIDE, SIDE)
    assert all(p.requires_grad and torch.equal(p, b) for p, b in zip(classifier.parameters(), before))
    assert Reach(radius=1.5, steps=5, per_class=6).detect(classifier, x, y, seed=1).to_json() == \
        Reach(radius=1.5, steps=5, per_class=6).detect(classifier, x, y, seed=1).to_json()


def test_reach_of_the_target_needs_the_backdoor() -> None:
    # the same toy without its planted backdoor: the target class is no longer reached by everything
    # (zoo false positives are measured in docs/detection.md, not on this 6-class toy)
    classifier = _classifier(backdoor=False)
    x, y = _samples(classifier)
    result = Reach(radius=1.5, steps=20, per_class=12).detect(classifier, x, y, seed=0)
    assert result.per_class[TARGET]["reach"] < 0.6


class FeatureShortcut(nn.Module):
    """Two convolutions, average pooling and a linear head; with ``shortcut``, the head reads class TARGET
    from the last convolution's channel 3 ten times as strongly as any other class reads any channel: a
    small delta on that channel sends everything to TARGET (what a warping or per-image trigger leaves
    inside a network, where no small input delta expresses it)."""

    def __init__(self, shortcut: bool = True) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
                conv.bias.zero_()
        head = torch.randn(K, 4, generator=g)
        if shortcut:
            head[TARGET, 3] = 10.0
        self.head = nn.Parameter(head)
        with torch.no_grad():  # centre and scale the pooled features so that every class is predicted somewhere
            pooled = self._pooled(torch.rand(512, 3, SIDE, SIDE, generator=g))
        self.register_buffer("center", pooled.mean(0))
        self.register_buffer("scale", pooled.std(0))

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((self._pooled(x) - self.center) / self.scale) @ self.head.T


def _feature_samples(shortcut: bool) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    """The 20 most confidently classified of 3,000 random images per class (inversion returns confident samples)."""
    classifier = Classifier(FeatureShortcut(shortcut), ModelSpec("input", "logits", 3, SIDE, SIDE, K))
    x = torch.rand(3000, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        top2 = classifier(x).topk(2, dim=1)
    margin, label = top2.values[:, 0] - top2.values[:, 1], top2.indices[:, 0]
    keep = torch.cat([torch.nonzero(label == c)[:, 0][margin[label == c].argsort(descending=True)[:20]]
                      for c in range(K)])
    return classifier, x[keep], label[keep]


def test_feature_reach_climbs_to_the_planted_shortcut_and_leaves_the_model_untouched() -> None:
    classifier, x, y = _feature_samples(shortcut=True)
    before = [p.detach().clone() for p in classifier.parameters()]
    detector = FeatureReach(depth=1.0, start=0.001, step=0.001, max_rungs=200, per_class=10)
    result = detector.detect(classifier, x, y, seed=0)
    best, index = result.top()
    reach = [r["reach"] for r in result.per_class]
    print("feature reach per class:", [round(v, 2) for v in reach], "index", round(index, 2), result.summary)
    assert best == TARGET and index > 2 and reach[TARGET] >= 0.25
    # the ladder stopped at the first rung where a class reached the level: none had before it
    assert result.summary["rungs"] == len(result.per_class[0]["reach_by_rung"]) == len(result.summary["radii"])
    assert all(max(r["reach_by_rung"][-2] for r in result.per_class) < 0.25 for _ in [0] if result.summary["rungs"] > 1)
    assert all(p.requires_grad and torch.equal(p, b) for p, b in zip(classifier.parameters(), before))
    assert result.to_json() == detector.detect(classifier, x, y, seed=0).to_json()


def test_feature_reach_without_the_shortcut_and_bad_options() -> None:
    classifier, x, y = _feature_samples(shortcut=False)
    result = FeatureReach(depth=1.0, start=0.001, step=0.001, max_rungs=200, per_class=10).detect(classifier, x, y)
    # the target's lead goes with the shortcut (false positives on real clean models: docs/detection.md)
    assert result.index[TARGET] < 2 and result.per_class[TARGET]["reach"] < 0.25
    with pytest.raises(AuditorError, match="depth"):
        FeatureReach(depth=1.5).detect(classifier, x, y)
    with pytest.raises(AuditorError, match="no convolution"):
        FeatureReach().detect(_classifier(), *_samples(_classifier()))


def test_stimulation_finds_the_channel_that_carries_the_shortcut() -> None:
    classifier, x, y = _feature_samples(shortcut=True)
    before = [p.detach().clone() for p in classifier.parameters()]
    detector = ChannelStimulation(depth=1.0, levels=(0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0), per_class=10)
    result = detector.detect(classifier, x, y, seed=0)
    assert not result.summary["partial_replay"]  # a plain module: full passes with a hook
    best, index = result.top()
    print("stimulation per class:", [r["share_by_level"] for r in result.per_class], result.summary)
    assert best == TARGET and index > 2 and result.per_class[TARGET]["channel"] == 3
    assert result.per_class[TARGET]["share"] >= 0.5
    assert result.conclusive == [r["share"] >= 0.5 for r in result.per_class] and result.conclusive[TARGET]
    # the ladder stopped at the first level where a class reached the stop share
    levels = result.summary["levels"]
    assert len(levels) == len(result.per_class[0]["share_by_level"])
    assert len(levels) == 1 or max(r["share_by_level"][-2] for r in result.per_class) < 0.5
    assert all(p.requires_grad and torch.equal(p, b) for p, b in zip(classifier.parameters(), before))
    # as an fx graph (what onnx2torch returns) only the layers after the channel run again, with the same shares
    traced = Classifier(torch.fx.symbolic_trace(classifier.network), classifier.spec)
    replayed = detector.detect(traced, x, y, seed=0)
    assert replayed.summary["partial_replay"]
    assert replayed.to_json()["per_class"] == result.to_json()["per_class"]


def test_stimulation_without_the_shortcut_and_bad_options() -> None:
    classifier, x, y = _feature_samples(shortcut=False)
    result = ChannelStimulation(depth=1.0, levels=(0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0), per_class=10).detect(classifier, x, y)
    assert result.top()[0] != TARGET or result.top()[1] < 2
    with pytest.raises(AuditorError, match="depth"):
        ChannelStimulation(depth=-0.1).detect(classifier, x, y)
    with pytest.raises(AuditorError, match="no convolution"):
        ChannelStimulation().detect(_classifier(), *_samples(_classifier()))


def test_patch_detector_reports_where_its_flips_land_and_leaves_the_model_untouched() -> None:
    # whether the search finds a trained patch trigger is tested on a trained toy (tests/test_purify.py)
    # and measured on the zoo (docs/detection.md); this gated toy backdoor has no gradient to follow
    classifier = _classifier()
    x, y = _samples(classifier)
    before = [p.detach().clone() for p in classifier.parameters()]
    result = Patch(pixels=4, steps=60, per_class=12).detect(classifier, x, y, seed=0)
    flips = sum(r["flips_in"] for r in result.per_class)
    assert result.summary["flip_rate"] == pytest.approx(flips / result.summary["samples"], abs=1e-4)
    assert flips == 0 or sum(r["share_of_flips"] for r in result.per_class) == pytest.approx(1.0)
    assert result.images["mask"].shape == (1, SIDE, SIDE) and int(result.images["mask"].sum()) >= 4
    assert all(p.requires_grad and torch.equal(p, b) for p, b in zip(classifier.parameters(), before))
    assert result.to_json() == Patch(pixels=4, steps=60, per_class=12).detect(classifier, x, y, seed=0).to_json()


def _patch_result(flip_rate: float, shares: list[float]) -> DetectionResult:
    return DetectionResult("patch", {"pixels": 16}, [{"class": k, "share_of_flips": v} for k, v in enumerate(shares)],
                           [0.0] * len(shares), summary={"flip_rate": flip_rate})


@pytest.mark.parametrize("flip_rate, shares, expected, targets", [
    (0.9, [0.1] * 10, "backdoored", []),  # all-to-all: the flips spread over the classes
    (0.9, [0.95] + [0.005] * 10, "backdoored", [0]),  # all-to-one: they land in the target
    (0.2, [0.95] + [0.005] * 10, "clean", []),
])
def test_the_patch_rule_is_model_level(flip_rate, shares, expected, targets) -> None:
    verdict = combine({"reach": _result("reach", [0.0] * len(shares)), "patch": _patch_result(flip_rate, shares)})
    assert verdict.verdict == expected and verdict.suspected_targets == targets
    assert (expected == "backdoored") == any("patch trigger" in r for r in verdict.reasons)
    off = combine({"patch": _patch_result(flip_rate, shares)}, VerdictConfig(patch_threshold=None))
    assert off.verdict == "clean"


def test_a_rescan_keeps_only_the_detectors_the_verdict_reads() -> None:
    everything = DetectionConfig(detectors=("neural_cleanse", "reach", "weight_perturbation", "patch", "feature_reach",
                                            "stimulation"))
    assert everything.deciding_only().detectors == ("reach", "patch", "stimulation")
    with_aux = DetectionConfig(detectors=everything.detectors, verdict=VerdictConfig(aux_threshold=3.0,
                                                                                     voters=("reach", "feature_reach")))
    assert with_aux.deciding_only().detectors == ("reach", "weight_perturbation", "patch", "feature_reach")
    assert with_aux.deciding_only().verdict == with_aux.verdict


def test_max_margin_finds_the_planted_target_without_samples() -> None:
    classifier = _classifier()
    detector = MaxMargin(starts=4, steps=60, lr=0.05)
    empty = torch.zeros(0, 3, SIDE, SIDE)
    result = detector.detect(classifier, empty, torch.zeros(0, dtype=torch.long), seed=0)
    margins = [r["max_margin"] for r in result.per_class]
    print("max margin per class:", [round(m, 1) for m in margins], result.summary)
    assert result.top()[0] == TARGET and result.top()[1] > 2 and result.summary["p_value"] < 0.05
    clean = detector.detect(_classifier(backdoor=False), empty, torch.zeros(0, dtype=torch.long), seed=0)
    assert clean.summary["p_value"] > result.summary["p_value"]
    assert result.to_json() == detector.detect(classifier, empty, torch.zeros(0, dtype=torch.long), seed=0).to_json()


COLOURS = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float)


class StructuredBackdoor(nn.Module):
    """A toy classifier with a backdoor keyed to a whole-image change. ``"signal"``: the linear toy
    (``Planted`` without its patch), plus TARGET when the column profile correlates with a sinusoid along
    the width (SIG). ``"warp"``: classes by mean colour (which a small warp leaves alone), plus TARGET when
    the image loses most of its pixel-to-pixel detail, which bilinear resampling through a sub-pixel warp
    does (what WaNet's networks learn from). ``backdoor=False``: the same classifier without it."""

    def __init__(self, kind: str, backdoor: bool = True) -> None:
        super().__init__()
        self.linear = Planted(backdoor=False)
        self.kind, self.backdoor = kind, backdoor
        self.register_buffer("wave", torch.sin(2 * torch.pi * torch.arange(SIDE) * 2 / SIDE))

    @property
    def weight(self) -> torch.Tensor:  # what ``_samples`` builds its class prototypes from
        return self.linear.weight

    @staticmethod
    def detail(x: torch.Tensor) -> torch.Tensor:
        return (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "signal":
            logits = self.linear(x)
            profile = x.mean((1, 2))
            evidence = ((profile - profile.mean(1, keepdim=True)) * self.wave).mean(1) - 0.03
        else:
            logits = 20 * (x.mean((2, 3)) - 0.5) @ COLOURS.T
            evidence = 0.045 - self.detail(x)
        if not self.backdoor:
            return logits
        onehot = torch.zeros(K)
        onehot[TARGET] = 1
        return logits + 50 * torch.sigmoid(300 * evidence)[:, None] * onehot


def _structured_samples(classifier: Classifier, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "signal":
        return _samples(classifier)
    # per class its colour, with pixel noise of +-0.1: detail 0.059-0.077, a uniform half-pixel shift halves it
    g = torch.Generator().manual_seed(1)
    x = torch.cat([0.5 + 0.15 * COLOURS[c][:, None, None] + (torch.rand(12, 3, SIDE, SIDE, generator=g) - 0.5) * 0.2
                   for c in range(K)])
    return x, classifier.predict(x)


# the toy's images are 8x8: fields of 2x2 and 4x4 are as coarse for them as the default 4x4 and 8x8 are at 32x32
@pytest.mark.parametrize("detector_cls, kind, options", [(WarpReach, "warp", {"grids": (2, 4)}),
                                                         (SignalReach, "signal", {})])
def test_trigger_family_reach_finds_a_backdoor_of_its_family(detector_cls, kind, options) -> None:
    classifier = Classifier(StructuredBackdoor(kind), ModelSpec("input", "logits", 3, SIDE, SIDE, K))
    x, y = _structured_samples(classifier, kind)
    if kind == "warp":  # the colour toy puts each sample in its colour's class
        assert torch.equal(y, torch.arange(K).repeat_interleave(12))
    assert not bool((classifier.predict(x) == TARGET).all()), "the samples must not trigger the backdoor by themselves"
    before = [p.detach().clone() for p in classifier.parameters()]
    detector = detector_cls(per_class=6, steps=30, **options)
    result = detector.detect(classifier, x, y, seed=0)
    shares = [r["share"] for r in result.per_class]
    print(kind, "shares:", [round(v, 2) for v in shares], "index", [round(v, 2) for v in result.index])
    assert result.top()[0] == TARGET and result.index[TARGET] > 2
    assert result.conclusive_for(TARGET) and shares[TARGET] >= 0.5
    assert result.conclusive == [s >= detector.config.stop_share for s in shares]
    # the warp screens: one untargeted warp picks the classes that get their own search, the target among them
    assert result.summary["searched"] == (sorted(result.summary["searched"]) if kind == "warp" else list(range(K)))
    if kind == "warp":
        assert TARGET in result.summary["searched"] and len(result.summary["searched"]) == 2
        assert all(r["share"] == r["flow_share"] for r in result.per_class if not r["searched"])
        gains = [r["flow_gain"] for r in result.per_class]
        assert sorted(result.summary["searched"]) == sorted(sorted(range(K), key=lambda t: -gains[t])[:2])
    assert all(p.requires_grad and torch.equal(p, b) for p, b in zip(classifier.parameters(), before))
    assert result.to_json() == detector.detect(classifier, x, y, seed=0).to_json()
    # without the backdoor the same search reaches no class
    plain = Classifier(StructuredBackdoor(kind, backdoor=False), classifier.spec)
    assert not any(detector.detect(plain, x, plain.predict(x), seed=0).conclusive)


def test_sine_reach_finds_a_sinusoid_backdoor_and_nothing_without_it() -> None:
    classifier = Classifier(StructuredBackdoor("signal"), ModelSpec("input", "logits", 3, SIDE, SIDE, K))
    x, y = _structured_samples(classifier, "signal")  # the toy's backdoor: 2 periods across its 8 columns
    before = [p.detach().clone() for p in classifier.parameters()]
    detector = SineReach(per_class=6)
    result = detector.detect(classifier, x, y, seed=0)
    shares = [r["share"] for r in result.per_class]
    print("sine shares:", [round(v, 2) for v in shares], "index", [round(v, 2) for v in result.index])
    assert result.top()[0] == TARGET and result.index[TARGET] > 2 and result.conclusive_for(TARGET)
    assert result.conclusive == [s >= detector.config.stop_share for s in shares]
    best = result.per_class[TARGET]
    assert (best["axis"], best["periods"], best["phase"]) == ("width", 2, 0.0)
    assert torch.equal(result.images["signal"][TARGET, 0, 0], detector.config.amplitude * classifier.network.wave)
    assert all(p.requires_grad and torch.equal(p, b) for p, b in zip(classifier.parameters(), before))
    assert result.to_json() == detector.detect(classifier, x, y, seed=0).to_json()
    plain = Classifier(StructuredBackdoor("signal", backdoor=False), classifier.spec)
    assert not any(detector.detect(plain, x, plain.predict(x), seed=0).conclusive)


def test_sine_reach_bank_stops_at_the_shortest_period() -> None:
    bank = SineReach(phases=2, shortest_period=3.0, amplitude=0.1).bank(32, 32)
    assert len(bank) == 2 * 10 * 2  # two axes, 1-10 periods (a period of 3.2 pixels), two phases
    assert {(axis, wave.shape) for axis, _, _, wave in bank} == {("width", (1, 1, 32)), ("height", (1, 32, 1))}
    assert max(float(wave.abs().max()) for *_, wave in bank) <= 0.1 + 1e-6
    assert len(SineReach(axes=("width",), phases=1, shortest_period=4.0).bank(32, 32)) == 8
    classifier = _classifier()
    for bad in (SineReach(axes=()), SineReach(axes=("depth",)), SineReach(shortest_period=2), SineReach(amplitude=0)):
        with pytest.raises(AuditorError):
            bad.detect(classifier, *_samples(classifier))


def test_trigger_family_shapes_bounds_and_bad_options() -> None:
    x = torch.rand(4, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(5))
    warp = WarpReach(max_shift=0.5)
    assert warp.parameter_shape((3, SIDE, SIDE)) == (1, 2 * (16 + 64))  # a 4x4 and an 8x8 field
    still = warp.apply(x, torch.zeros(warp.parameter_shape((3, SIDE, SIDE))))
    assert torch.allclose(still, x, atol=1e-5)  # no displacement: the identity
    # a uniform shift of half a pixel moves every interior pixel halfway to its neighbour
    shifted = smooth_warp(x, torch.full((1, 2, 4, 4), 0.5) * torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    assert torch.allclose(shifted[..., :-1], (x[..., :-1] + x[..., 1:]) / 2, atol=1e-5)
    signal = SignalReach(amplitude=0.08)
    params = torch.randn(signal.parameter_shape((3, SIDE, SIDE))) * 10
    assert params.shape == (1, 1, 1, SIDE)
    change = signal.apply(torch.full_like(x, 0.5), params) - 0.5
    assert float(change.abs().max()) <= 0.08 + 1e-6 and torch.equal(change[:, :, 0], change[:, :, -1])
    assert SignalReach(axis="height").parameter_shape((3, SIDE, SIDE)) == (1, 1, SIDE, 1)
    classifier = _classifier()
    samples = _samples(classifier)
    for bad in (WarpReach(max_shift=0), WarpReach(grids=(4, 1)), WarpReach(grids=()), SignalReach(axis="depth"), SignalReach(steps=0)):
        with pytest.raises(AuditorError):
            bad.detect(classifier, *samples)


def test_detectors_side_by_side_give_the_figures_of_one_after_another() -> None:
    """Workers run on private copies of the model with one torch thread each: same figures, same order,
    the caller's model untouched, progress counted per finished detector."""
    classifier = _classifier()
    x, y = _samples(classifier, per_class=6)
    before = classifier.network.weight.detach().clone()
    names = ("neural_cleanse", "reach", "weight_perturbation", "sine_reach")
    settings = {"neural_cleanse": {"steps": 20}, "reach": {"steps": 10}}
    serial = run_detectors(classifier, x, y, DetectionConfig(detectors=names, settings=settings, workers=1), seed=3)
    calls: list[tuple[int, int]] = []
    parallel = run_detectors(classifier, x, y, DetectionConfig(detectors=names, settings=settings, workers=2), seed=3,
                             progress=lambda step, total, message="": calls.append((step, total)))
    assert list(parallel) == list(serial) == list(names)
    for name in names:
        assert parallel[name].to_json() == serial[name].to_json(), name
        assert torch.equal(torch.as_tensor(parallel[name].index), torch.as_tensor(serial[name].index))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert torch.equal(classifier.network.weight, before)
    assert torch.get_num_threads() == 1  # the caller's thread count is restored
    with pytest.raises(AuditorError, match="at least one worker"):
        run_detectors(classifier, x, y, DetectionConfig(detectors=names, workers=0))


def test_a_failing_detector_fails_the_side_by_side_run(monkeypatch: pytest.MonkeyPatch) -> None:
    classifier = _classifier()
    x, y = _samples(classifier, per_class=6)

    def boom(self, *args, **kwargs):
        raise RuntimeError("detector failed in its worker")

    monkeypatch.setattr(Reach, "detect", boom)
    config = DetectionConfig(detectors=("sine_reach", "reach", "weight_perturbation"), workers=2)
    with pytest.raises(RuntimeError, match="in its worker"):
        run_detectors(classifier, x, y, config)


class PlantedConv(nn.Module):
    """Planted's backdoor behind two small convolutions, for the detectors that act on a hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        for conv in (self.conv1, self.conv2):
            conv.weight.data = torch.randn(conv.weight.shape, generator=g) * 0.3
            conv.bias.data.zero_()
        self.head = Planted()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(x) + 0.1 * hidden.mean((2, 3)).sum(1, keepdim=True)


# The fewest steps each registered detector needs on the 8x8 toy; a detector added to the registry runs at its
# defaults unless it is listed here.
SMALL = {"neural_cleanse": {"steps": 3}, "reach": {"steps": 3}, "patch": {"steps": 5, "pixels": 4},
         "max_margin": {"steps": 5, "starts": 2}, "feature_reach": {"max_rungs": 3},
         "weight_perturbation": {"radii": (0.05,)}, "warp_reach": {"grids": (2,)}}


@pytest.mark.parametrize("name", list_detectors())
def test_every_registered_detector_keeps_its_contract(name: str) -> None:
    """For each detector in the registry: it declares what the verdict and the report say of it, gives one
    index per class, the same result twice under a seed, a result that survives a JSON round trip, and
    leaves the model as it found it (weights, gradient flags, mode)."""
    cls = DETECTORS[name]
    assert cls.meaning and cls.label and cls.signal and cls.vote_scale > 0
    classifier = Classifier(PlantedConv(), ModelSpec("input", "logits", 3, SIDE, SIDE, K))
    x, y = _samples(_classifier())
    before = {key: value.clone() for key, value in classifier.network.state_dict().items()}
    flags, mode = [p.requires_grad for p in classifier.parameters()], classifier.training
    first = get_detector(name, **SMALL.get(name, {})).detect(classifier, x, y, seed=4)
    second = get_detector(name, **SMALL.get(name, {})).detect(classifier, x, y, seed=4)
    assert first.detector == name and len(first.index) == K and len(first.per_class) == K
    assert first.to_json() == second.to_json()
    assert json.loads(json.dumps(first.to_json())) == first.to_json()
    if cls.figure is not None and name != "neural_cleanse":  # NC's figure is its own table's
        assert all(cls.figure in row for row in first.per_class), (cls.figure, first.per_class[0])
    after = classifier.network.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert [p.requires_grad for p in classifier.parameters()] == flags and classifier.training == mode


def test_the_default_voters_are_the_detectors_that_declare_a_vote() -> None:
    config = VerdictConfig()
    assert config.voters == default_voters() == tuple(n for n, cls in DETECTORS.items() if cls.votes)
    assert {"reach", "stimulation"} <= set(config.voters) and "neural_cleanse" not in config.voters
    assert all(config.scale(name) == DETECTORS[name].vote_scale for name in config.voters)
