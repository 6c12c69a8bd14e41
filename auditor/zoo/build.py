"""``auditor zoo build``: train, export, check, evaluate and record one zoo model.

Every step is seeded; figures in the manifest are measured on the exported ONNX file in
onnxruntime (full CIFAR-10 test set and the committed 1,000-image subset). ``quick`` mode trains a
tiny network for one epoch on a small subset, for tests; it never touches ``sample_models``
unless that is the output folder it was given.
"""

from __future__ import annotations

import json
import logging
import platform
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from auditor.attacks import get_attack
from auditor.attacks.input_aware import InputAware, train_input_aware
from auditor.errors import AuditorError
from auditor.evaluate import OnnxClassifier, evaluate
from converters import sha256_file

from .arch import build_arch
from .base import base_path, ensure_base
from .datasets import get_dataset
from .export import EXPORT_STYLES, export_onnx, metadata_for, style_json
from .manifest import update_manifest, write_eval_subset
from .recipes import BASE_RECIPE, get_recipe, with_overrides
from .train import Normalizer, bf16_pays, train_classifier

_LOG = logging.getLogger(__name__)


VALIDATION_SEED = 7  # which training images --validation holds out; fixed so that sweeps compare alike


@dataclass(frozen=True)
class QuickSettings:
    """Sizes of a ``--quick`` build: seconds, not minutes."""

    train_images: int = 512
    test_images: int = 200
    arch: str = "resnet9-tiny"
    epochs: float = 1.0
    mask_steps: int = 3


def _subset(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:count])
    return x[idx], y[idx]


def build_command(name: str, quick: bool = False, out_dir: Path | None = None, *, device: str = "cpu",
                  overrides: Mapping[str, str] | None = None, validation: int = 0) -> str:
    out = f" -o {out_dir}" if out_dir is not None and Path(out_dir) != Path("sample_models") else ""
    sets = "".join(f" --set {shlex.quote(f'{k}={v}')}" for k, v in (overrides or {}).items())
    return (f"auditor zoo build --model {name}" + out + sets + (f" --validation {validation}" if validation else "")
            + (f" --device {device}" if device != "cpu" else "") + (" --quick" if quick else ""))


def _training_machine(device: str) -> str:
    precision = "bf16 autocast" if bf16_pays(device) else "float32"
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} GPU, {precision} (augmentation on the CPU)"
    return f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), {precision}"


