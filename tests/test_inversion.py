"""Stabilized model inversion on a tiny model: shapes, determinism, the stability filter, and that
the ablation flags change what they claim to change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from auditor.evaluate import OnnxClassifier
from auditor.inversion import InversionConfig, SynthSet, invert
from auditor.inversion.smi import LatentInversion, PixelInversion, PixelConfig, _filter, make_inverter
from auditor.inversion.stability import StabilityConfig, stability_scores
from auditor.model import Classifier
from converters import load_onnx
from model_matrix import build, export

FAST = InversionConfig(per_class=3, steps=3, batch_per_class=2, oversample=2.0,
                       eval_stability=StabilityConfig(input_draws=1, param_draws=1))


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(build("plain_cnn_bn"), "legacy17", tmp_path_factory.mktemp("inv") / "m.onnx", None)


@pytest.fixture(scope="module")
def classifier(onnx_path: Path) -> Classifier:
    return Classifier.from_onnx(onnx_path)


def test_classifier_from_onnx_gives_onnxruntime_s_logits(classifier: Classifier, onnx_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    reference = OnnxClassifier(onnx_path, load_onnx(onnx_path).spec).logits(images)
    with torch.no_grad():
        logits = classifier(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).numpy()
    np.testing.assert_allclose(logits, reference, atol=1e-4)


def test_shapes_labels_and_summary(classifier: Classifier) -> None:
    synth = invert(classifier, FAST)
    assert synth.images01.shape == (30, 3, 16, 16)
    assert synth.labels.tolist() == sorted(list(range(10)) * 3)
    assert 0.0 <= float(synth.images01.min()) and float(synth.images01.max()) <= 1.0
    # uint8 levels, so that a saved set purifies exactly like the in-memory one
    assert torch.equal((synth.images01 * 255).round() / 255, synth.images01)
    summary = synth.summary
    assert summary["method"] == "smi"
    assert set(summary["kept"]["per_class"]) == {str(c) for c in range(10)}
    for key in ("confidence", "input_noise", "param_noise", "worst_input", "worst_param"):
        assert key in summary["kept"]["overall"]
    assert all(v["kept"] == 3 and v["candidates"] == 6 for v in summary["counts"].values())


def test_deterministic_under_seed(classifier: Classifier) -> None:
    a, b = invert(classifier, FAST), invert(classifier, FAST)
    assert torch.equal(a.images01, b.images01)
    c = invert(classifier, InversionConfig(**{**FAST.__dict__, "seed": 1}))
    assert not torch.equal(a.images01, c.images01)


def test_save_and_load_round_trip(classifier: Classifier, tmp_path: Path) -> None:
    synth = invert(classifier, FAST)
    loaded = SynthSet.load(synth.save(tmp_path / "synth.npz", layout="NHWC"))
    assert torch.equal(loaded.images01, synth.images01)
    assert torch.equal(loaded.labels, synth.labels)
    assert loaded.summary["method"] == "smi"


def test_stability_filter_keeps_the_stable_and_correct() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    ones = torch.ones(6)
    scores = {
        "confidence": torch.tensor([0.9, 0.8, 0.99, 0.9, 0.9, 0.9]),
        "margin": torch.tensor([1.0, 1.0, -1.0, 1.0, 1.0, 1.0]),  # sample 2 is not classified as intended
        "input_noise": torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 0.5]),
        "param_noise": ones, "worst_input": ones, "worst_param": ones,
    }
    kept, counts = _filter(scores, labels, 2, per_class=1, min_stability=0.8)
    assert kept.tolist() == [0, 3]
    assert counts["0"] == {"candidates": 3, "passed": 1, "duplicates": 0, "kept": 1}
    assert counts["1"]["passed"] == 3  # sample 5: stability index (0.5 + 1 + 1 + 1) / 4 = 0.875 >= 0.8
    kept_strict, counts_strict = _filter(scores, labels, 2, per_class=2, min_stability=0.95)
    assert counts_strict["1"]["passed"] == 2 and 5 not in kept_strict.tolist()


def test_no_stability_flag_drops_the_bilevel_terms(classifier: Classifier, monkeypatch: pytest.MonkeyPatch) -> None:
    gaussian = InversionConfig(**{**FAST.__dict__, "method": "gaussian"})
    plain = make_inverter(classifier, InversionConfig(**{**gaussian.__dict__, "stability": False}))
    assert isinstance(plain, LatentInversion) and plain.name == "no-stability"
    synth = plain.run(classifier)
    assert synth.summary["method"] == "no-stability"
    assert all(h["robust_ce"] == 0.0 for h in synth.summary["fit"]["history"])
    stable = invert(classifier, gaussian)
    assert any(h["robust_ce"] > 0.0 for h in stable.summary["fit"]["history"])
    # the particles: without stability the inner worst cases are never computed
    assert invert(classifier, FAST).summary["fit"]["worst_case_loss"]["first"] > 0
    from auditor.inversion import smi

    def no_inner_problem(*args, **kwargs):
        raise AssertionError("the bi-level terms ran with stability off")

    monkeypatch.setattr(smi, "_clean_and_worst_losses", no_inner_problem)
    particles = make_inverter(classifier, InversionConfig(**{**FAST.__dict__, "stability": False}))
    assert isinstance(particles, smi.ParticleInversion) and particles.run(classifier).summary["method"] == "no-stability"


def test_pixels_flag_uses_no_generator(classifier: Classifier, monkeypatch: pytest.MonkeyPatch) -> None:
    import auditor.generators as generators

    def refuse(*_args, **_kwargs):
        raise AssertionError("the pixel ablation must not load a generator")

    monkeypatch.setattr(generators, "load_generator", refuse)
    inverter = make_inverter(classifier, FAST, pixels=True)
    assert isinstance(inverter, PixelInversion)
    inverter.pixel = PixelConfig(steps_per_sample=2, batch=30)
    synth = inverter.run(classifier)
    assert synth.summary["method"] == "pixels" and synth.images01.shape == (30, 3, 16, 16)


def test_stability_scores_on_a_constant_model_are_perfect(classifier: Classifier) -> None:
    x = torch.rand(8, 3, 16, 16)
    y = classifier.predict(x)
    scores = stability_scores(classifier, x, y, StabilityConfig(input_noise=0.0, param_noise=0.0,
                                                               worst_input_eps=0.0, worst_param_rho=0.0))
    for key in ("input_noise", "param_noise", "worst_input", "worst_param"):
        assert torch.all(scores[key] == 1.0), key


class _TwoHalves(nn.Module):
    """A toy generator: the left half of the image is sigmoid(2 z0), the right half sigmoid(2 z1)."""

    z_dim = 8
    output_range = (0.0, 1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        left = torch.sigmoid(2 * z[:, 0]).view(-1, 1, 1, 1).expand(-1, 1, 8, 4)
        right = torch.sigmoid(2 * z[:, 1]).view(-1, 1, 1, 1).expand(-1, 1, 8, 4)
        return torch.cat([left, right], dim=3)


class _SameOrDifferent(nn.Module):
    """Class 0: the halves differ (bright-dark or dark-bright); class 1: they match (both bright or
    both dark). Each class has two modes, as real classes have several."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(40.0))  # the stability measures perturb weights: it needs one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        product = (x[:, 0, :, :4].mean((1, 2)) - 0.5) * (x[:, 0, :, 4:].mean((1, 2)) - 0.5)
        return torch.stack([-self.scale * product, self.scale * product], dim=1)


