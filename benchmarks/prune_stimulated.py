"""Probe: does zeroing the channels that channel stimulation blames remove the backdoor?

The stimulation detector (``auditor.detect.stimulation``) names, for the suspected class, the hidden
channel that sends the most other-class samples into it. ABS and neuron pruning suggest that such
a channel carries the trigger. This zeroes the top ``--channels`` channels (ranked by the share
they send into the suspected class at the detector's stop level) of that convolution in the
converted graph, and measures ACC / ASR / RA on the committed evaluation subset (CIFAR-10 test
images: measurement only; the channels are chosen from synthetic samples).

    python benchmarks/prune_stimulated.py cifar10_input_aware --smi 'runs/smi_scan/{model}.npz' --channels 1,2,4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from auditor.attacks import attack_from_params
from auditor.detect import ChannelStimulation
from auditor.evaluate import evaluate
from auditor.inversion import SynthSet
from auditor.model import Classifier


class TorchPredictor:
    """What ``auditor.evaluate.evaluate`` needs (``spec`` and ``predict`` on uint8 NHWC) from the torch graph."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier, self.spec = classifier, classifier.spec

    def predict(self, x_uint8_nhwc: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(x_uint8_nhwc.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
        return self.classifier.predict(x).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--zoo", type=Path, default=Path("sample_models"))
    parser.add_argument("--smi", required=True)
    parser.add_argument("--channels", default="1,2,4,8")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = json.loads((args.zoo / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["name"] == args.model)
    attack = attack_from_params(entry["attack"], args.zoo) if entry.get("attack") else None
    data = np.load(args.zoo / manifest["eval_subset"]["file"])
    clf = Classifier.from_onnx(args.zoo / entry["file"]).eval()
    synth = SynthSet.load(args.smi.format(model=args.model))
    detector = ChannelStimulation()
    result = detector.detect(clf, synth.images01.float(), synth.labels)
    suspect, index = result.top()
    level = result.summary["level"]
    layer = dict(clf.network.named_modules())[result.summary["layer"]]
    shares = result.images["shares"]  # (channels, K) at the level where the detector stopped
    ranked = shares[:, suspect].argsort(descending=True)
    base = evaluate(TorchPredictor(clf), data["x"], data["y"], attack)
    print(f"{args.model}: suspected class {suspect} (index {index:.2f}, level {level:g}); top channels "
          f"{ranked[:8].tolist()} sending {[round(float(shares[c, suspect]), 2) for c in ranked[:8]]}")
    print(f"  none pruned : ACC {base.acc:.3f} ASR {base.asr} RA {base.ra}")
    weight = layer.weight.detach().clone()
    bias = layer.bias.detach().clone() if layer.bias is not None else None
    for count in (int(c) for c in args.channels.split(",")):
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.weight[ranked[:count]] = 0
            if bias is not None:
                layer.bias.copy_(bias)
                layer.bias[ranked[:count]] = 0
        after = evaluate(TorchPredictor(clf), data["x"], data["y"], attack)
        print(f"  {count} pruned   : ACC {after.acc:.3f} ASR {after.asr} RA {after.ra}", flush=True)


if __name__ == "__main__":
    main()
