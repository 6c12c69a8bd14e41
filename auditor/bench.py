"""``auditor bench``: every defense configuration over the CIFAR-10 zoo, measured on real data.

Measurement code (it reads CIFAR-10 and Tiny-ImageNet), never imported by the audit path.
Rows per model: no defense; SMI + I-BAU (ours); no-stability inversion + I-BAU; pixel inversion +
I-BAU; fine-tuning on SMI samples; CLP; I-BAU on 2,500 public Tiny-ImageNet images labelled by the
suspect model itself (no inversion); I-BAU on 2,500 real clean CIFAR-10 *training* images (the
reference); ablations of ours: I-BAU without the CLP step, CLP *before* I-BAU, I-BAU + CLP without the
ANP step, and ANP alone.
Metrics on the CIFAR-10 *test* set: ACC, ASR, RA, DER, wall time.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .inversion import InversionConfig
from .purify.guard import GuardConfig
from .pipeline import AuditOptions, audit

CONFIGS = ("none", "smi_ibau", "nostab_ibau", "pixels_ibau", "smi_finetune", "clp", "public_ibau", "clean_ibau",
           "smi_ibau_noclp", "smi_clp_ibau", "smi_ibau_noanp", "smi_anp")
# The config keys are kept for the committed bench JSON; "ibau" in a key means the default recipe
# (auditor.purify.recipe: patch, signal, I-BAU rounds, CLP, ANP, channel zeroing), as the labels say.
LABELS = {
    "none": "no defense", "smi_ibau": "SMI + default recipe (ours)",
    "nostab_ibau": "no-stability inversion + default recipe", "pixels_ibau": "pixel inversion + default recipe",
    "smi_finetune": "SMI + fine-tuning", "clp": "CLP (data-free)",
    "public_ibau": "Tiny-ImageNet (self-labelled) + default recipe", "clean_ibau": "2,500 clean CIFAR-10 + default recipe",
    "smi_ibau_noclp": "SMI + default recipe without CLP and ANP", "smi_clp_ibau": "SMI + CLP first, then the recipe without ANP",
    "smi_ibau_noanp": "SMI + default recipe without ANP", "smi_anp": "SMI + ANP alone",
}


def der(before: dict, after: dict) -> float | None:
    """Defense effectiveness rating: (max(0, dASR) - max(0, dACC) + 1) / 2."""
    if before.get("asr") is None or after.get("asr") is None:
        return None
    return (max(0.0, before["asr"] - after["asr"]) - max(0.0, before["acc"] - after["acc"]) + 1) / 2


@dataclass
class BenchSetup:
    zoo: Path
    out: Path
    configs: tuple[str, ...] = CONFIGS
    models: tuple[str, ...] | None = None
    n_reference: int = 2500  # public / clean images, the clean-data budget defenses usually assume
    eval_limit: int | None = None  # None: the full CIFAR-10 test set
    seed: int = 0
    inversion: InversionConfig = InversionConfig()
    data_dir: str | None = None


def run_bench(setup: BenchSetup, log: Callable[[str], None] = print) -> dict[str, Any]:
    from .attacks import attack_from_params
    from .data.cifar10 import load_cifar10
    from .data.tinyimagenet import load_tinyimagenet
    from .evaluate import OnnxClassifier, evaluate
    from .zoo.manifest import read_manifest
    from converters import load_onnx

    manifest = read_manifest(setup.zoo)
    entries = [m for m in manifest["models"] if setup.models is None or m["name"] in setup.models]
    x_test, y_test = load_cifar10("test", setup.data_dir)
    if setup.eval_limit:
        x_test, y_test = x_test[: setup.eval_limit], y_test[: setup.eval_limit]
    rng = np.random.default_rng(setup.seed)
    x_train, y_train = load_cifar10("train", setup.data_dir)
    clean_idx = rng.choice(len(x_train), setup.n_reference, replace=False)
    x_public, _, _ = load_tinyimagenet(setup.data_dir)
    public_idx = rng.choice(len(x_public), setup.n_reference, replace=False)
    setup.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        model = setup.zoo / entry["file"]
        spec = load_onnx(model).spec
        attack = attack_from_params(entry["attack"], base_dir=setup.zoo) if entry.get("attack") else None

        def measure(path: Path) -> dict:
            return evaluate(OnnxClassifier(path, spec), x_test, y_test, attack).to_json()

        before = measure(model)
        rows.append({"model": entry["name"], "config": "none", **row_metrics(before, before), "seconds": 0.0})
        log(f"{entry['name']}: no defense ACC {before['acc']:.3f} ASR {before.get('asr')}")
        folder = setup.out / entry["name"]
        for config in setup.configs:
            if config == "none":
                continue
            reused = _reused_samples(config, folder)
            started = time.perf_counter()
            options = _options(config, setup, folder, model, spec, x_train[clean_idx], y_train[clean_idx],
                               x_public[public_idx])
            target = folder / f"{config}.onnx"
            result = audit(model, target, folder / config, options)
            after = measure(target)
            seconds = time.perf_counter() - started
            if reused is not None:
                seconds += _inversion_seconds(reused)
            row = {"model": entry["name"], "config": config, **row_metrics(before, after), "seconds": round(seconds, 1),
                   "guard": result.report["purification"]["status"]}
            rows.append(row)
            log(f"{entry['name']}: {config} ACC {row['acc']:.3f} ASR {row['asr']} DER {row['der']} ({seconds:.0f}s)")
            (setup.out / "bench.json").write_text(json.dumps(_document(setup, rows), indent=2))
    document = _document(setup, rows)
    (setup.out / "bench.json").write_text(json.dumps(document, indent=2))
    (setup.out / "bench.md").write_text(render_table(document))
    return document


def row_metrics(before: dict, after: dict) -> dict:
    """ACC / ASR / RA after, and DER against before: the figures of one table row."""
    value = der(before, after)
    return {"acc": after["acc"], "asr": after.get("asr"), "ra": after.get("ra"),
            "der": None if value is None else round(value, 4)}


def _to_tensor(x_uint8_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x_uint8_nhwc).permute(0, 3, 1, 2).float() / 255


def _options(config: str, setup: BenchSetup, folder: Path, model: Path, spec, x_clean, y_clean, x_public) -> AuditOptions:
    smi_cache = folder / "smi.npz"
    # guarded rows detect and re-scan as the audit does: the guard's prior threshold depends on the verdict
    # before purification (GuardConfig.for_verdict); the unguarded references below do not
    base = AuditOptions(seed=setup.seed, inversion=setup.inversion, overwrite=True, rescan=True)
    if config == "smi_ibau":
        return replace(base, synthetic=_cached_smi(model, smi_cache, setup))
    if config == "nostab_ibau":
        nostab = _cached_smi(model, folder / _SAMPLE_FILES[config], setup, stability=False)
        return replace(base, inversion=replace(setup.inversion, stability=False), synthetic=nostab)
    if config == "pixels_ibau":
        # pixels=True as well: the ablation has no generator, so no generator anchors or prior probe either
        return replace(base, pixels=True,
                       synthetic=_cached_smi(model, folder / _SAMPLE_FILES[config], setup, pixels=True))
    ablations = {"smi_clp_ibau": {"steps": ("clp", "patch", "signal", "ibau", "channels")},
                 "smi_ibau_noclp": {"steps": ("patch", "signal", "ibau", "channels")},
                 "smi_ibau_noanp": {"steps": ("patch", "signal", "ibau", "clp", "channels")}}
    if config in ablations:
        return replace(base, synthetic=_cached_smi(model, smi_cache, setup), purifier_config=ablations[config])
    if config in ("smi_finetune", "clp", "smi_anp"):
        synthetic = _cached_smi(model, smi_cache, setup)
        method = {"smi_finetune": "finetune", "clp": "clp", "smi_anp": "anp"}[config]
        return replace(base, method=method, synthetic=synthetic)
    # The references run I-BAU as published, without our guard: its prior probe is calibrated for SMI
    # samples and rejected every real-data run on cifar10_badnets (prior agreement 0.73-0.78) down to a
    # learning rate that changed nothing (ASR 91% -> 85%), which says nothing about what clean data can do.
    unguarded = GuardConfig(min_agreement=0.0, min_prior_agreement=0.0, max_backoffs=0)
    if config == "public_ibau":
        images = _to_tensor(x_public)
        labels = _self_labels(model, images)
        return replace(base, clean_data=(images, labels), synthetic=_cached_smi(model, smi_cache, setup),
                       guard=unguarded, rescan=False)
    if config == "clean_ibau":
        return replace(base, clean_data=(_to_tensor(x_clean), torch.from_numpy(y_clean).long()),
                       synthetic=_cached_smi(model, smi_cache, setup), guard=unguarded, rescan=False)
    raise ValueError(f"unknown bench config {config!r}")


# Where each ablation's samples are cached in a model's folder (``smi.npz`` for everything else).
_SAMPLE_FILES = {"pixels_ibau": "pixels.npz", "nostab_ibau": "nostab.npz"}


def _cached_smi(model: Path, path: Path, setup: BenchSetup, pixels: bool = False, stability: bool = True) -> Path:
    """Inverted samples made once per model and shared by the runs that use them (SMI, or the
    ``--pixels`` and ``--no-stability`` ablations, which ``benchmarks/smi_stability.py`` also makes
    and can leave here, so the bench purifies the very sets that table scores)."""
    if not path.exists():
        from .inversion import invert
        from .model import Classifier

        inversion = replace(setup.inversion, seed=setup.seed, stability=stability)
        synth = invert(Classifier.from_onnx(model), inversion, pixels=pixels)
        path.parent.mkdir(parents=True, exist_ok=True)
        synth.save(path)
    return path


def _reused_samples(config: str, folder: Path) -> Path | None:
    """The samples file whose inversion time a row must add: a row that inverts counts the inversion once,
    in its own time if it makes the samples here, from the file's record if an earlier run (or row) made them."""
    if not config.startswith(("smi_", "pixels_", "nostab_")):
        return None
    path = folder / _SAMPLE_FILES.get(config, "smi.npz")
    return path if path.exists() else None