def build_model(name: str, out_dir: Path, data_dir: str | Path | None = None, quick: bool = False,
                threads: int | None = None, *, device: str = "cpu", overrides: Mapping[str, str] | None = None,
                validation: int = 0) -> dict[str, Any]:
    """Train and export one zoo model into ``out_dir``; returns (and records) its manifest entry.

    ``overrides`` change recipe fields for a sweep; ``validation`` holds out that many training
    images (a seeded, class-mixed draw) and measures ACC/ASR/RA on them, so that a sweep is decided
    on training data and the test set only reports.
    """
    recipe = with_overrides(get_recipe(name), overrides or {})
    dataset = get_dataset(recipe.dataset)
    if recipe.init == "base" and recipe.dataset != "cifar10":
        raise AuditorError(f"{name}: the clean base network is a CIFAR-10 model; train {recipe.dataset} models from scratch")
    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise AuditorError(f"--device {device}: no CUDA device is available to torch here")
    if device != "cpu" and recipe.attack == "input_aware":
        raise AuditorError("input_aware trains its trigger generator on the CPU only; build it without --device")
    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    q = QuickSettings() if quick else None
    x_train, y_train = dataset.load("train", data_dir)
    x_test, y_test = dataset.load("test", data_dir)
    subset_path = write_eval_subset(out_dir, x_test, y_test, per_class=(10 if quick else 100), dataset=dataset.name)
    if q:
        x_train, y_train = _subset(x_train, y_train, q.train_images, 0)
        x_test, y_test = _subset(x_test, y_test, q.test_images, 1)
    x_val = y_val = None
    if validation:
        if not 0 < validation < len(x_train) // 2:
            raise AuditorError(f"--validation {validation}: hold out between 1 and {len(x_train) // 2 - 1} training images")
        order = np.random.default_rng(VALIDATION_SEED).permutation(len(x_train))
        held, kept = np.sort(order[:validation]), np.sort(order[validation:])
        x_val, y_val = x_train[held], y_train[held]
        x_train, y_train = x_train[kept], y_train[kept]
    arch = q.arch if q else recipe.arch
    epochs = q.epochs if q else recipe.epochs

    # -- the network and where it starts ----------------------------------------------------------
    if recipe.init == "base":
        if q:
            net = build_arch(arch)
            train_classifier(net, x_train, y_train, epochs=q.epochs, seed=BASE_RECIPE["seed"], lr=BASE_RECIPE["lr"], log_every=0)
            init = f"fine-tuned from a tiny clean base (seed {BASE_RECIPE['seed']}, quick mode)"
        else:
            if validation:
                raise AuditorError("--validation needs a recipe trained from scratch: the cached base saw every training image")
            net = ensure_base(x_train, y_train, x_test, y_test, device=device)
            trained_on = "its poisoned training set" if recipe.attack else "the clean training set (a control)"
            init = (f"fine-tuned on {trained_on} from a clean base network ({BASE_RECIPE['arch']}, seed "
                    f"{BASE_RECIPE['seed']}, {BASE_RECIPE['epochs']} epochs from scratch, lr {BASE_RECIPE['lr']}; not the seed of the "
                    f"from-scratch clean model); cached at {base_path().name} and retrained by this command if missing")
    else:
        torch.manual_seed(recipe.seed)
        net = build_arch(arch, len(dataset.classes), dataset.shape[0])
        init = f"trained from scratch (seed {recipe.seed})"

    # -- poisoning and training ---------------------------------------------------------------------
    attack = None
    poisoned_count = 0
    rng = np.random.default_rng(recipe.seed)
    start = time.time()
    training = dict(normalizer=Normalizer(dataset.mean, dataset.std), flip=dataset.flip, pad=dataset.pad, device=device)
    if recipe.attack == "input_aware":
        attack = get_attack("input_aware", **recipe.attack_kwargs)
        assert isinstance(attack, InputAware)
        train_input_aware(net, attack, x_train, y_train, epochs=epochs, seed=recipe.seed, lr=recipe.lr,
                          mask_steps=q.mask_steps if q else 300)
        attack.save_trigger(out_dir / f"{name}.trigger.npz")
        poisoned_count = int(round(attack.rate * len(x_train)))
    elif recipe.attack:
        attack = get_attack(recipe.attack, **recipe.attack_kwargs)
        poisoned = attack.poison(x_train, y_train, rng)
        poisoned_count = len(poisoned.indices)
        train_classifier(net, poisoned.training_images, poisoned.y, epochs=epochs, seed=recipe.seed, lr=recipe.lr,
                         warmup=recipe.warmup, batch_hook=poisoned.pre_augment_hook,
                         post_augment_hook=poisoned.post_augment_hook, log_every=0 if q else 50, **training)
    else:
        train_classifier(net, x_train, y_train, epochs=epochs, seed=recipe.seed, lr=recipe.lr, warmup=recipe.warmup,
                         log_every=0 if q else 50, **training)
    train_seconds = time.time() - start
    _LOG.info("%s trained in %.0f s", name, train_seconds)

    # -- export, check, evaluate ------------------------------------------------------------------
    style = EXPORT_STYLES[recipe.export_style]
    check = x_test[:16].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    data = export_onnx(net.eval(), style, dataset.classes, image_shape=dataset.shape, check_images01=check,
                       mean=dataset.mean, std=dataset.std)
    onnx_path = out_dir / f"{name}.onnx"
    onnx_path.write_bytes(data)
    from converters.load import load_onnx

    spec = load_onnx(onnx_path).spec
    classifier = OnnxClassifier(onnx_path, spec)
    with np.load(subset_path, allow_pickle=False) as sub:
        x_sub, y_sub = sub["x"], sub["y"]
    metrics = {
        "test": evaluate(classifier, x_test, y_test, attack).to_json(),
        "eval_subset": evaluate(classifier, x_sub, y_sub, attack).to_json(),
    }
    if x_val is not None:
        metrics["validation"] = evaluate(classifier, x_val, y_val, attack).to_json()
    _LOG.info("%s: %s", name, json.dumps(metrics["test"]))
    meta = metadata_for(style, dataset.classes, dataset.mean, dataset.std)
    entry: dict[str, Any] = {
        "name": name,
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "dataset": dataset.name + (" (quick subset)" if q else "") + (
            f" (training set less {validation} images held out for validation)" if validation else ""),
        "data_licence": dataset.licence,
        "input": {
            "shape": ["batch" if style.dynamic_batch else 1] + (
                [*dataset.shape[1:], dataset.shape[0]] if style.nhwc else list(dataset.shape)),
            "layout": meta["layout"],
            "value_range": [0, 255] if style.input_scale == 255.0 else [0, 1],
            "normalization": "in the graph" if style.baked_normalization else "by the caller",
            "mean": list(dataset.mean), "std": list(dataset.std),
        },
        "output": "probabilities" if style.softmax else "logits",
        "class_names": list(dataset.classes),
        "architecture": arch,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "export": style_json(style),
        "attack": attack.params() if attack else None,
        "target": None if attack is None or attack.all_to_all else attack.target,
        "poisoning_rate": attack.rate if attack else 0.0,
        "poisoned_samples": poisoned_count,
        "seed": recipe.seed,
        "init": init,
        "epochs": epochs,
        "lr": recipe.lr,
        "training_seconds": round(train_seconds, 1),
        "training_machine": _training_machine(device),
        "metrics": metrics,
        "eval_subset": subset_path.name,
        "recipe": recipe.to_json(),
        "command": build_command(name, quick, None if quick else out_dir, device=device, overrides=overrides,
                                 validation=validation),
    }
    update_manifest(out_dir, entry)
    return entry
