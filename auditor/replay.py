"""Re-run only the part of a converted network that lies downstream of one layer.

Why: a detector that edits one hidden layer's output many times on the same samples (channel
stimulation: every channel at every level) would otherwise recompute the unchanged layers in front
of it on every pass. onnx2torch produces ``torch.fx`` graphs, so the values of every node that does
not depend on the layer can be computed once and handed to ``torch.fx.Interpreter`` as its initial
environment; it then evaluates only the rest (skip connections that bypass the layer included).

Where the network is not an fx graph, or calls the layer more than once, or the replayed logits do
not reproduce the full forward pass, the replay falls back to full passes with a forward hook, so
callers never need to know which path ran.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, fx, nn

from .model import Classifier


def predictions_and_features(classifier: Classifier, x: Tensor, layer: nn.Module) -> tuple[Tensor, Tensor]:
    """The model's own predictions on ``x`` and ``layer``'s output on the way, in one forward pass (feature
    reach, and the replay where it falls back to full passes)."""
    captured: dict[str, Tensor] = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("features", o.detach()))
    try:
        with torch.no_grad():
            reference = classifier(x).argmax(1)
    finally:
        handle.remove()
    return reference, captured["features"]


class _Recorder(fx.Interpreter):
    """Keeps every node's value (the default interpreter frees them after their last use)."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module, garbage_collect_values=False)


class DownstreamReplay:
    """Logits of ``classifier`` on fixed samples ``images01`` for any replacement of ``layer_name``'s output.

    ``features`` is the layer's output on the samples and ``reference`` the model's own predictions;
    ``logits(edited)`` runs the network from the layer on with ``edited`` in place of ``features``.
    ``partial`` says whether only the downstream part runs (False: the full-pass fallback)."""

    def __init__(self, classifier: Classifier, images01: Tensor, layer_name: str) -> None:
        self.classifier = classifier
        self.layer = classifier.network.get_submodule(layer_name)
        self.images01 = images01
        self._node: fx.Node | None = None
        self._cached: dict[fx.Node, Any] = {}
        network = classifier.network
        with torch.no_grad():
            if isinstance(network, fx.GraphModule):
                calls = [n for n in network.graph.nodes if n.op == "call_module" and n.target == layer_name]
                if len(calls) == 1:
                    self._prepare_partial(network, calls[0])
            if self._node is None:
                self.reference, self.features = predictions_and_features(classifier, images01, self.layer)
        self.partial = self._node is not None

    def _prepare_partial(self, network: fx.GraphModule, node: fx.Node) -> None:
        model_input = self.classifier.network_input(self.images01)
        recorder = _Recorder(network)
        full = self.classifier.logits_from_network_output(recorder.run(model_input))
        downstream = {node}
        for n in network.graph.nodes:  # topological order
            if any(arg in downstream for arg in n.all_input_nodes):
                downstream.add(n)
        self._model_input = model_input
        self._cached = {n: v for n, v in recorder.env.items() if n not in downstream}
        self._node = node
        self.features = recorder.env[node].detach()
        self.reference = full.argmax(1)
        # the replay must reproduce the full pass on unedited features, or it is not used
        if not torch.allclose(self._partial(self.features), full, rtol=1e-4, atol=1e-4):
            self._node, self._cached = None, {}

    def logits(self, edited: Tensor) -> Tensor:
        """Logits with ``edited`` (same shape as ``features``) as the layer's output."""
        with torch.no_grad():
            return self._partial(edited) if self._node is not None else self._hooked(edited)

    def _partial(self, edited: Tensor) -> Tensor:
        env = dict(self._cached)  # the interpreter frees values from its environment as it goes
        env[self._node] = edited
        out = fx.Interpreter(self.classifier.network).run(self._model_input, initial_env=env)
        return self.classifier.logits_from_network_output(out)

    def _hooked(self, edited: Tensor) -> Tensor:
        """Logits of a full pass with ``edited`` swapped in for the layer's output."""
        handle = self.layer.register_forward_hook(lambda _module, _inputs, _output: edited)
        try:
            return self.classifier(self.images01)
        finally:
            handle.remove()