def test_inversion_yields_every_mode_of_a_class() -> None:
    from converters.load import ModelSpec

    classifier = Classifier(_SameOrDifferent(), ModelSpec("input", "logits", 1, 8, 8, 2))
    config = InversionConfig(per_class=40, particle_steps=3, eval_stability=StabilityConfig(input_draws=1, param_draws=1))
    synth = invert(classifier, config, generator=_TwoHalves())
    left, right = synth.images01[:, 0, :, :4].mean((1, 2)), synth.images01[:, 0, :, 4:].mean((1, 2))
    for c, modes in ((0, (left > right, left < right)), (1, ((left > 0.5) & (right > 0.5), (left < 0.5) & (right < 0.5)))):
        of_class = synth.labels == c
        shares = [float(mode[of_class].float().mean()) for mode in modes]
        assert min(shares) >= 0.25, (c, shares)  # both modes, not one image repeated


def test_pixel_diversity_tells_repeats_from_variety() -> None:
    from auditor.inversion.diversity import pixel_diversity

    generator = torch.Generator().manual_seed(0)
    varied = torch.rand(40, 3, 16, 16, generator=generator)
    repeated = varied[:1].repeat(40, 1, 1, 1) + 0.01 * torch.rand(40, 3, 16, 16, generator=generator)
    labels = torch.zeros(40, dtype=torch.long)
    reference = pixel_diversity(varied, labels, 1)
    assert reference["near_duplicates"] == 0.0 and reference["spread"] == pytest.approx(1.41, abs=0.05)
    collapsed = pixel_diversity(repeated, labels, 1, reference=reference)
    assert collapsed["near_duplicates"] == 1.0 and collapsed["worst_relative_spread"] < 0.2