def _inversion_seconds(path: Path) -> float:
    from .inversion import SynthSet

    return float(SynthSet.load(path).summary.get("seconds", {}).get("total", 0.0))


@torch.no_grad()
def _self_labels(model: Path, images: torch.Tensor) -> torch.Tensor:
    from .model import Classifier

    return Classifier.from_onnx(model).predict(images)


def _document(setup: BenchSetup, rows: list[dict]) -> dict:
    return bench_document(
        rows,
        command="auditor bench " + " ".join(f"--config {c}" for c in setup.configs),
        machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}",
        test_set="CIFAR-10 test" + (f" (first {setup.eval_limit})" if setup.eval_limit else " (10,000)"),
        reference_data=f"{setup.n_reference} CIFAR-10 training / Tiny-ImageNet images",
    )


def bench_document(rows: list[dict], *, command: str, machine: str, test_set: str, reference_data: str) -> dict:
    """The ``bench.json`` layout that ``--merge`` reads, dated now; shared with scripts whose rows come from
    elsewhere (``benchmarks/audit_test_set.py`` turns finished audits into the matrix's SMI column)."""
    return {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
            "test_set": test_set, "reference_data": reference_data, "rows": rows}


def merge_documents(documents: list[dict]) -> dict:
    """Rows of several bench runs in one table (model order of first appearance, then CONFIGS order);
    a later run's row replaces an earlier one for the same model and defense."""
    rows: dict[tuple[str, str], dict] = {}
    models: list[str] = []
    for document in documents:
        for row in document["rows"]:
            if row["model"] not in models:
                models.append(row["model"])
            rows[(row["model"], row["config"])] = row
    order = {config: i for i, config in enumerate(CONFIGS)}
    merged = sorted(rows.values(), key=lambda r: (models.index(r["model"]), order.get(r["config"], len(order))))
    return {
        "command": "; ".join(dict.fromkeys(d["command"] for d in documents)),
        "date": ", ".join(dict.fromkeys(d["date"] for d in documents)),
        "machine": "; ".join(dict.fromkeys(d["machine"] for d in documents)),
        "test_set": "; ".join(dict.fromkeys(d["test_set"] for d in documents)),
        "reference_data": documents[0]["reference_data"] if documents else "",
        "rows": merged,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def render_table(document: dict) -> str:
    lines = [f"# Benchmark ({document['date']})", "",
             f"Command: `{document['command']}`; machine: {document['machine']}; metrics on {document['test_set']}.", "",
             "| model | defense | ACC | ASR | RA | DER | seconds | guard |", "|---|---|---|---|---|---|---|---|"]
    for row in document["rows"]:
        lines.append(f"| {row['model']} | {LABELS.get(row['config'], row['config'])} | {_pct(row['acc'])} | "
                     f"{_pct(row['asr'])} | {_pct(row['ra'])} | {_pct(row['der'])} | {row['seconds']} | "
                     f"{row.get('guard', '-')} |")
    return "\n".join(lines) + "\n"


def render_matrix(document: dict) -> str:
    """One row per model, one column per defense: "ASR / ACC" (test set, %), then the means over the
    backdoored models and the clean models' accuracy drop, so the defenses compare at a glance. A mean
    is left out ("n/a") where a defense lacks a backdoored model's row: a partial mean would flatter it."""
    rows = document["rows"]
    configs = [c for c in CONFIGS if any(r["config"] == c for r in rows)]
    models = list(dict.fromkeys(r["model"] for r in rows))
    cell = {(r["model"], r["config"]): r for r in rows}
    backdoored = [m for m in models if any(r["model"] == m and r["asr"] is not None for r in rows)]
    clean = [m for m in models if m not in backdoored]
    lines = ["| model | " + " | ".join(LABELS.get(c, c) for c in configs) + " |",
             "|---|" + "---|" * len(configs)]
    for model in models:
        values = [cell.get((model, c)) for c in configs]
        lines.append(f"| {model} | " + " | ".join(
            "not run" if r is None else (f"{_pct(r['asr'])} / {_pct(r['acc'])}" if r["asr"] is not None else _pct(r["acc"]))
            for r in values) + " |")

    def mean(config: str, key: str, models_: list[str], relative_to_none: bool = False) -> str:
        picked = [cell.get((m, config)) for m in models_]
        if not models_ or any(r is None for r in picked):
            return "n/a"
        if relative_to_none:
            if any((m, "none") not in cell for m in models_):
                return "n/a"
            return f"{sum(100 * (cell[(m, 'none')]['acc'] - r['acc']) for m, r in zip(models_, picked)) / len(models_):.1f}"
        return f"{sum(100 * r[key] for r in picked) / len(picked):.1f}"

    lines.append("| **mean ASR, backdoored** | " + " | ".join(mean(c, "asr", backdoored) for c in configs) + " |")
    lines.append("| **mean DER, backdoored** | " + " | ".join(mean(c, "der", backdoored) for c in configs) + " |")
    lines.append("| **mean ACC drop, backdoored** | "
                 + " | ".join(mean(c, "acc", backdoored, relative_to_none=True) for c in configs) + " |")
    lines.append("| **mean ACC drop, clean** | "
                 + " | ".join(mean(c, "acc", clean, relative_to_none=True) for c in configs) + " |")
    return "\n".join(lines) + "\n"
