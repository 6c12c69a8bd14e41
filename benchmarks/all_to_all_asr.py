"""Why all-to-all ASR stays below clean accuracy: ASR split by whether the clean image is classified right.

An all-to-all backdoor maps y to y+1, so the model must recognise y before the trigger can move it.
This prints, for each ONNX model given, on the full CIFAR-10 test set in onnxruntime: ACC, ASR, ASR on
the images whose clean version is classified correctly / wrongly, and how often the prediction on the
triggered image is the clean prediction plus one.

    python benchmarks/all_to_all_asr.py sample_models/cifar10_badnets_all2all.onnx
"""

from __future__ import annotations

import sys

from auditor.attacks import get_attack
from auditor.data.cifar10 import load_cifar10
from auditor.evaluate import OnnxClassifier
from converters.load import load_onnx


def main(paths: list[str]) -> None:
    x, y = load_cifar10("test")
    attack = get_attack("badnets_all2all")
    triggered = attack.apply(x)
    target = attack.target_label(y)
    print("| model | ACC | ASR | ASR, clean right | ASR, clean wrong | triggered = clean prediction + 1 |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        classifier = OnnxClassifier(path, load_onnx(path).spec)
        clean, hit = classifier.predict(x), classifier.predict(triggered)
        right = clean == y
        print(f"| {path} | {right.mean():.4f} | {(hit == target).mean():.4f} | {(hit[right] == target[right]).mean():.4f} "
              f"| {(hit[~right] == target[~right]).mean():.4f} | {(hit == attack.target_label(clean)).mean():.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["sample_models/cifar10_badnets_all2all.onnx"])
