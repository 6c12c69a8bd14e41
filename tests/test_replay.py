"""Replaying a converted network from one hidden layer on gives the logits of a full pass with that
layer's output replaced, on every architecture of the converter matrix that has a convolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from auditor.detect.base import conv_at_depth
from auditor.model import Classifier
from auditor.replay import DownstreamReplay
from converters import ModelSpec, convert, load_onnx
from model_matrix import ARCHITECTURES, build, export

CASES = [(arch, exporter, batch) for arch in ARCHITECTURES if any(isinstance(m, nn.Conv2d) for m in build(arch).modules())
         for exporter, batch in (("legacy17", "dynamic"), ("dynamo18", "static"))]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replay_exports")


def _edit(features: torch.Tensor) -> torch.Tensor:
    edited = features.clone()
    edited[:, 0] += 3 * features[:, 0].std() + 0.5  # one channel raised, as stimulation does
    return edited


@pytest.mark.parametrize("arch,exporter,batch", CASES, ids=["-".join(c) for c in CASES])
@pytest.mark.parametrize("depth", [0.0, 1.0])
def test_replay_matches_a_full_pass_with_the_layer_replaced(arch: str, exporter: str, batch: str, depth: float,
                                                            export_dir: Path) -> None:
    path = export_dir / f"{arch}-{exporter}-{batch}.onnx"
    if not path.exists():
        export(build(arch), exporter, path, 4 if batch == "static" else None)
    loaded = load_onnx(path)
    classifier = Classifier(convert(loaded).module, loaded.spec).eval()
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    name, _ = conv_at_depth(classifier, depth, "test")
    replay = DownstreamReplay(classifier, x, name)
    assert replay.partial, "onnx2torch graphs are fx graphs: only the downstream part should run"
    with torch.no_grad():
        assert torch.equal(replay.reference, classifier(x).argmax(1))
        edited = _edit(replay.features)
        full = replay._hooked(edited)
    replayed = replay.logits(edited)
    assert torch.allclose(replayed, full, atol=1e-5), float((replayed - full).abs().max())
    assert not torch.allclose(replayed, replay.logits(replay.features), atol=1e-5), "the edit must change something"


class _TwiceCalled(nn.Module):
    """One convolution applied twice: no single node to replay from, so full passes must be used."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(torch.relu(self.conv(x))).mean((2, 3)))


def test_a_layer_called_twice_falls_back_to_full_passes() -> None:
    torch.manual_seed(0)
    spec = ModelSpec("input", "logits", 3, 16, 16, 10)
    x = torch.rand(5, 3, 16, 16)
    plain = _TwiceCalled().eval()
    for network in (plain, torch.fx.symbolic_trace(plain)):
        replay = DownstreamReplay(Classifier(network, spec), x, "conv")
        assert not replay.partial
        # the hook sees the layer's last call; replacing it changes the logits like a full pass would
        edited = _edit(replay.features)
        assert replay.logits(edited).shape == (5, 10)
        assert not torch.allclose(replay.logits(edited), replay.logits(replay.features))
