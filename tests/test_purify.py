"""Purifiers on tiny converted models: they edit only trainable tensors, stay writable to ONNX,
remove a planted backdoor (I-BAU), and the guard backs off or restores when purification hurts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import converters
from auditor.errors import AuditorError
from auditor.model import AuditTarget
from auditor.detect.leads import find_leads
from auditor.purify import (ANP, CLP, DEFAULT_STEPS, IBAU, PURIFIERS, STEPS, AnchoredCLPConfig, ChannelZeroing, Finetune,
                            GuardConfig, PurifyResult, Recipe, channel_lipschitz, get_purifier, guarded_purify,
                            interpolate, list_purifiers, restore, snapshot)
from auditor.purify.neurons import masked_conv_layers, masked_forward, prune_lowest
from auditor.universal import grid_patch, stamp, untargeted_patch

SIZE = 16
TARGET = 0


# -- tiny models ----------------------------------------------------------------------------------------

class TinyNet(nn.Module):
    def __init__(self, classes: int = 4, normalize: bool = False) -> None:
        super().__init__()
        if normalize:  # baked preprocessing: exported as frozen constants
            self.register_buffer("mean", torch.tensor([0.4, 0.45, 0.5]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))
        self.normalize = normalize
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
        )
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = (x - self.mean) / self.std
        return self.head(self.features(x).flatten(1))


def export_and_convert(model: nn.Module, path: Path, keep_bn: bool = False) -> AuditTarget:
    model.eval()
    kwargs = {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False} if keep_bn else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(2, 3, SIZE, SIZE),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **kwargs)
    return AuditTarget.from_converted(converters.convert(converters.load_onnx(path)))


def shapes(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """4 classes of coloured shapes (square, horizontal bar, vertical bar, plus) on noisy backgrounds."""
    cls = torch.randint(0, 4, (n,), generator=g)
    centre = torch.randint(4, 12, (n, 2), generator=g)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    dx = (xx[None] - centre[:, 0, None, None]).abs()
    dy = (yy[None] - centre[:, 1, None, None]).abs()
    masks = torch.stack([(dx <= 2) & (dy <= 2), (dy <= 1) & (dx <= 5), (dx <= 1) & (dy <= 5),
                         ((dx == 0) & (dy <= 4)) | ((dy == 0) & (dx <= 4))], 1)
    mask = masks[torch.arange(n), cls].unsqueeze(1).float()
    background = torch.rand(n, 3, 1, 1, generator=g) * 0.3 + torch.rand(n, 3, SIZE, SIZE, generator=g) * 0.15
    colour = torch.rand(n, 3, 1, 1, generator=g) * 0.4 + 0.6
    return (background * (1 - mask) + colour * mask).clamp(0, 1), cls


def add_trigger(x: torch.Tensor) -> torch.Tensor:
    """BadNets-style 4x4 white patch in the bottom-right corner."""
    x = x.clone()
    x[:, :, -4:, -4:] = 1.0
    return x


def accuracy_and_asr(classifier, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    accuracy = float((classifier.predict(x) == y).float().mean())
    keep = y != TARGET
    asr = float((classifier.predict(add_trigger(x[keep])) == TARGET).float().mean())
    return accuracy, asr


def train_poisoned(seed: int, rate: float, trigger, epochs: int, path: Path) -> Path:
    """A tiny CNN trained on shapes where a ``rate`` share of the samples carry ``trigger`` and are relabelled
    to TARGET, exported to ONNX at ``path``."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = shapes(1200, g)
    poison = torch.rand(len(x), generator=g) < rate
    x[poison], y[poison] = trigger(x[poison]), TARGET
    net = TinyNet()
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            loss = F.cross_entropy(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    export_and_convert(net, path)
    return path


@pytest.fixture(scope="module")
def backdoored(tmp_path_factory) -> Path:
    """A tiny CNN trained on shapes with 10% BadNets poisoning (ASR ~100%), exported to ONNX once."""
    return train_poisoned(0, 0.1, add_trigger, 5, tmp_path_factory.mktemp("backdoor") / "badnets.onnx")


def load(path: Path) -> AuditTarget:
    return AuditTarget.from_converted(converters.convert(converters.load_onnx(path)))


@pytest.fixture()
def tiny(tmp_path) -> AuditTarget:
    torch.manual_seed(1)
    return export_and_convert(TinyNet(normalize=True), tmp_path / "tiny.onnx")


def samples(n: int = 64, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    return shapes(n, torch.Generator().manual_seed(seed))


def frozen_state(target: AuditTarget) -> dict[str, torch.Tensor]:
    net = target.classifier.network
    state = {n: p.detach().clone() for n, p in net.named_parameters() if not p.requires_grad}
    state.update({n: b.detach().clone() for n, b in net.named_buffers()})
    return state


# -- registries and interface ----------------------------------------------------------------------------

def test_registry() -> None:
    assert {"recipe", "finetune", "clp", "anp"} <= set(list_purifiers())
    default = get_purifier()
    assert isinstance(default, Recipe) and tuple(s.name for s in default.steps) == DEFAULT_STEPS
    rounds_alone = get_purifier("ibau", rounds=2)  # a step name is a recipe of that step: the reference I-BAU
    assert [type(s) for s in rounds_alone.steps] == [IBAU] and rounds_alone.steps[0].config.rounds == 2
    assert tuple(s.name for s in get_purifier("patch,ibau").steps) == ("patch", "ibau")
    assert get_purifier("finetune", lr=0.5).config.lr == 0.5
    with pytest.raises(AuditorError, match="unknown purifier"):
        get_purifier("nope")
    with pytest.raises(AuditorError, match="no step of the recipe"):
        get_purifier("ibau", not_an_option=1)
    for cls in PURIFIERS.values():
        assert type(cls().milder()) is cls


def test_recipe_options_reach_the_step_that_has_them() -> None:
    recipe = Recipe(**{"steps": "patch,signal,ibau", "rounds": 5, "patch.epochs": 1, "lr": 1e-3})
    patch, signal, ibau = recipe.steps
    assert ibau.config.rounds == 5 and patch.config.epochs == 1 and signal.config.epochs == 2
    assert recipe.config.lr == 1e-3 and recipe.describe()["settings"]["ibau"]["rounds"] == 5
    with pytest.raises(AuditorError, match="several steps"):  # patch and signal both have epochs
        Recipe(steps="patch,signal", epochs=1)
    with pytest.raises(AuditorError, match="not in the recipe"):
        Recipe(steps="ibau", **{"patch.epochs": 1})
    with pytest.raises(AuditorError, match="unknown purification step"):
        Recipe(steps="ibau,sideways")
    with pytest.raises(AuditorError, match="repeated: ibau"):
        Recipe(steps="ibau,clp,ibau")
    with pytest.raises(AuditorError, match="at least one step"):
        Recipe(steps="")


def test_the_milder_recipe_lowers_the_rate_keeps_clp_and_prunes_no_neurons() -> None:
    recipe = get_purifier()
    milder = recipe.milder()
    assert milder.config.lr == pytest.approx(recipe.config.lr / 3)
    assert "anp" in recipe.config.steps and "anp" not in milder.config.steps
    assert [s.name for s in milder.steps] == list(milder.config.steps)
    by_name = {s.name: s for s in milder.steps}
    assert by_name["clp"].config == AnchoredCLPConfig()  # the back-off weakens unlearning, keeps CLP's threshold
    assert by_name["ibau"].config.rounds == 2  # half of 3, rounded up


def test_the_anp_step_never_prunes_below_the_guards_threshold() -> None:
    strict = get_purifier().for_guard(0.85)
    assert {s.name: s for s in strict.steps}["anp"].config.min_anchor_agreement == 0.85
    assert {s.name: s for s in get_purifier().for_guard(0.7).steps}["anp"].config.min_anchor_agreement == 0.75
    chosen = get_purifier(**{"anp.min_anchor_agreement": 0.6}).for_guard(0.85)  # set by the user: kept
    assert {s.name: s for s in chosen.steps}["anp"].config.min_anchor_agreement == 0.6


# Every registered purifier at a few steps on the toy; PURIFIER_CASES must name each of them (checked below).
# every step of the default recipe runs, each at a few iterations
_RECIPE_FEW = {"rounds": 1, "batch_size": 16, "search_steps": 20, "iterations": 20}
PURIFIER_CASES = [
    ("recipe", _RECIPE_FEW),
    ("recipe", {**_RECIPE_FEW, "shared_adv_weight": 1.0, "shared_adv_steps": 2}),
    ("recipe", {**_RECIPE_FEW, "inner_mode": "untargeted"}),
    ("recipe", {**_RECIPE_FEW, "inner_mode": "both"}),
    ("finetune", {"epochs": 1, "batch_size": 32, "lr": 0.05}),
    ("clp", {"u": 1.0}),
    ("anp", {"iterations": 20, "batch_size": 16, "max_prune_fraction": 0.2}),
]


def test_the_purifier_cases_cover_the_registry() -> None:
    assert {name for name, _ in PURIFIER_CASES} == set(PURIFIERS)
    assert all(cls.name == name for name, cls in PURIFIERS.items())


def _without_timings(value):
    """A record without its wall-clock fields (``seconds``, ``wall_time_s``), which no seed fixes."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in ("seconds", "wall_time_s")}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.mark.parametrize("name", sorted(PURIFIERS))
def test_every_registered_purifier_is_deterministic_under_a_seed(name: str, tmp_path: Path) -> None:
    """Two runs from the same weights, samples and seed give the same weights and the same record."""
    config = next(config for case, config in PURIFIER_CASES if case == name)
    x, y = samples(32)
    results, weights = [], []
    for run in range(2):
        torch.manual_seed(1)
        target = export_and_convert(TinyNet(normalize=True), tmp_path / f"tiny{run}.onnx")
        result = get_purifier(name, **config).purify(target.classifier, x, y, data_source="clean",
                                                     generator=torch.Generator().manual_seed(3))
        results.append(_without_timings(json.loads(json.dumps(result.to_json()))))
        weights.append({n: p.detach().clone() for n, p in target.classifier.network.named_parameters()})
    assert results[0] == results[1]
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])


@pytest.mark.parametrize("name,config", PURIFIER_CASES)
def test_purifier_changes_trainable_only_and_stays_writable(name, config, tiny, tmp_path) -> None:
    x, _ = samples(32)
    classifier = tiny.classifier
    before = {n: p.detach().clone() for n, p in classifier.network.named_parameters() if p.requires_grad}
    frozen = frozen_state(tiny)
    assert frozen, "the tiny model should have baked normalization constants"
    steps = []
    purifier = get_purifier(name, **config)
    result = purifier.purify(classifier, x, None, progress=lambda s, t, m: steps.append((s, t)), data_source="clean")
    after = dict(classifier.network.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before), "no trainable parameter changed"
    for n, value in frozen_state(tiny).items():
        assert torch.equal(value, frozen[n]), f"frozen tensor {n} changed"
    assert not classifier.training
    assert steps and steps[-1][0] == steps[-1][1]
    record = json.loads(json.dumps(result.to_json()))
    assert record["method"] == name and record["config"] == json.loads(json.dumps(purifier.describe()))
    assert record["rounds"]
    # the purified graph writes back into the original ONNX and matches onnxruntime
    exported = converters.save_onnx(tiny.converted, tmp_path / "purified.onnx", tolerance=1e-4)
    assert exported.method == "write-back"
    session = ort.InferenceSession(str(tmp_path / "purified.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = classifier(x[:8]).numpy()
    got = session.run(None, {"input": x[:8].numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


# Every registered step alone, at a few iterations; STEP_CASES must name each of them (checked below).
STEP_CASES = {
    "patch": {"search_steps": 20, "min_flip": 0.0, "max_target_share": 1.0},  # gates open: the step acts
    "signal": {"index": 0.0},
    "ibau": {"rounds": 1},
    "clp": {"u": 1.0},
    "anp": {"iterations": 20, "fraction": 0.2, "min_anchor_agreement": 0.0},
    "channels": {"index": 0.0, "min_share": 0.01, "levels": (0.02, 0.05)},
    "finetune": {"epochs": 1, "lr": 0.05},
}


def test_the_step_cases_cover_the_step_registry() -> None:
    assert set(STEP_CASES) == set(STEPS)
    assert all(cls.name == name and cls.meaning for name, cls in STEPS.items())
    assert set(DEFAULT_STEPS) <= set(STEPS)


def _one_step(name: str, tmp_path: Path, tag: str) -> tuple[AuditTarget, PurifyResult]:
    torch.manual_seed(1)
    target = export_and_convert(TinyNet(normalize=True), tmp_path / f"{name}-{tag}.onnx")
    x, y = samples(48)
    recipe = Recipe(steps=(name,), batch_size=16, **{f"{name}.{k}": v for k, v in STEP_CASES[name].items()})
    result = recipe.purify(target.classifier, x, y, anchors=samples(32, seed=9)[0],
                           generator=torch.Generator().manual_seed(3))
    return target, result


@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_step_is_deterministic_changes_only_what_it_says_and_round_trips(name: str, tmp_path: Path) -> None:
    """For every registered step alone on the toy: the same seed gives the same weights and record; frozen
    tensors never change; a step that did not act left every weight as it was, one that zeroed channels left
    them zero; its record survives JSON; and the result writes back to ONNX."""
    first, result = _one_step(name, tmp_path, "a")
    second, again = _one_step(name, tmp_path, "b")
    assert _without_timings(result.to_json()) == _without_timings(again.to_json())
    weights = dict(first.classifier.network.named_parameters())
    assert all(torch.equal(p, weights[n]) for n, p in second.classifier.network.named_parameters())

    (record,) = result.steps
    assert record.name == name and result.method == "recipe"
    assert record.found is None or isinstance(record.found, dict)
    round_trip = json.loads(json.dumps(result.to_json()))["steps"][0]
    assert round_trip["name"] == name and round_trip["acted"] == record.acted
    torch.manual_seed(1)
    pristine = export_and_convert(TinyNet(normalize=True), tmp_path / f"{name}-pristine.onnx")
    before = dict(pristine.classifier.network.named_parameters())
    changed = [n for n, p in weights.items() if not torch.equal(p, before[n])]
    assert bool(changed) == record.acted, (record.acted, changed)
    modules = dict(first.classifier.network.named_modules())
    for layer, channels in record.zeroed().items():
        assert torch.all(modules[layer].weight[channels] == 0)
    assert result.pruned_channels == record.zeroed()
    converters.save_onnx(first.converted, tmp_path / f"{name}.purified.onnx", tolerance=1e-4)


def test_a_recipe_acts_on_the_leads_it_is_given_and_finds_none_itself(backdoored, monkeypatch) -> None:
    """Leads found once before the guard serve every attempt: with them, neither the first attempt nor a
    milder one searches; without them, the recipe finds them on the samples it is given."""
    import auditor.detect.leads as leads_module

    calls = []
    real = leads_module.untargeted_patch
    monkeypatch.setattr(leads_module, "untargeted_patch", lambda *a, **k: calls.append(1) or real(*a, **k))
    target = load(backdoored)
    x, y = shapes(120, torch.Generator().manual_seed(12))
    recipe = Recipe(steps="patch,ibau", rounds=1, search_steps=20, batch_size=32)
    leads = find_leads(target.classifier, x, y, recipe.lead_requests(), seed=0)
    assert len(calls) == 1 and leads.patch is not None and leads.signal is None and leads.channels is None
    bound = recipe.with_leads(leads)
    original = snapshot(target.classifier)
    first = bound.purify(target.classifier, x, y, generator=torch.Generator().manual_seed(0))
    restore(target.classifier, original)
    again = bound.milder().purify(target.classifier, x, y, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 1 and again.steps[0].found == first.steps[0].found
    restore(target.classifier, original)
    alone = recipe.purify(target.classifier, x, y, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2 and alone.steps[0].found == first.steps[0].found  # the same search, the same patch


# -- CLP ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("keep_bn", [False, True])
def test_clp_prunes_the_planted_channel(keep_bn, tmp_path) -> None:
    torch.manual_seed(2)
    net = TinyNet()
    with torch.no_grad():
        net.features[4].weight[5] *= 12.0  # channel 5 of the second conv: a large Lipschitz constant
    target = export_and_convert(net, tmp_path / "planted.onnx", keep_bn=keep_bn)
    network = target.classifier.network
    convs = [(n, m) for n, m in network.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2
    assert any(isinstance(m, nn.BatchNorm2d) for m in network.modules()) == keep_bn
    name = convs[1][0]
    result = CLP().purify(target.classifier)
    assert result.pruned_channels == {name: [5]}
    conv = convs[1][1]
    assert torch.all(conv.weight[5] == 0) and conv.bias[5] == 0
    assert conv.weight[4].abs().sum() > 0
    if keep_bn:  # BN separate: its UCLC is scaled by gamma/sigma and its output zeroed too
        bn = next(m for m in network.modules() if isinstance(m, nn.BatchNorm2d) and m.num_features == 16)
        assert bn.weight[5] == 0 and bn.bias[5] == 0
        with torch.no_grad():
            features = network.get_submodule(name)(torch.rand(1, 8, 8, 8))
            assert torch.all(bn(features)[0, 5] == 0)
    converters.save_onnx(target.converted, tmp_path / "pruned.onnx", tolerance=1e-4)


def test_clp_in_a_recipe_never_prunes_below_the_guard_s_threshold_on_the_anchors(tmp_path) -> None:
    """Interpolation keeps pruned channels zero, so a pruning that moves the anchors' predictions below the
    guard's threshold would cap every attempt: the step undoes it, raises u, and at last prunes nothing."""
    torch.manual_seed(2)
    net = TinyNet()
    with torch.no_grad():
        net.features[4].weight[5] *= 12.0  # an outlier channel that carries most of the second layer
    x, y = samples(48)
    anchors = samples(64, seed=9)[0]
    records = {}
    for label, threshold in (("unguarded", None), ("lenient", 0.0), ("strict", 0.999)):
        target = export_and_convert(net, tmp_path / f"anchored-{label}.onnx")
        before = snapshot(target.classifier)
        recipe = Recipe(steps=("clp",))
        recipe = recipe if threshold is None else recipe.for_guard(threshold)
        (records[label],) = recipe.purify(target.classifier, x, y, anchors=anchors,
                                          generator=torch.Generator().manual_seed(0)).steps
        unchanged = all(torch.equal(p, before[f"p:{n}"]) for n, p in target.classifier.network.named_parameters())
        assert unchanged == (not records[label].acted)
    assert records["unguarded"].acted and "u_tried" not in records["unguarded"].changed
    lenient = records["lenient"].changed["u_tried"]
    assert records["lenient"].zeroed() == records["unguarded"].zeroed() and len(lenient) == 1
    assert lenient[0]["kept"] and lenient[0]["anchor_agreement"] < 0.999
    strict = records["strict"].changed["u_tried"]
    assert not records["strict"].acted and strict[0]["u"] == 3.0 and strict[0]["pruned"] and not strict[0]["kept"]
    assert not any(t["kept"] for t in strict if t["pruned"]) and strict[-1]["u"] > 3.0


@pytest.mark.parametrize("steps", ["ibau,clp", "clp,ibau"])
def test_a_recipe_prunes_with_clp_where_it_places_it(steps, tmp_path) -> None:
    """CLP prunes the planted channel before or after the I-BAU rounds, as the recipe orders them, and the
    record says which step zeroed it; a recipe without CLP leaves it."""
    torch.manual_seed(2)
    net = TinyNet()
    with torch.no_grad():
        net.features[4].weight[5] *= 12.0
    target = export_and_convert(net, tmp_path / "planted.onnx")
    x, _ = samples(32)
    result = get_purifier(steps, rounds=1, batch_size=16).purify(target.classifier, x)
    (layer, channels), = result.pruned_channels.items()
    assert channels == [5] and [s.name for s in result.steps] == steps.split(",")
    assert {s.name: s for s in result.steps}["clp"].zeroed() == {layer: [5]}
    assert any(note.startswith("clp (u=3) pruned 1 channel") for note in result.notes)
    conv = dict(target.classifier.network.named_modules())[layer]
    assert (conv.weight[5] == 0).all()  # a zeroed channel behind a ReLU gets no gradient: it stays pruned
    assert get_purifier("ibau", rounds=1, batch_size=16).purify(target.classifier, x).pruned_channels == {}
    with pytest.raises(AuditorError, match="u must be"):
        get_purifier(**{"clp.u": 0.0})


def test_channel_lipschitz_is_the_largest_singular_value() -> None:
    conv = nn.Conv2d(2, 3, 3)
    expected = torch.stack([torch.linalg.svdvals(conv.weight[k].reshape(2, 9))[0] for k in range(3)])
    torch.testing.assert_close(channel_lipschitz(conv), expected.detach())


# -- ANP ------------------------------------------------------------------------------------------------

def test_masked_forward_with_unit_masks_is_the_model(tiny) -> None:
    x, _ = samples(8)
    neurons = masked_conv_layers(tiny.classifier, min_channels=4)
    assert len(neurons.names) == 2 and neurons.sizes == [8, 16]
    ones = [torch.ones(n) for n in neurons.sizes]
    with torch.no_grad():
        torch.testing.assert_close(masked_forward(tiny.classifier, neurons, x, ones), tiny.classifier(x))
        masks = [torch.ones(8), torch.zeros(16)]  # every neuron of the last conv off: the logits lose x
        out = masked_forward(tiny.classifier, neurons, x, masks)
    assert torch.allclose(out, out[:1].expand_as(out))


def test_prune_lowest_ranks_ties_by_score_and_respects_the_budget(tiny) -> None:
    neurons = masked_conv_layers(tiny.classifier, min_channels=4)
    masks = [torch.ones(8), torch.ones(16)]
    masks[0][[1, 2]] = 0.0
    masks[1][[3, 4, 5]] = 0.0
    scores = [m.clone() for m in masks]
    scores[1][5], scores[0][2] = -2.0, -1.0  # fell first, then second: these two go within a budget of 2
    pruned = prune_lowest(neurons, masks, threshold=0.2, max_fraction=2 / 24, scores=scores)
    assert pruned == {neurons.layers[0]: [2], neurons.layers[1]: [5]}
    assert all(f"network.{layer}" == name for layer, name in zip(neurons.layers, neurons.names))
    assert torch.all(neurons.weights[1][5] == 0) and neurons.biases[1][5] == 0
    assert neurons.weights[1][3].abs().sum() > 0 and neurons.weights[0][1].abs().sum() > 0


def test_anp_prunes_only_under_perturbation(backdoored) -> None:
    """Without the adversarial neuron perturbation (eps 0) a fitted model keeps every mask; with it,
    ANP prunes whole neurons, within its budget, and records per-layer mask figures."""
    x, y = shapes(256, torch.Generator().manual_seed(12))
    target = load(backdoored)
    calm = ANP(eps=0.0, iterations=50, batch_size=64).purify(target.classifier, x, y, data_source="clean")
    assert calm.pruned_channels == {} and all(r["below_threshold"] == 0 for r in calm.rounds)
    result = ANP(iterations=200, batch_size=64, max_prune_fraction=0.1).purify(target.classifier, x, y,
                                                                               generator=torch.Generator().manual_seed(0))
    count = sum(map(len, result.pruned_channels.values()))
    assert 1 <= count <= int(0.1 * 24)
    modules = dict(target.classifier.network.named_modules())
    for layer, channels in result.pruned_channels.items():
        assert torch.all(modules[layer].weight[channels] == 0)
    assert ANP().milder().config.max_prune_fraction == ANP().config.max_prune_fraction / 2


def test_anp_takes_convolutions_without_a_bias(tmp_path) -> None:
    """Pre-activation networks have bias-free convolutions that no BatchNorm follows: their bias noise is
    not in the graph, and ANP's perturbation step must not ask for its gradient (it raised on a
    held-apart PreAct-ResNet)."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False),
                        nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    target = export_and_convert(net, tmp_path / "bias_free.onnx")
    x, y = shapes(32, torch.Generator().manual_seed(1))
    result = ANP(iterations=3, batch_size=16).purify(target.classifier, x, y, generator=torch.Generator().manual_seed(0))
    assert len(result.rounds) == 2  # both convolutions were masked, the bias-free one included


# -- the recipe's steps ----------------------------------------------------------------------------------

def _step(result: PurifyResult, name: str):
    return next(record for record in result.steps if record.name == name)


@pytest.mark.parametrize("min_agreement", [0.0, 1.0])
def test_the_anp_step_keeps_only_what_the_anchors_accept(backdoored, min_agreement) -> None:
    """The ANP step tries its fraction, then half of it, and keeps the first whose anchor predictions agree
    enough with the original's; when none does, no neuron is left pruned."""
    target = load(backdoored)
    x, y = shapes(160, torch.Generator().manual_seed(12))
    anchors, _ = shapes(64, torch.Generator().manual_seed(13))
    config = dict(IBAU_TEST_CONFIG, rounds=1, fraction=0.2, iterations=60, min_anchor_agreement=min_agreement)
    result = get_purifier("ibau,anp", **config).purify(target.classifier, x, y, anchors=anchors,
                                                      generator=torch.Generator().manual_seed(0))
    record = _step(result, "anp")
    tried = record.changed["shares_tried"]
    convs = [m for m in target.classifier.network.modules() if isinstance(m, nn.Conv2d)]
    dead = {(i, k) for i, m in enumerate(convs) for k in range(m.out_channels) if torch.all(m.weight[k] == 0)}
    if tried[0].get("skipped"):  # the unpruned model already disagrees too much: no masks are learned
        assert len(tried) == 1 and tried[0]["anchor_agreement"] < min_agreement
        assert record.zeroed() == {} and not dead and "anp skipped" in result.notes[-1]
        return
    assert tried[0]["fraction"] == 0.2 and len(tried) <= 2
    for attempt in tried:
        assert attempt["kept"] == (attempt["anchor_agreement"] >= min_agreement)
        assert attempt["unpruned_anchor_agreement"] >= min_agreement
    if any(attempt["kept"] for attempt in tried):
        assert record.zeroed() and len(dead) == sum(map(len, record.zeroed().values()))
    else:
        assert record.zeroed() == {} and not dead and "anp pruned nothing" in result.notes[-1]
    if min_agreement == 0.0:
        assert len(tried) == 1 and tried[0]["kept"]


def test_the_channels_step_zeroes_the_blamed_channels() -> None:
    """On a model whose head reads the target from one channel of its last convolution, raising that channel
    sends the other classes into the target: the step names the target, zeroes that channel after the
    rounds and records what it did. Above the threshold, or where no channel reaches the stop share within
    the levels, it only reports."""
    from test_detect import TARGET as SHORTCUT_TARGET, _feature_samples

    config = dict(IBAU_TEST_CONFIG, rounds=1, levels=(0.02, 0.05, 0.1, 0.25))  # the toy's spreads, not the zoo's
    classifier, x, y = _feature_samples(shortcut=True)
    result = get_purifier("ibau,channels", **config).purify(classifier, x, y, generator=torch.Generator().manual_seed(0))
    record = json.loads(json.dumps(result.to_json()))["steps"][1]
    print("channels step:", record)
    found = record["found"]
    assert found["class"] == SHORTCUT_TARGET and found["reached_stop_share"] and record["acted"]
    assert found["channels"] == [3] and found["layer"] == "conv2" and min(found["shares"]) >= 0.25
    assert record["changed"] == {"zeroed": {"conv2": [3]}}
    assert torch.all(classifier.network.conv2.weight[3] == 0) and float(classifier.network.conv2.bias[3].detach()) == 0
    assert any("stimulation step" in note for note in result.notes)
    assert result.findings and "trigger channels" in result.findings[0]  # evidence for the guard's budget

    for overrides in ({"index": 1e9}, {"levels": (0.001,)}):
        untouched, x, y = _feature_samples(shortcut=True)
        quiet = get_purifier("ibau,channels", **dict(config, **overrides)).purify(
            untouched, x, y, generator=torch.Generator().manual_seed(0))
        assert not _step(quiet, "channels").acted, overrides
        assert quiet.findings == []
        assert not any(torch.all(untouched.network.conv2.weight[c] == 0) for c in range(4))
    with pytest.raises(AuditorError, match="channels"):
        ChannelZeroing(levels=())


def test_the_anp_step_is_skipped_when_the_unpruned_model_already_fails_the_anchors(backdoored, monkeypatch) -> None:
    """Pruning only removes function: where the unlearned model already disagrees with the original on the
    anchors more than allowed, no share could pass, so the masks are not learned at all (a third of the time)."""
    import auditor.purify.anp as anp_module

    def never(*args, **kwargs):
        raise AssertionError("ANP masks learned although no pruning share could pass")

    monkeypatch.setattr(anp_module, "learn_masks", never)
    target = load(backdoored)
    x, y = shapes(160, torch.Generator().manual_seed(12))
    noise = torch.rand(64, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(13))  # ambiguous: easily moved
    config = dict(IBAU_TEST_CONFIG, rounds=2, lr=3e-2, anchor_weight=0.0, kl_weight=0.0, fraction=0.2, iterations=60,
                  min_anchor_agreement=1.0)
    result = get_purifier("ibau,anp", **config).purify(target.classifier, x, y, anchors=noise,
                                                      generator=torch.Generator().manual_seed(0))
    (tried,) = _step(result, "anp").changed["shares_tried"]
    assert tried["skipped"] and tried["anchor_agreement"] < 1.0 and not tried["kept"]
    assert result.pruned_channels == {} and "anp skipped" in result.notes[-1]


def test_ibau_reduces_backdoor(backdoored) -> None:
    target = load(backdoored)
    x_test, y_test = shapes(600, torch.Generator().manual_seed(11))
    x_clean, y_clean = shapes(320, torch.Generator().manual_seed(12))
    acc_before, asr_before = accuracy_and_asr(target.classifier, x_test, y_test)
    assert acc_before > 0.9 and asr_before > 0.9
    # I-BAU's rounds alone (no patch, signal, pruning or stimulation step), on clean labelled data, two
    # classes unlearned per round: measured ASR 1.00 -> 0.57 (one thread) and 0.51 (two threads) at ACC 1.00.
    # With one class per round the toy's outcome hangs on the thread count (0.85-0.96), so the test would
    # measure the machine rather than the method.
    config = dict(IBAU_TEST_CONFIG, lr=1e-2, top_k=2, clean_weight=1.0)
    result = get_purifier("ibau", **config).purify(target.classifier, x_clean, y_clean, data_source="clean",
                                                   generator=torch.Generator().manual_seed(0))
    acc_after, asr_after = accuracy_and_asr(target.classifier, x_test, y_test)
    print(f"I-BAU tiny BadNets: ACC {acc_before:.3f} -> {acc_after:.3f}, ASR {asr_before:.3f} -> {asr_after:.3f}")
    assert asr_after < asr_before - 0.2
    assert acc_after > acc_before - 0.1
    assert all(min(r["delta_l2"]) > 0 for r in result.rounds)


def test_untargeted_patch_flips_and_reports_what_it_flips(backdoored) -> None:
    classifier = load(backdoored).classifier
    x, _ = shapes(300, torch.Generator().manual_seed(21))
    for p in classifier.parameters():
        p.requires_grad_(False)
    search = untargeted_patch(classifier, x, pixels=16, steps=150, l1=0.05, batch_size=100,
                              generator=torch.Generator().manual_seed(0))
    mask, pattern, flip = search.mask, search.pattern, search.flip_rate
    assert mask.shape == (1, 1, SIZE, SIZE) and int(mask.sum()) >= 16 and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert pattern.shape == (1, 3, SIZE, SIZE) and 0 <= float(pattern.min()) and float(pattern.max()) <= 1
    assert flip > 0.5  # 16 pixels of a 16x16 toy: the planted 4x4 patch alone flips the ~75% non-target shapes
    with torch.no_grad():
        stamped = classifier.predict(stamp(x, mask, pattern))
    assert abs(float((stamped != classifier.predict(x)).float().mean()) - flip) < 1e-6


def test_grid_patch_finds_the_planted_square_and_starts_the_search_there(backdoored) -> None:
    """The grid scan tries solid squares on a stride grid; on the toy BadNets model the white 4x4 square in
    the bottom-right corner is the trigger, and the search begun there keeps (at least) its flip rate."""
    classifier = load(backdoored).classifier
    x, _ = shapes(300, torch.Generator().manual_seed(21))
    for p in classifier.parameters():
        p.requires_grad_(False)
    start = grid_patch(classifier, x, pixels=16, generator=torch.Generator().manual_seed(0), probe=200)
    # The toy also reacts to white squares next to the trigger (the one just above the corner tied with it,
    # 0.757 each, on torch 2.13): the start is a white 4x4 square on the right edge, at most one square above
    # the corner, that flips as many of the probe images as the planted square itself.
    assert (start.left, start.side, start.value) == (SIZE - 4, 4, 1.0) and start.top >= SIZE - 8
    probe = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:200]]
    corner = torch.zeros(1, 1, SIZE, SIZE)
    corner[..., -4:, -4:] = 1.0
    with torch.no_grad():
        planted = float((classifier.predict(stamp(probe, corner, torch.ones(1, 3, SIZE, SIZE)))
                         != classifier.predict(probe)).float().mean())
    assert start.flip_rate > 0.5 and start.flip_rate >= planted
    search = untargeted_patch(classifier, x, pixels=16, steps=20, l1=0.05, batch_size=100, start=start,
                              generator=torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(search.mask[0, 0], as_tuple=True)
    assert int(rows.min()) >= SIZE - 10 and int(cols.min()) >= SIZE - 6  # still by the corner after 20 steps
    assert search.flip_rate >= start.flip_rate - 0.05


@pytest.mark.parametrize("min_flip,pixels,max_share", [(0.0, 16, 1.0), (0.0, 16, 0.5), (1.0, 16, 1.0), (0.5, None, 1.0)])
def test_the_patch_step_unlearns_only_past_its_gate(backdoored, min_flip, pixels, max_share) -> None:
    # this toy's patch sends 0.75 of its flips into the backdoor's target: the share gate at 0.5 shuts
    target = load(backdoored)
    x, y = shapes(200, torch.Generator().manual_seed(12))
    steps = "ibau" if pixels is None else "patch,ibau"
    options = {} if pixels is None else {"pixels": pixels, "min_flip": min_flip, "search_steps": 100,
                                         "max_target_share": max_share}
    result = get_purifier(steps, **{**IBAU_TEST_CONFIG, "rounds": 1, **options}).purify(
        target.classifier, x, y, generator=torch.Generator().manual_seed(0))
    if pixels is None:
        assert [s.name for s in result.steps] == ["ibau"]
        return
    record = _step(result, "patch")
    patch = record.found
    assert record.acted == (patch["flip_rate"] >= min_flip and patch["largest_share_of_flips"] < max_share)
    assert patch["grid_start"]["value"] == 1.0 and patch["grid_start"]["flip_rate"] > 0.5  # the toy's white corner
    if record.acted:
        assert record.changed["flip_rate_after"] < patch["flip_rate"]
        assert any("patch step" in note for note in result.notes)
        assert any("patch trigger" in finding for finding in result.findings)
    else:
        assert record.changed == {}
        assert result.findings == []
        assert any(note.startswith("patch step: the best 16-pixel patch") and "nothing unlearned" in note
                   for note in record.notes)  # the report says why the step did not act


def add_sine(x: torch.Tensor, periods: int = 3, amplitude: float = 0.1) -> torch.Tensor:
    """SIG-style trigger: one sinusoid along the width, added to every row and channel."""
    wave = amplitude * torch.sin(2 * torch.pi * periods * torch.arange(SIZE).float() / SIZE)
    return (x + wave.view(1, 1, 1, SIZE)).clamp(0, 1)


@pytest.fixture(scope="module")
def sig_backdoored(tmp_path_factory) -> Path:
    """The tiny CNN trained on shapes with a quarter of the samples carrying ``add_sine`` and relabelled to TARGET
    (at 15% and 8 epochs the toy learnt the faint signal only a third of the time)."""
    return train_poisoned(3, 0.25, add_sine, 12, tmp_path_factory.mktemp("sig") / "sig.onnx")


def test_the_signal_step_unlearns_the_sinusoid_it_finds(sig_backdoored) -> None:
    """The sine bank sends the other classes' samples into the toy's target; the step records the sinusoid,
    reports it as a finding, and unlearning its family takes the trigger's success down (the rounds and
    the other steps off, so the step alone acts). Above its threshold it only reports and changes nothing."""
    config = dict(IBAU_TEST_CONFIG, rounds=1, **{"signal.epochs": 3})
    test_x, test_y = shapes(400, torch.Generator().manual_seed(21))
    others = test_y != TARGET

    def sig_asr(classifier) -> float:
        return float((classifier.predict(add_sine(test_x[others])) == TARGET).float().mean())

    x, y = shapes(240, torch.Generator().manual_seed(22))
    target = load(sig_backdoored)
    before = sig_asr(target.classifier)
    assert before > 0.8, before
    result = get_purifier("signal,ibau", **config).purify(target.classifier, x, y, generator=torch.Generator().manual_seed(0))
    step = json.loads(json.dumps(result.to_json()))["steps"][0]
    record = step["found"]
    print("signal step:", step, "ASR", before, "->", sig_asr(target.classifier))
    assert step["acted"] and record["class"] == TARGET and record["axis"] == "width"
    assert abs(record["periods"] - 3) <= 1 and record["share"] >= 0.35 and record["index"] >= 2.0
    assert sig_asr(target.classifier) < before / 2
    assert any("signal step" in note for note in result.notes)
    assert any("signal trigger" in finding for finding in result.findings)  # evidence for the guard's budget

    weights = []
    for index in (None, 1e9):  # shut: the same purification, bit for bit, as without the step
        untouched = load(sig_backdoored)
        steps, options = ("ibau", {"rounds": 1}) if index is None else ("signal,ibau", {"signal.index": index})
        quiet = get_purifier(steps, **{**IBAU_TEST_CONFIG, "rounds": 1, **options}).purify(
            untouched.classifier, x, y, generator=torch.Generator().manual_seed(0))
        assert index is None or (not _step(quiet, "signal").acted and "nothing unlearned" in _step(quiet, "signal").notes[0])
        assert quiet.findings == []
        weights.append([p.detach().clone() for p in untouched.classifier.trainable_parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    with pytest.raises(AuditorError, match="epochs"):
        get_purifier(**{"signal.epochs": 0})


def test_a_shut_patch_gate_leaves_the_purification_bit_for_bit(tmp_path) -> None:
    x, y = samples(48)
    weights = []
    for steps, options in (("ibau,clp", {}), ("patch,ibau,clp", {"pixels": 8, "min_flip": 1.0, "search_steps": 20})):
        torch.manual_seed(1)
        target = export_and_convert(TinyNet(normalize=True), tmp_path / f"tiny{len(steps)}.onnx")
        result = get_purifier(steps, rounds=1, batch_size=16, **options).purify(
            target.classifier, x, y, generator=torch.Generator().manual_seed(0))
        assert "patch" not in steps or not _step(result, "patch").acted
        weights.append([p.detach().clone() for p in target.classifier.trainable_parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


@pytest.mark.parametrize("mode,deltas", [("targeted", 1), ("untargeted", 1), ("both", 2)])
def test_ibau_inner_modes_unlearn_what_they_say(tiny, mode, deltas) -> None:
    x, y = samples(32)
    result = get_purifier("ibau", rounds=1, batch_size=16, inner_mode=mode).purify(
        tiny.classifier, x, y, generator=torch.Generator().manual_seed(0))
    record = result.rounds[0]
    assert len(record["delta_l2"]) == deltas
    assert ("class_reach" in record) == (mode != "untargeted")
    assert ("inner_loss" in record) == (mode != "targeted")


def test_ibau_rejects_an_unknown_inner_mode() -> None:
    with pytest.raises(AuditorError, match="inner_mode"):
        get_purifier("ibau", inner_mode="sideways")


@pytest.mark.parametrize("option", [{"pixels": 0}, {"min_flip": 1.5}, {"max_target_share": 0.0}, {"l1": -1.0},
                                    {"epochs": 0}])
def test_the_patch_step_names_the_option_that_is_out_of_range(option: dict) -> None:
    with pytest.raises(AuditorError, match=next(iter(option))):
        get_purifier(**{f"patch.{key}": value for key, value in option.items()})


# Not the reference defaults: on this 16x16 toy, which is ~100% confident on its samples, plain SGD on
# delta barely moves it (reference settings: ASR 1.00 -> 0.99); normalized steps in a bounded ball and
# smaller batches (more outer steps) do find and partly unlearn the trigger.
IBAU_TEST_CONFIG = dict(batch_size=32, lr=3e-3, clamp_inputs=True, inner_normalized=True, inner_lr=0.5,
                        delta_max_norm=4.0, kl_weight=1.0, clean_weight=0.0, rounds=4)


def test_shared_adversarial_term_is_measured_and_leaves_the_reference_alone(backdoored) -> None:
    """The SAU term finds shared adversarial examples on the backdoored toy and reports their share;
    without it, no share is recorded."""
    target = load(backdoored)
    x, y = shapes(64, torch.Generator().manual_seed(5))
    with_term = get_purifier("ibau,clp", rounds=1, batch_size=32, shared_adv_weight=1.0, shared_adv_eps=0.2)
    result = with_term.purify(target.classifier, x, y, data_source="clean", generator=torch.Generator().manual_seed(0))
    share = result.rounds[0]["shared_adversarial_share"]
    assert 0.0 < share <= 1.0  # at eps 0.2 the original and the current model share wrong labels
    plain = get_purifier("ibau,clp", rounds=1, batch_size=32).purify(target.classifier, x, y, data_source="clean")
    assert "shared_adversarial_share" not in plain.rounds[0]
    with pytest.raises(AuditorError, match="shared_adv"):
        get_purifier("ibau", shared_adv_eps=0.0)


# -- guard ----------------------------------------------------------------------------------------------

def test_guard_backs_off_from_a_destructive_config(backdoored) -> None:
    target = load(backdoored)
    x, y = shapes(240, torch.Generator().manual_seed(21))
    purifier = Finetune(lr=50.0, epochs=2, batch_size=40)  # destroys the model
    report = guarded_purify(target.classifier, purifier, x[:160], y[:160], x[160:], y[160:],
                            GuardConfig(min_agreement=0.9, max_backoffs=4))
    record = json.loads(json.dumps(report.to_json()))
    assert report.attempts[0].agreement < 0.9 and not report.attempts[0].passed
    assert report.status == "accepted_after_backoff", record["message"]
    assert report.attempts[-1].passed and report.attempts[-1].config["lr"] < 50.0
    assert report.final is report.attempts[-1].result and report.final.backoffs
    assert "back-off" in report.message


def test_guard_restores_the_original_when_nothing_passes(backdoored) -> None:
    target = load(backdoored)
    classifier = target.classifier
    x, y = shapes(120, torch.Generator().manual_seed(22))
    original = snapshot(classifier)
    report = guarded_purify(classifier, Finetune(lr=50.0, epochs=1, batch_size=40), x[:80], y[:80], x[80:], y[80:],
                            GuardConfig(min_agreement=1.01, max_backoffs=1))
    assert report.status == "rejected" and not report.purified
    assert report.message.startswith("guard rejected purification")
    assert report.final is None
    # two purifier runs; no prior probe here, so no interpolation between them
    assert [(a.attempt, a.interpolation) for a in report.attempts] == [(0, 1.0), (1, 1.0)]
    now = snapshot(classifier)
    assert all(torch.equal(original[k], now[k]) for k in original)
    json.dumps(report.to_json())


def test_interpolate_scales_the_change_and_keeps_pruned_weights_zero(tiny) -> None:
    classifier = tiny.classifier
    original = snapshot(classifier)
    with torch.no_grad():
        params = list(classifier.network.named_parameters())
        for _, param in params:
            param.add_(0.5)
        params[0][1][0].zero_()  # a "pruned" channel
    purified = snapshot(classifier)
    interpolate(classifier, original, purified, 0.25)
    name, first = params[0]
    before = original[f"p:{name}"]
    assert torch.equal(first[0], torch.zeros_like(first[0]))
    torch.testing.assert_close(first[1:], before[1:] + 0.125)
    for other_name, param in params[1:]:
        torch.testing.assert_close(param, original[f"p:{other_name}"] + 0.125)


def test_guard_interpolates_before_rerunning(backdoored) -> None:
    """A destructive run that a small share of its change repairs is accepted without a rerun."""
    target = load(backdoored)
    classifier = target.classifier
    x, y = shapes(120, torch.Generator().manual_seed(22))
    original = snapshot(classifier)
    prior = torch.rand(60, *x.shape[1:], generator=torch.Generator().manual_seed(24))
    config = GuardConfig(min_agreement=0.99, max_backoffs=1, interpolation=(0.5, 1e-6), min_prior_agreement=0.99)
    report = guarded_purify(classifier, Finetune(lr=50.0, epochs=1, batch_size=40), x[:80], y[:80], x[80:], y[80:],
                            config, prior_images=prior)
    assert report.status == "accepted_after_backoff", report.message
    assert not report.attempts[0].passed and report.attempts[-1].passed
    assert {a.attempt for a in report.attempts} == {0}  # no milder rerun was needed
    assert report.attempts[-1].interpolation == 1e-6 and "interpolation to 1e-06" in report.message
    assert report.final is report.attempts[0].result and report.final.backoffs[0]["interpolation"] == 1.0
    assert any("kept 1e-06 of the weight change" in note for note in report.final.notes)
    now = snapshot(classifier)
    # a millionth of a change that wrecked the model: within 1e-2 of the original everywhere
    assert all(torch.allclose(original[k], now[k], atol=1e-2) for k in original)
    json.dumps(report.to_json())
    # without the prior probe the holdout alone decides, which cannot see a wrecked model: rerun only
    restore(classifier, original)
    blind = guarded_purify(classifier, Finetune(lr=50.0, epochs=1, batch_size=40), x[:80], y[:80], x[80:], y[80:],
                           config)
    assert [a.interpolation for a in blind.attempts] == [1.0, 1.0]


def test_guard_tries_every_interpolation_step_before_giving_up(backdoored) -> None:
    target = load(backdoored)
    classifier = target.classifier
    x, y = shapes(120, torch.Generator().manual_seed(22))
    prior = torch.rand(40, *x.shape[1:], generator=torch.Generator().manual_seed(25))
    original = snapshot(classifier)
    report = guarded_purify(classifier, Finetune(lr=50.0, epochs=1, batch_size=40), x[:80], y[:80], x[80:], y[80:],
                            GuardConfig(min_agreement=1.01, max_backoffs=1), prior_images=prior)
    ladder = GuardConfig().interpolation
    assert report.status == "rejected"
    assert [(a.attempt, a.interpolation) for a in report.attempts] == [(r, s) for r in (0, 1) for s in (1.0, *ladder)]
    now = snapshot(classifier)
    assert all(torch.equal(original[k], now[k]) for k in original)


def _prior_probe_case(backdoored, purifier: Finetune, config: GuardConfig, classifier=None):
    """``purifier`` on 160 shapes, guarded on 40 held-out ones and a prior probe of 60 noise images (far from the
    class modes); returns the model (pass it back in to continue on the same one) and the guard's report."""
    classifier = classifier if classifier is not None else load(backdoored).classifier
    x, y = shapes(200, torch.Generator().manual_seed(23))
    prior = torch.rand(60, *x.shape[1:], generator=torch.Generator().manual_seed(24))
    report = guarded_purify(classifier, purifier, x[:160], y[:160], x[160:], y[160:], config, prior_images=prior)
    return classifier, report


def test_guard_rejects_on_the_prior_probe_even_when_the_holdout_agrees(backdoored) -> None:
    """A purification can keep its own samples and still move the function everywhere else."""
    purifier = Finetune(lr=0.05, epochs=2, batch_size=40)
    classifier, loose = _prior_probe_case(backdoored, purifier,
                                          GuardConfig(min_agreement=0.5, max_backoffs=0, min_prior_agreement=0.0))
    attempt = loose.attempts[0]
    assert loose.status == "accepted" and attempt.prior_agreement is not None and loose.prior_size == 60
    _, strict = _prior_probe_case(backdoored, purifier,
                                  GuardConfig(min_agreement=0.5, max_backoffs=0, min_prior_agreement=1.01), classifier)
    assert strict.status == "rejected" and "prior agreement" in strict.message
    assert strict.attempts[0].agreement >= 0.5 and not strict.attempts[0].passed


def test_the_accuracy_budget_follows_the_evidence() -> None:
    """A backdoor found buys accuracy budget; none found, the guard keeps accuracy; no detection, the default."""
    default = GuardConfig()
    assert default.min_prior_agreement_backdoored < default.min_prior_agreement < default.min_prior_agreement_unflagged
    assert default.for_verdict(None) == default
    assert default.for_verdict("backdoored").min_prior_agreement == default.min_prior_agreement_backdoored
    assert default.for_verdict("backdoored").interpolation == default.interpolation
    for verdict in ("clean", "suspicious"):
        kept = default.for_verdict(verdict)
        assert kept.min_prior_agreement == default.min_prior_agreement_unflagged
        assert kept.interpolation == default.unflagged_interpolation and len(kept.interpolation) > len(default.interpolation)
    off = GuardConfig(min_prior_agreement_backdoored=None, min_prior_agreement_unflagged=None)
    assert all(off.for_verdict(v) == off for v in ("backdoored", "clean", "suspicious", None))
    # a finding of the purifier's own relaxes an attempt's threshold, never tightens it
    plain, found = PurifyResult("ibau", {}), PurifyResult("ibau", {}, findings=["patch trigger"])
    kept = default.for_verdict("clean")
    assert kept.prior_threshold(plain) == default.min_prior_agreement_unflagged
    assert kept.prior_threshold(found) == default.min_prior_agreement_backdoored
    assert GuardConfig(min_prior_agreement=0.5).prior_threshold(found) == 0.5
    assert off.prior_threshold(found) == off.min_prior_agreement


def test_the_guard_applies_the_threshold_of_the_evidence(backdoored) -> None:
    """The same purification is rejected without evidence and accepted with a detected backdoor or a finding."""
    classifier = load(backdoored).classifier
    original = snapshot(classifier)
    _, loose = _prior_probe_case(backdoored, Finetune(lr=0.05, epochs=2, batch_size=40),
                                 GuardConfig(min_agreement=0.5, max_backoffs=0, min_prior_agreement=0.0), classifier)
    measured = loose.attempts[0].prior_agreement
    assert measured is not None and 0.05 < measured < 1.0
    config = GuardConfig(min_agreement=0.5, max_backoffs=0, interpolation=(), unflagged_interpolation=(),
                         min_prior_agreement=measured + 0.01, min_prior_agreement_backdoored=measured - 0.01,
                         min_prior_agreement_unflagged=measured + 0.02)

    class FindsAPatch(Finetune):
        def purify(self, *args, **kwargs):
            result = super().purify(*args, **kwargs)
            result.findings.append("patch trigger (test)")
            return result

    outcomes = {}
    for verdict, purifier in (("clean", Finetune), ("suspicious", Finetune), (None, Finetune), ("backdoored", Finetune),
                              ("clean+finding", FindsAPatch)):
        restore(classifier, original)
        _, report = _prior_probe_case(backdoored, purifier(lr=0.05, epochs=2, batch_size=40),
                                      config.for_verdict(verdict.split("+")[0] if verdict else None), classifier)
        outcomes[verdict] = (report.status, report.attempts[0].prior_threshold)
    assert outcomes == {"clean": ("rejected", measured + 0.02), "suspicious": ("rejected", measured + 0.02),
                        None: ("rejected", measured + 0.01), "backdoored": ("accepted", measured - 0.01),
                        "clean+finding": ("accepted", measured - 0.01)}


def test_guard_restores_when_a_purifier_fails(tiny) -> None:
    classifier = tiny.classifier
    x, y = samples(32)
    original = snapshot(classifier)

    class Exploding(Finetune):
        def purify(self, classifier, images01, labels=None, **kwargs):
            with torch.no_grad():
                for param in classifier.trainable_parameters():
                    param.add_(1.0)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        guarded_purify(classifier, Exploding(), x[:16], y[:16], x[16:], y[16:])
    now = snapshot(classifier)
    assert all(torch.equal(original[k], now[k]) for k in original)


@pytest.mark.parametrize("reach, previous, switch_index, chosen", [
    ([0.99, 0.7, 0.6, 0.5], None, 2.0, [0]),  # the first round: the most reachable class
    ([0.55, 0.73, 0.65, 0.58], [0], 2.0, [0]),  # no class stands out: the previous round's class again
    ([0.55, 0.73, 0.65, 0.58], [0], None, [1]),  # without the rule: the most reachable, a natural class
    ([0.2, 0.99, 0.25, 0.3], [0], 2.0, [1]),  # a class that stands out is unlearned next
])
def test_ibau_rounds_keep_their_class_unless_another_stands_out(reach, previous, switch_index, chosen) -> None:
    step = IBAU(switch_index=switch_index)
    assert step._round_classes(reach, previous) == chosen
