"""Patch-search flip rate on the all-to-all model's SMI, no-stability and pixel sets (runs/smi_final), two search seeds each.

    python benchmarks/patch_sets.py smi nostab pixels
"""
import json, sys
from pathlib import Path
import torch
from auditor.inversion import SynthSet
from auditor.model import Classifier
from auditor.purify.ibau import IBAUConfig
from auditor.universal import untargeted_patch
torch.set_num_threads(1)
c = IBAUConfig()
name = "cifar10_badnets_all2all"
clf = Classifier.from_onnx(Path("sample_models") / f"{name}.onnx").eval()
for p in clf.parameters(): p.requires_grad_(False)
for kind in sys.argv[1:]:
    train, _ = SynthSet.load(Path(f"runs/smi_final/{name}-{kind}.npz")).split(0.1, seed=0)
    for seed in (1, 2):
        s = untargeted_patch(clf, train.images01, pixels=c.patch_pixels, steps=c.patch_steps, l1=c.patch_l1,
                             batch_size=c.batch_size, generator=torch.Generator().manual_seed(seed))
        print(json.dumps({"set": kind, "seed": seed, "flip": round(s.flip_rate, 4), "box": s.box}), flush=True)
