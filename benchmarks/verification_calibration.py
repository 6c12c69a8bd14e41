"""Calibration of the audit's verification against real outcomes: purified models of known ASR, and
whether the verification failed them.

For one backdoored model and seed, the script replays the audit's evidence (inversion, detection on
the original, the triggers it carries, the probe) once, then verifies several purified variants with
the audit's own code (``pipeline.verify_purified``) and measures each variant's real ACC and ASR in
onnxruntime, on test images and on a subset of training images:

* ``unchanged``: the original weights (what a purification that changed nothing ships);
* ``finetune`` and ``clp``: fine-tuning on the synthetic samples and data-free channel pruning (weak
  defenses);
* ``ibau``: the default recipe (``auditor.purify.recipe``), unguarded, and its weight change kept at 30% and 60% (``ibau@0.3``,
  ``ibau@0.6``: what the guard's back-off ships);
* ``pixels+ibau`` and ``public+ibau``: the default recipe on pixel-space inversion (no generator) and on public
  Tiny-ImageNet images labelled by the model (32x32 colour models only), the bench's weak sources;
* ``audit:<file>``: purified models written by real ``auditor audit`` runs (``--purified``).

The evidence comes from a scan-sized inversion (``pipeline.scan_inversion``: 20 samples per class),
not the audit's 250, so that a model costs minutes rather than an hour on a CPU; the fresh look is
the audit's own. A run writes one JSON per (model, seed); ``--collect`` merges them; ``--render``
writes the confusion tables into docs/verification.md and the scatter plot.

    python benchmarks/verification_calibration.py --model cifar10_badnets --zoo sample_models --seed 0 \\
        --out runs/calibration/cifar10_badnets_s0.json [--purified runs/main_s0/cifar10_badnets.purified.onnx]
    python benchmarks/verification_calibration.py --collect runs/calibration/*.json \\
        --audits docs/results/draws_main.json docs/results/draws_heldapart.json \\
        --write-json docs/results/verification_calibration.json
    python benchmarks/verification_calibration.py --render docs/results/verification_calibration.json \\
        --write docs/verification.md --plot docs/verification_calibration.png

Models of the zoo (``sample_models``) form the tuning split, whose figures use training images;
held-apart models (``heldapart_models``) form the report split, whose figures use test images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from markers import write_between  # noqa: E402

HIGH_ASR = 0.20  # a purified model at or above this real ASR must fail the verification
LOW_ASR = 0.05  # one at or below it should pass
GOALS = {"caught": 0.95, "false_alarm": 0.05}  # at least 95% of the former fail; at most 5% of the latter
INTERPOLATIONS = (0.3, 0.6)
TRAIN_SUBSET = 2000
START, END = "<!-- verification-calibration -->", "<!-- /verification-calibration -->"


def _split_of(zoo: Path) -> str:
    return "tune" if zoo.name == "sample_models" else "report"


def _images(dataset: str, split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from auditor.zoo.datasets import get_dataset

    x, y = get_dataset(dataset).load(split)
    if split == "train":
        keep = np.random.default_rng(seed).choice(len(x), size=min(TRAIN_SUBSET, len(x)), replace=False)
        x, y = x[np.sort(keep)], y[np.sort(keep)]
    return x, y


def calibrate_model(name: str, zoo: Path, seed: int, purified: list[Path], progress: bool = True,
                    save: Callable[[dict[str, Any]], None] | None = None,
                    evidence_size: str = "scan") -> dict[str, Any]:
    """The verification's verdict and the real figures of each purified variant of one model; ``save`` gets the
    result so far after each variant (``"complete": false`` until the last), so that a cut-off run keeps its rows.

    ``evidence_size`` "scan" gathers the evidence on a scan-sized inversion (affordable on a CPU), "audit" on the
    audit's own inversion (its default sample count), as a real audit does."""
    from auditor.attacks import attack_from_params
    from auditor.evaluate import OnnxClassifier, evaluate
    from auditor.purify import get_purifier
    from auditor.purify.guard import interpolate, restore, snapshot
    from auditor.pipeline import (AuditOptions, _convert_checked, _prior_samples, gather_evidence, scan_inversion,
                                  verify_purified)
    from auditor.inversion import invert
    from auditor.model import pick_device
    from auditor.zoo.manifest import find_entry
    from converters import save_onnx

    log = (lambda text: print(f"[{name} s{seed}] {text}", flush=True)) if progress else (lambda text: None)
    entry = find_entry(zoo / "manifest.json", name=name)
    attack = attack_from_params(entry["attack"], base_dir=zoo)
    inversion = scan_inversion() if evidence_size == "scan" else AuditOptions().inversion
    options = AuditOptions(seed=seed, inversion=dataclasses.replace(inversion, seed=seed))
    torch.manual_seed(seed)
    device = pick_device(options.device)
    started = time.perf_counter()
    loaded, converted, _parity, classifier = _convert_checked(zoo / entry["file"], options, device, "calibrate")
    synth = invert(classifier, options.inversion)
    train, holdout = synth.split(options.holdout_fraction, seed=seed)
    prior = _prior_samples(classifier, options, options.guard_prior_samples, seed + 7)
    evidence = gather_evidence(classifier, synth, holdout, prior, options.detection, seed)
    log(f"evidence in {time.perf_counter() - started:.0f} s: verdict {evidence.verdict.verdict}, "
        f"targets {list(evidence.verdict.suspected_targets)}, {len(evidence.triggers)} triggers carried")
    data = {"test": _images(entry["dataset"], "test"), "train": _images(entry["dataset"], "train", seed)}
    original_state = snapshot(classifier)

    def measure(onnx_path: Path, spec) -> dict[str, Any]:
        runner = OnnxClassifier(onnx_path, spec)
        return {split: {k: v for k, v in evaluate(runner, x, y, attack).to_json().items() if k in ("acc", "asr", "ra")}
                for split, (x, y) in data.items()}

    def variant(label: str, model, conv, spec) -> dict[str, Any]:
        begun = time.perf_counter()
        verification = verify_purified(model, evidence, options).verification
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "variant.onnx"
            save_onnx(conv, path, overwrite=True)
            real = measure(path, spec)
        row = {"variant": label, "verdict": verification.verdict, "passes": verification.passes,
               "decided_by": verification.decided_by,
               "max_residual": max((r.after for r in verification.residuals), default=0.0),
               "residuals": [r.to_json() for r in verification.residuals],
               "rescan": verification.rescan.verdict if verification.rescan else None, "real": real,
               "seconds": round(time.perf_counter() - begun, 1)}
        if save is not None:
            save(result(rows + [row], complete=False))
        log(f"{label}: ASR test {real['test']['asr']:.1%} train {real['train']['asr']:.1%} -> "
            f"{verification.verdict} (max residual {row['max_residual']:.2f}, re-scan {row['rescan']})")
        return row

    def result(rows: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
        return {"model": name, "zoo": zoo.name, "split": _split_of(zoo), "seed": seed, "attack": entry["attack"]["name"],
                "evidence": {"size": evidence_size, "per_class": options.inversion.per_class,
                             "verdict": evidence.verdict.verdict, "targets": list(evidence.verdict.suspected_targets),
                             "triggers": [t.label for t in evidence.triggers]},
                "rows": rows, "complete": complete, "seconds": round(time.perf_counter() - started, 1),
                "machine": {"cpus": torch.get_num_threads(), "processor": platform.machine(),
                            "torch": torch.__version__}}

    rows: list[dict[str, Any]] = []
    rows.append(variant("unchanged", classifier, converted, loaded.spec))
    # the variant labels keep their names in the committed JSON: "ibau" is the default recipe (get_purifier())
    for method in ("finetune", "clp", "ibau"):
        restore(classifier, original_state)
        purifier = get_purifier("recipe" if method == "ibau" else method)
        purifier.purify(classifier, train.images01, train.labels, generator=torch.Generator().manual_seed(seed))
        changed = snapshot(classifier)
        rows.append(variant(method, classifier, converted, loaded.spec))
        if method == "ibau":
            for alpha in INTERPOLATIONS:
                interpolate(classifier, original_state, changed, alpha)
                rows.append(variant(f"ibau@{alpha:g}", classifier, converted, loaded.spec))
    # the bench's other weak sources of samples: pixel-space inversion (no generator), and public images labelled
    # by the model itself (Tiny-ImageNet's holdout, which the generator never trained on; 32x32 colour models only)
    sources = {"pixels+ibau": lambda: _pixel_samples(classifier, options)}
    if tuple(loaded.spec.image_shape) == (3, 32, 32):
        sources["public+ibau"] = lambda: _public_samples(classifier, len(train), seed)
    for label, make in sources.items():
        restore(classifier, original_state)
        images, labels = make()
        get_purifier().purify(classifier, images, labels, generator=torch.Generator().manual_seed(seed))
        rows.append(variant(label, classifier, converted, loaded.spec))
    for path in purified:
        other_loaded, other_converted, _p, other = _convert_checked(path, options, device, "calibrate")
        rows.append(variant(f"audit:{path.parent.name}/{path.name}", other, other_converted, other_loaded.spec))
    return result(rows, complete=True)


def _pixel_samples(classifier, options) -> tuple[torch.Tensor, torch.Tensor]:
    from auditor.inversion import invert

    synth = invert(classifier, options.inversion, pixels=True)
    return synth.images01, synth.labels


def _public_samples(classifier, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from auditor.data.tinyimagenet import load_tinyimagenet_split
    from auditor.zoo.train import to_float_nchw

    x, _ = load_tinyimagenet_split("holdout")
    pick = np.sort(np.random.default_rng(seed).choice(len(x), size=count, replace=False))
    images = to_float_nchw(x[pick])
    return images, classifier.predict(images).cpu()


# -- tables and plot -----------------------------------------------------------------------------------


def _decides(residual: dict[str, Any]) -> bool:
    """Whether a recorded residual fails a model alone under the current rule (``auditor.verify``: a patch into
    one class does not); rows verified by the current code record it."""
    return residual.get("decides", not (residual["source"] == "patch" and residual["target"] is not None))


def _rescan_reasons(decided_by: list[str]) -> list[str]:
    return [reason for line in decided_by if line.startswith("the fresh re-scan")
            for reason in line.split(": ", 1)[1].split("; ")]


def _point(model: str, seed: int, split: str, variant: str, real: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """One purified model: its real figures, and the verification's verdict as run and under the current rule.
    Rows verified before the rule existed are re-judged from their recorded evidence: residuals that decide, and
    re-scan reasons other than a patch rule into one class."""
    residuals, decided_by = row.get("residuals") or [], row.get("decided_by") or []
    deciding = [r for r in residuals if _decides(r)]
    recorded_rule = any("decides" in r for r in residuals)
    votes = [r for r in _rescan_reasons(decided_by) if not ("-pixel patch flips" in r and "into class" in r)]
    fails_now = (not row["passes"]) if recorded_rule else (any(r["still_works"] for r in deciding) or bool(votes))
    found = [f"carried {r['source']}" for r in residuals if r["still_works"]]
    found += ["re-scan patch rule" for r in _rescan_reasons(decided_by) if "-pixel patch flips" in r][:1]
    found += ["re-scan vote" for r in _rescan_reasons(decided_by) if "anomaly index" in r][:1]
    return {"model": model, "seed": seed, "split": split, "variant": variant, "asr": real["asr"], "acc": real.get("acc"),
            "score": max((r["after"] for r in deciding), default=0.0),
            "residual_fails": any(r["still_works"] for r in deciding), "rescan": row.get("rescan"),
            "rescan_votes": bool(votes), "fails_as_run": not row["passes"], "fails": fails_now,
            "decided": ", ".join(found) or "nothing"}


def points(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per purified variant: its split, real ASR (training images for the tuning split, test
    images for the report split), verification score (the strongest deciding carried trigger's residual) and
    verdicts."""
    return [_point(case["model"], case["seed"], case["split"], row["variant"] + _in_brackets(_evidence_size(case)),
                   row["real"]["train" if case["split"] == "tune" else "test"], row)
            for case in document["cases"] for row in case["rows"]]


def _evidence_size(case: dict[str, Any]) -> str:
    """How a case's evidence was gathered, where it is not the scan-sized default ("" where it is)."""
    return "audit-size evidence" if case.get("evidence", {}).get("size") == "audit" else ""


def _case_words(case: dict[str, Any]) -> str:
    """"seed 0", with how the evidence was gathered and whether the case was cut off, where they apply."""
    cut = "" if case.get("complete", True) else "cut off"
    return ", ".join(filter(None, (f"seed {case['seed']}", _evidence_size(case), cut)))


def _in_brackets(words: str) -> str:
    return f" ({words})" if words else ""


def audit_points(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per real ``auditor audit`` run of a backdoored model (``--audits``: rows of benchmarks/audit_draws.py
    JSON): the audit's own evidence at full size, real ASR on test images."""
    return [_point(row["model"], row["seed"], "audit", f"audit ({row['threads']} thread(s))", row["after"], row)
            for row in document.get("audits", [])
            if (row.get("after") or {}).get("asr") is not None and row.get("passes") is not None]


def confusion(rows: list[dict[str, Any]], fails_key: str = "fails") -> dict[str, Any]:
    high = [r for r in rows if r["asr"] >= HIGH_ASR]
    low = [r for r in rows if r["asr"] <= LOW_ASR]
    middle = [r for r in rows if LOW_ASR < r["asr"] < HIGH_ASR]
    count = lambda group: (sum(bool(r[fails_key]) for r in group), len(group))  # noqa: E731
    return {"high": count(high), "middle": count(middle), "low": count(low)}


SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


def sweep(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The verdict each residual threshold would give (a carried trigger at or above it, or a re-scan that is not
    clean, fails): what the threshold is chosen on, from the tuning split alone. 1.01 leaves the re-scan alone."""
    out = []
    for threshold in SWEEP:
        marked = [{**r, "fails": r["score"] >= threshold or r["rescan_votes"]} for r in rows]
        out.append({"threshold": threshold, **confusion(marked)})
    return out


def _share(pair: tuple[int, int]) -> str:
    fails, total = pair
    return "-" if total == 0 else f"{fails}/{total} ({fails / total:.0%})"


def render(document: dict[str, Any]) -> str:
    rows = points(document)
    lines = ["| split (ASR measured on) | evidence | ASR >= 20%: fail | 5% < ASR < 20%: fail | ASR <= 5%: fail |",
             "|---|---|---|---|---|"]
    audits = audit_points(document)
    for split, label in (("tune", "tuning: zoo, training images"), ("report", "report: held-apart, test images"),
                         ("audit", "full audits: zoo and held-apart, test images")):
        subset = [r for r in rows + audits if r["split"] == split]
        if not subset:
            continue
        for key, evidence in (("fails", "verification, current rule"), ("fails_as_run", "verification as run"),
                              ("residual_fails", "deciding residuals alone")):
            table = confusion(subset, key)
            lines.append(f"| {label} | {evidence} | {_share(table['high'])} | {_share(table['middle'])} | "
                         f"{_share(table['low'])} |")
    tune = [r for r in rows if r["split"] == "tune"]
    if tune:
        lines += ["", "The residual threshold on the tuning split alone, under the current rule (a re-scan reason "
                  "that decides fails at every threshold; above 1 only the re-scan decides):", "",
                  "| residual threshold | ASR >= 20%: fail | 5% < ASR < 20%: fail | ASR <= 5%: fail |",
                  "|---|---|---|---|"]
        current = document.get("residual_threshold", 0.5)
        for row in sweep(tune):
            label = "re-scan alone" if row["threshold"] > 1 else f"{row['threshold']:g}"
            label += " (default)" if abs(row["threshold"] - current) < 1e-9 else ""
            lines.append(f"| {label} | {_share(row['high'])} | {_share(row['middle'])} | {_share(row['low'])} |")
    goal = (f"Goal: at least {GOALS['caught']:.0%} of purified models with real ASR >= {HIGH_ASR:.0%} fail; at most "
            f"{GOALS['false_alarm']:.0%} of those with ASR <= {LOW_ASR:.0%} fail.")
    cases = ", ".join(sorted({f"{c['model']} ({_case_words(c)})"
                              for c in document["cases"]}))
    misses = [r for r in rows + audits if r["asr"] >= HIGH_ASR and not r["fails"]]
    alarms = [r for r in rows + audits if r["asr"] <= LOW_ASR and r["fails"]]
    detail = ["", goal, "", f"Cases: {cases}; {len(rows)} purified variants, and {len(audits)} purified models of "
              "full audits.", ""]
    changed = [r for r in rows + audits if r["fails_as_run"] and not r["fails"]]
    for title, group in (("Missed (ASR >= 20%, passed)", misses), ("False alarms (ASR <= 5%, failed)", alarms),
                         ("Failed as run, passed under the current rule", changed)):
        detail.append(f"{title}: " + ("none." if not group else "; ".join(
            f"{r['model']} s{r['seed']} {r['variant']} (ASR {r['asr']:.1%}, score {r['score']:.2f}, re-scan {r['rescan']}; "
            f"evidence that fired: {r['decided']})"
            for r in group) + "."))
    return "\n".join(lines + detail)


def plot(document: dict[str, Any], path: Path, size: tuple[int, int] = (640, 440)) -> None:
    """Scatter of the verification score against real ASR, drawn with pillow: red failed, green passed;
    circles the tuning split, squares the report split; dashed lines at the ASR bands, dash-dot at the
    residual threshold."""
    from PIL import Image, ImageDraw

    rows = points(document) + audit_points(document)
    width, height = size
    left, right, top, bottom = 56, 16, 40, 48
    pw, ph = width - left - right, height - top - bottom
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)

    def px(score: float, asr: float) -> tuple[float, float]:
        return left + min(max(score, 0.0), 1.0) * pw, top + (1 - min(max(asr, 0.0), 1.0)) * ph

    draw.rectangle([left, top, left + pw, top + ph], outline=(0, 0, 0))
    for k in range(6):
        value = k / 5
        x, y = px(value, value)
        draw.line([left, y, left + pw, y], fill=(230, 230, 230))
        draw.text((8, y - 6), f"{100 * value:.0f}%", fill=(0, 0, 0))
        draw.text((x - 8, top + ph + 6), f"{value:.1f}", fill=(0, 0, 0))
    for asr, colour in ((HIGH_ASR, (120, 120, 120)), (LOW_ASR, (170, 170, 170))):
        _, y = px(0, asr)
        for x in range(left, left + pw, 8):
            draw.line([x, y, x + 4, y], fill=colour)
    threshold = document.get("residual_threshold", 0.5)
    x, _ = px(threshold, 0)
    for y in range(top, top + ph, 10):
        draw.line([x, y, x, y + 5], fill=(0, 0, 0))
    for row in rows:
        x, y = px(row["score"], row["asr"])
        colour = (192, 57, 43) if row["fails"] else (39, 174, 96)
        box = [x - 4, y - 4, x + 4, y + 4]
        if row["split"] == "audit":
            draw.polygon([(x, y - 5), (x + 5, y + 4), (x - 5, y + 4)], outline=colour, width=2)
        else:
            (draw.ellipse if row["split"] == "tune" else draw.rectangle)(box, outline=colour, width=2)
    draw.text((left, 8), "real ASR after purification (y) against the verification score (x)", fill=(0, 0, 0))
    draw.text((left, 22), "red: failed, green: passed; circle: zoo (tuning), square: held-apart, triangle: full audit",
              fill=(0, 0, 0))
    draw.text((left, height - 20), "strongest residual of a deciding trigger carried from the original model", fill=(0, 0, 0))
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model name in the zoo's manifest")
    parser.add_argument("--zoo", type=Path, default=ROOT / "sample_models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--purified", type=Path, nargs="*", default=[], help="purified ONNX files of real audits")
    parser.add_argument("--evidence", choices=("scan", "audit"), default="scan",
                        help="gather the evidence on a scan-sized inversion, or on the audit's own [default: scan]")
    parser.add_argument("--out", type=Path, help="where one model's JSON goes")
    parser.add_argument("--collect", type=Path, nargs="*", help="per-model JSON files to merge")
    parser.add_argument("--audits", type=Path, nargs="*", default=[],
                        help="with --collect: JSON of benchmarks/audit_draws.py whose audits join as full-audit points")
    parser.add_argument("--write-json", type=Path, help="the merged JSON (with --collect)")
    parser.add_argument("--render", type=Path, help="a merged JSON to render")
    parser.add_argument("--write", type=Path, help="the page whose marked section gets the tables")
    parser.add_argument("--plot", type=Path, help="the scatter plot (PNG)")
    args = parser.parse_args(argv)
    if args.model:
        out = args.out or Path(f"runs/calibration/{args.model}_s{args.seed}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial.json")
        save = lambda result: partial.write_text(json.dumps(result, indent=1) + "\n")  # noqa: E731
        out.write_text(json.dumps(calibrate_model(args.model, args.zoo, args.seed, args.purified, save=save,
                                                  evidence_size=args.evidence), indent=1) + "\n")
        partial.unlink(missing_ok=True)
        return 0
    if args.collect:
        cases = [json.loads(p.read_text()) for p in sorted(args.collect)]
        from auditor.verify import VerificationConfig

        document = {"date": time.strftime("%Y-%m-%d"), "residual_threshold": VerificationConfig().residual_threshold,
                    "high_asr": HIGH_ASR, "low_asr": LOW_ASR, "goals": GOALS,
                    "command": "python benchmarks/verification_calibration.py --model NAME --zoo ZOO --seed S",
                    "cases": cases,
                    "audits": [row for path in args.audits for row in json.loads(path.read_text())["rows"]],
                    "audit_sources": [str(path) for path in args.audits]}
        text = json.dumps(document, indent=1) + "\n"
        if args.write_json:
            args.write_json.write_text(text)
        else:
            print(text)
        return 0
    if args.render:
        document = json.loads(args.render.read_text())
        table = render(document)
        if args.write:
            write_between(args.write, START, END, table)
        else:
            print(table)
        if args.plot:
            plot(document, args.plot)
        return 0
    parser.error("give --model, --collect or --render")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
