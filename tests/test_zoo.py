"""The zoo: export styles, ``zoo build --quick`` end to end, and the shipped models' manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.attacks import ATTACKS, ZOO_FAMILIES
from auditor.zoo.arch import ARCHITECTURES, build_arch
from auditor.zoo.export import EXPORT_STYLES, export_onnx
from auditor.zoo.build import build_command
from auditor.errors import AuditorError
from auditor.zoo.recipes import HELD_APART_RECIPES, HOLDOUT_RECIPES, RECIPES, get_recipe, with_overrides

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "sample_models"
MANIFEST = ZOO / "manifest.json"
SHARED = ROOT.parent / "shared" / "data"
CLASSES = [f"c{i}" for i in range(10)]


def test_every_recipe_uses_its_own_export_style() -> None:
    styles = [r.export_style for r in RECIPES.values()]
    assert len(set(styles)) == len(styles) and set(styles) <= set(EXPORT_STYLES)
    assert sum(r.attack is None for r in RECIPES.values()) >= 2
    assert {r.attack for r in RECIPES.values()} >= {"badnets", "badnets_all2all", "blended", "sig", "wanet", "input_aware"}


def test_held_out_clean_models_are_buildable_but_not_part_of_the_zoo() -> None:
    """The scan's false-positive check uses clean models nobody tuned on: `zoo build --model` knows them,
    `zoo build` (all) does not build them, and their manifest command names their own folder."""
    assert HOLDOUT_RECIPES and not set(HOLDOUT_RECIPES) & set(RECIPES)
    assert all(r.attack is None and r.export_style in EXPORT_STYLES for r in HOLDOUT_RECIPES.values())
    name = next(iter(HOLDOUT_RECIPES))
    assert get_recipe(name) is HOLDOUT_RECIPES[name]
    assert build_command(name, out_dir=Path("runs/holdout")) == f"auditor zoo build --model {name} -o runs/holdout"
    assert build_command("cifar10_clean_a", out_dir=Path("sample_models")) == "auditor zoo build --model cifar10_clean_a"
    listing = CliRunner().invoke(main, ["zoo", "list"]).output
    assert name in listing and "held out" in listing


def test_held_apart_models_differ_from_the_zoo_in_family_or_architecture() -> None:
    """What the defaults are judged on must not be what they were tuned on: every held-apart backdoor uses
    another architecture than the zoo's, and at least four attack families the zoo does not have."""
    zoo_archs = {r.arch for r in RECIPES.values()}
    assert not set(HELD_APART_RECIPES) & (set(RECIPES) | set(HOLDOUT_RECIPES))
    assert all(r.arch not in zoo_archs and r.arch in ARCHITECTURES for r in HELD_APART_RECIPES.values())
    families = {r.attack for r in HELD_APART_RECIPES.values() if r.attack}
    assert len(families - set(ZOO_FAMILIES)) >= 4 and families <= set(ATTACKS)
    assert any(r.attack is None for r in HELD_APART_RECIPES.values())
    assert len({r.arch for r in HELD_APART_RECIPES.values()}) >= 3
    assert len({r.attack_kwargs.get("target", 0) for r in HELD_APART_RECIPES.values() if r.attack}) >= 4
    built = {m["name"]: m for m in json.loads((ROOT / "heldapart_models" / "manifest.json").read_text())["models"]}
    assert set(built) == set(HELD_APART_RECIPES)  # every recipe is built and committed, nothing else is
    assert all(m["recipe"] == get_recipe(name).to_json() for name, m in built.items())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_exports_and_converts_with_parity(tmp_path: Path, arch: str) -> None:
    """Each network the zoo can build survives the export and our converter (onnxruntime vs torch, 1e-4)."""
    import torch

    from converters import compare_with_onnxruntime, convert, load_onnx

    shape = (1, 28, 28) if arch == "lenet5" else (3, 32, 32)  # LeNet-5 is a digit network
    torch.manual_seed(0)
    net = build_arch(arch, in_channels=shape[0]).eval()
    assert net(torch.rand(2, *shape)).shape == (2, 10)
    data = export_onnx(net, EXPORT_STYLES["legacy-opset17"], CLASSES, image_shape=shape, mean=(0.5,) * shape[0],
                       std=(0.25,) * shape[0])
    path = tmp_path / f"{arch}.onnx"
    path.write_bytes(data)
    loaded = load_onnx(path)
    parity = compare_with_onnxruntime(convert(loaded).module, data, loaded.spec, batch_sizes=(2,))
    assert parity.ok, parity


