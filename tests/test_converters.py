"""The converter on a matrix of architectures x exporters x batch kinds (timm-style: every
parameter must receive a gradient), plus the ONNX model-zoo files shipped inside onnx."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from converters import compare_with_onnxruntime, convert, load_onnx, save_onnx
from model_matrix import ARCHITECTURES, EXPORTERS, build, export

CASES = [(a, e, b) for a in ARCHITECTURES for e in EXPORTERS for b in ("dynamic", "static")]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.mark.parametrize("arch,exporter,batch", CASES, ids=["-".join(c) for c in CASES])
def test_convert_train_write_back(arch: str, exporter: str, batch: str, export_dir: Path) -> None:
    static = 4 if batch == "static" else None
    path = export(build(arch), exporter, export_dir / f"{arch}-{exporter}-{batch}.onnx", static)
    original_bytes = path.read_bytes()
    loaded = load_onnx(path)
    assert loaded.spec.batch == static
    assert loaded.spec.num_classes == 10
    converted = convert(loaded)
    module = converted.module

    parity = compare_with_onnxruntime(module, loaded.model, loaded.spec)
    assert parity.ok, f"conversion parity {parity.max_abs:.2e}"
    # another batch size than the one exported with works on the torch side
    assert module(torch.rand(5, 3, 16, 16)).shape == (5, 10)

    params = [p for p in module.parameters() if p.requires_grad]
    assert params, "no trainable parameters"
    frozen_reasons = set(converted.frozen.values())
    assert frozen_reasons <= {"preprocessing constant (baked-in normalization)", "scalar constant", "running statistic"}
    if arch == "baked_normalization":
        assert loaded.spec.baked_normalization is not None
        assert "preprocessing constant (baked-in normalization)" in frozen_reasons
        baked = {t for t, r in converted.frozen.items() if r.startswith("preprocessing")}
        assert all(not p.requires_grad for n, p in module.named_parameters() if n in baked)
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    module.zero_grad()
    module(x).square().mean().backward()
    missing = [name for name, p in module.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, f"parameters without gradient: {missing}"
    assert any(float(p.grad.abs().sum()) > 0 for p in params)

    before = module(x).detach().clone()
    optimizer = torch.optim.SGD(params, lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(x), torch.arange(6) % 10).backward()
        optimizer.step()
    after = module(x).detach()
    assert not torch.allclose(before, after), "optimizer steps did not change the outputs"

    out = export_dir / f"{arch}-{exporter}-{batch}-trained.onnx"
    result = save_onnx(converted, out, overwrite=True)
    assert result.parity.ok and result.parity.max_abs <= 1e-4
    assert path.read_bytes() == original_bytes, "the input file was modified"
    if result.method == "write-back":
        written = onnx.load(str(out))
        assert [n.op_type for n in written.graph.node] == [n.op_type for n in loaded.model.graph.node]
        assert written.opset_import == loaded.model.opset_import
        assert [i.name for i in written.graph.input] == [i.name for i in loaded.model.graph.input]
    else:
        # only graphs whose weights are computed at run time may need a full re-export
        assert exporter == "dynamo_noopt", result.note


@pytest.mark.parametrize("arch", ["view_flatten", "token_mixer"])
def test_shape_inference_without_the_weights_types_every_tensor_as_the_full_model(arch: str, export_dir: Path) -> None:
    """Conversion infers shapes on a copy without large weights; shape and axes tensors must stay."""
    from converters.prepare import infer_shapes_without_weights

    path = export(build(arch), "legacy17", export_dir / f"{arch}-shapes.onnx", 4)
    model = onnx.load(str(path))
    constants = [node for node in model.graph.node if node.op_type == "Constant"]
    for node in constants:  # shape and axes tensors as initializers, as conversion's folding leaves them
        model.graph.initializer.append(onnx.numpy_helper.from_array(
            onnx.numpy_helper.to_array(node.attribute[0].t), node.output[0]))
        model.graph.node.remove(node)
    assert constants
    full = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    light = infer_shapes_without_weights(model)
    assert len(full.graph.value_info) > 0
    assert {v.name: v.type for v in light.graph.value_info} == {v.name: v.type for v in full.graph.value_info}
    assert [v.type for v in light.graph.output] == [v.type for v in full.graph.output]
    assert len(model.graph.initializer) > 0, "the model itself keeps its weights"


def _onnx_light_models() -> list[Path]:
    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return sorted(folder.glob("*.onnx"))


# Measured: 8 of 9 convert with parity. inception_v1 uses AveragePool with asymmetric padding
# (count_include_pad semantics differ), which onnx2torch rejects.
KNOWN_UNCONVERTIBLE = {"light_inception_v1.onnx": "AveragePool with non-symmetrical padding"}


@pytest.mark.slow
@pytest.mark.parametrize("path", _onnx_light_models(), ids=lambda p: p.stem)
def test_onnx_model_zoo_light(path: Path) -> None:
    from converters.errors import ModelError

    if path.name in KNOWN_UNCONVERTIBLE:
        with pytest.raises(ModelError, match="AveragePool"):
            convert(load_onnx(path))
        return
    loaded = load_onnx(path)
    converted = convert(loaded)
    # the three with large fully-connected heads at batch 1 only: a batch of 2 doubles their cost, and the other
    # light models and the converter matrix already cover dynamic batches
    batches = (1,) if path.stem in ("light_vgg19", "light_zfnet512", "light_bvlc_alexnet") else (1, 2)
    parity = compare_with_onnxruntime(converted.module, loaded.model, loaded.spec, batch_sizes=batches, tolerance=1e-3)
    assert parity.ok, f"{path.name}: max abs {parity.max_abs:.2e}"


@pytest.mark.parametrize("opset", [22, 23])
def test_opsets_newer_than_the_converters_are_converted_down(opset: int, export_dir: Path) -> None:
    """onnx knows opsets our converters do not; the prepared copy is version-converted to 21,
    while the written model keeps the original opset."""
    source = export(build("depthwise_separable"), "legacy17", export_dir / f"dw-{opset}-src.onnx", None)
    model = onnx.version_converter.convert_version(onnx.load(str(source)), opset)
    path = export_dir / f"dw-{opset}.onnx"
    onnx.save(model, str(path))
    loaded = load_onnx(path)
    converted = convert(loaded)
    assert any("-> 21" in step for step in converted.prepared.steps)
    assert compare_with_onnxruntime(converted.module, loaded.model, loaded.spec).ok
    result = save_onnx(converted, export_dir / f"dw-{opset}-out.onnx", overwrite=True)
    assert result.method == "write-back"
    assert onnx.load(str(result.path)).opset_import[0].version == opset


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_the_audits_channels_last_wrapper_trains_and_writes_back_every_architecture(arch: str, export_dir: Path) -> None:
    """The audit runs every model through ``Classifier``, which keeps the network in channels-last:
    reshapes and flattens must still see the logical layout, and trained weights must be written back
    in ONNX's."""
    from auditor.model import Classifier

    path = export(build(arch), "legacy17", export_dir / f"{arch}-layout.onnx", None)
    loaded = load_onnx(path)
    converted = convert(loaded)
    classifier = Classifier.from_converted(converted)
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    nchw = converted.module(loaded.spec.to_model_input(x).contiguous())
    assert torch.allclose(classifier(x), classifier.logits_from_network_output(nchw), atol=1e-5)
    params = classifier.trainable_parameters()
    optimizer = torch.optim.SGD(params, lr=0.05)
    for _ in range(2):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(classifier(x), torch.arange(6) % 10).backward()
        optimizer.step()
    result = save_onnx(converted, export_dir / f"{arch}-layout-trained.onnx", overwrite=True)
    assert result.parity.ok and result.parity.max_abs <= 1e-4
