"""The bundled generator loads offline from package data; the adapter fits any ModelSpec; user generators plug in."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from auditor.generators import (
    DEFAULT_GENERATOR,
    SpecAdapter,
    adapter_for,
    generator_card,
    get_discriminator,
    get_generator,
    list_generators,
    load_generator,
    load_user_generator,
)
from converters.spec import ModelSpec


def _spec(c: int, h: int, w: int, **kw) -> ModelSpec:
    return ModelSpec(input_name="x", output_name="y", channels=c, height=h, width=w, num_classes=10, **kw)


@pytest.fixture(scope="module")
def generator() -> torch.nn.Module:
    return get_generator()


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("the generator tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_bundled_generator_loads_offline_fast(no_network: None) -> None:
    assert DEFAULT_GENERATOR in list_generators()
    start = time.perf_counter()
    G = get_generator()
    D = get_discriminator()
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"loading took {elapsed:.2f}s"  # about 0.05 s on an idle core; slack for a busy CI
    z = torch.randn(5, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = G(z)
        scores = D(x)
    assert x.shape == (5, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert scores.shape == (5,) and torch.isfinite(scores).all()
    assert not any(p.requires_grad for p in G.parameters()) and not G.training
    # eval mode: a sample depends only on its own latent, not on the batch
    with torch.no_grad():
        assert torch.allclose(G(z[:1]), x[:1], atol=1e-5)


def test_weights_are_small_and_pickle_free() -> None:
    from importlib import resources

    folder = resources.files("auditor.generators.weights")
    files = [f for f in folder.iterdir() if f.name.endswith(".npz")]
    assert {f.name for f in files} >= {f"{DEFAULT_GENERATOR}.G.npz", f"{DEFAULT_GENERATOR}.D.npz"}
    assert sum(f.stat().st_size for f in files) < 20 * 1024 * 1024
    for f in files:
        with np.load(f, allow_pickle=False) as data:  # raises on object arrays
            assert all(data[k].dtype.kind == "f" or "num_batches" in k for k in data.files)


def test_card_describes_data_and_rebuild() -> None:
    card = generator_card()
    for key in ("data", "architecture", "training", "rebuild_command", "licence"):
        assert key in card, key
    assert "cifar" not in card["data"]["dataset"].lower()


def test_generator_modules_do_not_import_data_package() -> None:
    import subprocess

    code = "import sys, auditor.generators as g; g.get_generator(); print('auditor.data' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "spec",
    [
        _spec(1, 28, 28),
        _spec(3, 32, 32, mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261)),
        _spec(3, 64, 64, value_range=(0.0, 255.0), layout="NHWC"),
    ],
    ids=["1x28x28", "3x32x32-normalized", "3x64x64-0-255-NHWC"],
)
def test_adapter_shapes_ranges_channels(generator: torch.nn.Module, spec: ModelSpec) -> None:
    adapt = adapter_for(generator, spec)
    z = torch.randn(4, generator.z_dim, requires_grad=True)
    images01 = adapt.images01(generator(z))
    assert images01.shape == (4, spec.channels, spec.height, spec.width)
    assert images01.min() >= 0 and images01.max() <= 1
    model_input = adapt(generator(z))
    expected = (4, spec.height, spec.width, spec.channels) if spec.layout == "NHWC" else (4, *spec.image_shape)
    assert model_input.shape == expected
    assert torch.allclose(model_input, spec.to_model_input(images01))
    lo, hi = spec.value_range
    if spec.mean is None:
        assert model_input.min() >= lo and model_input.max() <= hi
    # differentiable: the inversion backpropagates into z
    model_input.square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_adapter_luminance_and_range() -> None:
    spec = _spec(1, 32, 32)
    red = torch.full((1, 3, 32, 32), -1.0)
    red[:, 0] = 1.0  # pure red in [-1, 1]
    out = SpecAdapter(spec, (-1.0, 1.0)).images01(red)
    assert out.shape == (1, 1, 32, 32) and torch.allclose(out, torch.full_like(out, 0.299), atol=1e-6)
    gray = torch.rand(2, 1, 16, 16)
    rgb = SpecAdapter(_spec(3, 32, 32), (0.0, 1.0)).images01(gray)
    assert rgb.shape == (2, 3, 32, 32)
    assert torch.allclose(rgb[:, 0], rgb[:, 2])


# ---------------------------------------------------------------- user generators
def _tiny_onnx_generator(path: Path, z_dim: int = 8, rank: int = 2) -> Path:
    """A random linear generator: z -> Gemm -> Reshape (N, 3, 4, 4) -> Tanh, or a ConvTranspose for 4D latents."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    if rank == 2:
        inits += [numpy_helper.from_array(rng.normal(size=(z_dim, 48)).astype(np.float32), "W"),
                  numpy_helper.from_array(rng.normal(size=(48,)).astype(np.float32), "b"),
                  numpy_helper.from_array(np.array([-1, 3, 4, 4], dtype=np.int64), "shape")]
        nodes += [helper.make_node("Gemm", ["z", "W", "b"], ["h"]),
                  helper.make_node("Reshape", ["h", "shape"], ["r"]),
                  helper.make_node("Tanh", ["r"], ["img"])]
        z_shape = ["N", z_dim]
    else:
        inits += [numpy_helper.from_array(rng.normal(size=(z_dim, 3, 4, 4)).astype(np.float32), "W")]
        nodes += [helper.make_node("ConvTranspose", ["z", "W"], ["r"], kernel_shape=[4, 4]),
                  helper.make_node("Tanh", ["r"], ["img"])]
        z_shape = ["N", z_dim, 1, 1]
    graph = helper.make_graph(
        nodes, "tiny_gen",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, z_shape)],
        [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 3, 4, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("rank", [2, 4])
def test_user_onnx_generator_goes_through_same_path(tmp_path: Path, rank: int) -> None:
    import onnxruntime as ort

    path = _tiny_onnx_generator(tmp_path / "gen.onnx", rank=rank)
    G = load_generator(str(path))
    assert G.z_dim == 8 and G.image_shape == (3, 4, 4) and G.output_range == (-1.0, 1.0)
    z = torch.randn(3, 8)
    with torch.no_grad():
        ours = G(z).numpy()
    feed = z.numpy() if rank == 2 else z.numpy().reshape(3, 8, 1, 1)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"z": feed})[0]
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    for spec in (_spec(1, 28, 28), _spec(3, 32, 32), _spec(3, 64, 64)):
        zz = torch.randn(2, 8, requires_grad=True)
        out = adapter_for(G, spec)(G(zz))
        assert out.shape == (2, *spec.image_shape)
        out.sum().backward()
        assert zz.grad.abs().sum() > 0