@pytest.mark.parametrize("style", [s for s in EXPORT_STYLES if not s.startswith("dynamo")])
def test_export_style_is_read_back_by_the_loader(tmp_path: Path, style: str) -> None:
    from converters.load import load_onnx

    st = EXPORT_STYLES[style]
    path = tmp_path / "m.onnx"
    path.write_bytes(export_onnx(build_arch("resnet9-tiny"), st, CLASSES))
    spec = load_onnx(path).spec
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["class_names"]) == CLASSES and "input_range" in meta
    assert ("mean" in meta) == (not st.baked_normalization) and (spec.mean is None) == st.baked_normalization
    assert spec.layout == ("NHWC" if st.nhwc else "NCHW")
    assert spec.value_range == ((0.0, 255.0) if st.input_scale == 255 else (0.0, 1.0))
    assert spec.batch == (None if st.dynamic_batch else 1)
    assert spec.output_kind == ("probabilities" if st.softmax else "logits")


@pytest.mark.slow
def test_dynamo_export(tmp_path: Path) -> None:
    from converters.load import load_onnx

    path = tmp_path / "m.onnx"
    path.write_bytes(export_onnx(build_arch("resnet9-tiny"), EXPORT_STYLES["dynamo-opset18"], CLASSES))
    assert load_onnx(path).opset == 18


@pytest.mark.skipif(not (SHARED / "cifar10.zip").is_file(), reason="../shared/data not present")
def test_zoo_build_quick_end_to_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["zoo", "build", "--quick", "--model", "cifar10_badnets", "-o", str(tmp_path),
                                       "--data-dir", str(SHARED), "--threads", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (entry,) = manifest["models"]
    model = tmp_path / entry["file"]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == entry["sha256"]
    assert entry["command"] == "auditor zoo build --model cifar10_badnets --quick"
    assert entry["attack"]["name"] == "badnets" and entry["target"] == 0 and entry["poisoning_rate"] == 0.1
    test = entry["metrics"]["test"]
    assert 0.0 <= test["acc"] <= 1.0 and test["n_clean"] == 200 and test["asr"] is not None
    assert (tmp_path / "cifar10_test_1000.npz").is_file()
    # the figures it recorded are reproduced by `auditor evaluate` on the file it wrote
    out = CliRunner().invoke(main, ["evaluate", str(model), "--eval-data", str(tmp_path / "cifar10_test_1000.npz"),
                                    "--attack-from", str(tmp_path / "manifest.json"), "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["acc"] == entry["metrics"]["eval_subset"]["acc"] and got["asr"] == entry["metrics"]["eval_subset"]["asr"]


@pytest.mark.skipif(not (SHARED / "cifar10.zip").is_file(), reason="../shared/data not present")
def test_zoo_build_sweep_holds_out_training_images(tmp_path: Path) -> None:
    """--set and --validation: a recipe is tuned on held-out training images, and the entry says how it was built."""
    result = CliRunner().invoke(main, ["zoo", "build", "--quick", "--model", "cifar10_badnets_all2all", "-o",
                                       str(tmp_path), "--data-dir", str(SHARED), "--threads", "1",
                                       "--set", "seed=5", "--set", "lr=0.1", "--validation", "64"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert entry["command"] == ("auditor zoo build --model cifar10_badnets_all2all --set seed=5 --set lr=0.1 "
                                "--validation 64 --quick")
    assert entry["recipe"]["seed"] == 5 and entry["recipe"]["lr"] == 0.1 and entry["seed"] == 5
    assert "64 images held out for validation" in entry["dataset"]
    held = entry["metrics"]["validation"]
    assert held["n_clean"] == 64 and held["n_attack"] == 64 and 0.0 <= held["asr"] <= 1.0
    assert "validation ACC" in result.output


def test_recipe_overrides_are_typed_and_checked() -> None:
    recipe = get_recipe("cifar10_badnets_all2all")
    changed = with_overrides(recipe, {"arch": "resnet9-w24", "epochs": "60", "seed": "3",
                                      "attack_kwargs": '{"rate": 0.05}'})
    assert (changed.arch, changed.epochs, changed.seed) == ("resnet9-w24", 60.0, 3)
    assert changed.attack_kwargs == {"stamp": "batch", "rate": 0.05}  # merged into the recipe's own
    assert with_overrides(recipe, {}) is recipe
    for bad in ({"attack": "blended"}, {"epochs": "many"}, {"seed": "1.5"}, {"attack_kwargs": "[1]"}):
        with pytest.raises(AuditorError):
            with_overrides(recipe, bad)


def test_zoo_build_keeps_sweeps_out_of_the_shipped_zoo() -> None:
    result = CliRunner().invoke(main, ["zoo", "build", "--model", "cifar10_badnets_all2all", "--set", "epochs=60"])
    assert result.exit_code == 2 and "--out" in result.output
    result = CliRunner().invoke(main, ["zoo", "build", "--quick", "--model", "cifar10_badnets", "--set", "nonsense"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_zoo_build_rejects_unknown_model() -> None:
    result = CliRunner().invoke(main, ["zoo", "build", "--quick", "--model", "cifar10_nothing"])
    assert result.exit_code == 2 and "no zoo model" in result.output


@pytest.mark.skipif(not MANIFEST.is_file(), reason="sample zoo not built yet")
def test_shipped_zoo_matches_its_manifest() -> None:
    manifest = json.loads(MANIFEST.read_text())
    assert "CIFAR-10" in manifest["data_licence"]["cifar10"]
    for entry in manifest["models"]:
        path = ZOO / entry["file"]
        assert path.is_file(), entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], entry["name"]
        assert path.stat().st_size < 2_500_000
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert {"input_range", "class_names"} <= set(meta)
        assert entry["command"] == f"auditor zoo build --model {entry['name']}"
        assert entry["metrics"]["test"]["n_clean"] == 10000
        if entry["attack"] and entry["attack"]["name"] == "input_aware":
            assert (ZOO / entry["attack"]["trigger_file"]).is_file()


def _shipped() -> list[dict]:
    return json.loads(MANIFEST.read_text())["models"] if MANIFEST.is_file() else []


# Shipped below the zoo's 90% ASR target (docs/zoo.md says why); strict, so a rebuild that passes flags itself.
KNOWN_SHORT = {"cifar10_badnets_all2all": "ASR 81.4% < 90% (91.7% on the images it classifies correctly)"}


@pytest.mark.parametrize("name", [pytest.param(e["name"], marks=pytest.mark.xfail(
    strict=True, reason=KNOWN_SHORT[e["name"]])) if e["name"] in KNOWN_SHORT else e["name"] for e in _shipped()])
def test_shipped_model_meets_the_issue_bar(name: str) -> None:
    entry = next(e for e in _shipped() if e["name"] == name)
    test = entry["metrics"]["test"]
    assert test["acc"] >= 0.85, test["acc"]
    if entry["attack"]:
        assert test["asr"] >= (0.8 if entry["attack"]["name"] == "sig" else 0.9), test["asr"]


@pytest.mark.parametrize("folder, begin", [
    ("sample_models", "<!-- zoo-table: generated by `auditor zoo table` from sample_models/manifest.json -->"),
    ("heldapart_models", "<!-- held-apart zoo table: generated by `auditor zoo table --zoo heldapart_models` -->"),
])
def test_zoo_tables_in_the_docs_are_rendered_from_the_manifests(folder: str, begin: str) -> None:
    from auditor.zoo.report import markdown_table

    page = (ROOT / "docs" / "zoo.md").read_text()
    end = "<!-- /zoo-table -->" if folder == "sample_models" else "<!-- /held-apart zoo table -->"
    assert page.split(begin, 1)[1].split(end, 1)[0].strip("\n") == markdown_table(ROOT / folder)