def test_user_onnx_generator_rejects_bad_files(tmp_path: Path) -> None:
    from auditor.errors import AuditorError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(AuditorError):
        load_user_generator(bad)
    with pytest.raises(AuditorError):
        load_user_generator(tmp_path / "missing.onnx")
    with pytest.raises(AuditorError):
        load_generator("no-such-generator")


def test_user_torchscript_generator(tmp_path: Path) -> None:
    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.z_dim = 6
            self.fc = torch.nn.Linear(6, 1 * 8 * 8)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.fc(z)).view(-1, 1, 8, 8)

    path = tmp_path / "gen.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(path))
    G = load_generator(str(path), output_range=(0.0, 1.0))
    assert G.z_dim == 6 and G.image_shape == (1, 8, 8)
    out = adapter_for(G, _spec(3, 32, 32))(G(torch.randn(2, 6)))
    assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1


# ---------------------------------------------------------------- CLI
def test_cli_sample_and_info(tmp_path: Path) -> None:
    from PIL import Image

    from auditor.cli import main

    runner = CliRunner()
    out = tmp_path / "grid.png"
    result = runner.invoke(main, ["generator", "sample", "--n", "64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.size == (2 * (8 * 34 + 2), 2 * (8 * 34 + 2))
    result = runner.invoke(main, ["generator", "info"])
    assert result.exit_code == 0 and "Tiny-ImageNet" in result.output
    result = runner.invoke(main, ["generator", "sample", "--generator", str(tmp_path / "none.onnx"), "-o", str(out)])
    assert result.exit_code == 2 and "does not exist" in result.output


# ---------------------------------------------------------------- quality-check helpers
def test_frechet_distance_and_nearest_neighbours() -> None:
    from auditor.generators.quality import auc, frechet_distance, nearest_neighbours

    rng = np.random.default_rng(0)
    a = rng.normal(size=(3000, 8))
    b = rng.normal(size=(3000, 8)) + 0.5
    assert abs(frechet_distance(a, a)) < 1e-6
    assert abs(frechet_distance(a, b) - 8 * 0.25) < 0.2  # mean shift 0.5 in 8 dimensions, same covariance
    ref = rng.random((50, 12)).astype(np.float32)
    queries = ref[[3, 17]] + 0.001
    index, dist = nearest_neighbours(queries, ref, chunk=7)
    assert list(index) == [3, 17] and (dist < 0.01).all()
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0


def test_grid_and_plot(tmp_path: Path) -> None:
    from PIL import Image

    from auditor.generators.images import line_plot, save_grid

    save_grid(torch.rand(10, 1, 28, 28), tmp_path / "g.png", nrow=5, scale=1)
    with Image.open(tmp_path / "g.png") as img:
        assert img.size == (5 * 30 + 2, 2 * 30 + 2) and img.mode == "RGB"
    line_plot({"a": ([0, 1, 2], [1.0, 0.5, 0.2])}, tmp_path / "p.png", title="t")
    assert (tmp_path / "p.png").stat().st_size > 0
