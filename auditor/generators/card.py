"""Write the model card of a bundled generator: ``card.json`` (machine-readable) and ``MODEL_CARD.md``.

Every figure in the card comes from the training log, the checkpoint or the quality report; the
card is regenerated, not edited by hand, when the weights change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from converters import sha256_file

LICENCE = (
    "Weights trained on Tiny-ImageNet, a subset of ImageNet: the ImageNet terms of access allow "
    "non-commercial research and educational use only, and models trained on it are commonly "
    "released under the same restriction. Use these weights for research and education; the "
    "code that trains them is Apache-2.0 like the rest of the package."
)


def build_card(name: str, weights_dir: Path, train_config: dict[str, Any], facts: dict[str, Any],
               log_rows: list[dict[str, Any]], quality: dict[str, Any] | None, rebuild: list[str],
               notes: list[str]) -> dict[str, Any]:
    """The card as a dict (see ``MODEL_CARD.md`` for the prose version)."""
    last = log_rows[-20:] if log_rows else []
    mean = lambda key: round(sum(r[key] for r in last) / len(last), 4) if last else None  # noqa: E731
    model = train_config["model"]
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(weights_dir.glob(f"{name}.*.npz"))}
    return {
        "name": name,
        "summary": "32x32 RGB image generator for stabilized model inversion (Chen et al., TMLR 2023), "
                   "trained on public data disjoint from the audited models' training data (never on CIFAR-10).",
        "data": {
            "dataset": "Tiny-ImageNet 32x32 (tinyimagenet32.zip): 200 classes x the first 300 training images per class, "
                       "downsampled 64->32 with a box filter, JPEG quality 92",
            "images_total": 60000,
            "train_images": 55000,
            "holdout_images": 5000,
            "holdout": "auditor.data.tinyimagenet.holdout_indices(60000, 5000, seed=0); never trained on, used by the Frechet check",
            "labels_used": False,
        },
        "preprocessing": "uint8 RGB -> [-1, 1] (x / 127.5 - 1), random horizontal flip (p=0.5); no other augmentation",
        "architecture": {
            **model,
            "generator": "z (N, z_dim) ~ N(0, I) -> Linear -> BN -> ReLU -> 4x4x(4*ngf) -> 3 x [ConvTranspose 4x4/2, BN, ReLU] "
                         "(4->8->16->32; 4*ngf->2*ngf->ngf->ngf/2) -> Conv 3x3 -> tanh; output (N, 3, 32, 32) in [-1, 1]",
            "discriminator": "3 x [Conv 4x4/2, LeakyReLU] (32->16->8->4; ndf->2ndf->4ndf) -> Linear -> one logit; "
                             + ("spectral normalization during training, folded into the shipped weights (plain layers)"
                                if model.get("d_norm", "spectral") == "spectral" else "batch norm after the 2nd and 3rd conv"),
            "generator_parameters": facts.get("generator_parameters"),
            "discriminator_parameters": facts.get("discriminator_parameters"),
            "generator_weights": "exponential moving average of G's weights, batch-norm statistics re-estimated on 12,800 latents",
            "output_range": [-1.0, 1.0],
            "eval_mode": "always use eval mode: batch norm then uses stored statistics and each sample depends only on its z",
        },
        "training": {
            "loss": train_config.get("loss", "hinge"),
            "optimizer": f"Adam lr_G {train_config['lr_g']}, lr_D {train_config['lr_d']}, betas ({train_config['beta1']}, {train_config['beta2']}); one D step per G step",
            "batch": train_config["batch"],
            "ema_decay": train_config["ema_decay"],
            "seed": train_config["seed"],
            "threads": train_config["threads"],
            "steps": facts.get("steps"),
            "images_seen": facts.get("images_seen"),
            "epochs": round(facts.get("images_seen", 0) / 55000, 2),
            "wall_minutes": facts.get("train_wall_minutes"),
            "hardware": "2-core shared CPU (no GPU), torch CPU build, 1 thread; other jobs ran on the same cores",
            "final_losses_mean_last_1000_steps": {"loss_d": mean("loss_d"), "loss_g": mean("loss_g"),
                                                  "d_real": mean("d_real"), "d_fake": mean("d_fake")},
        },
        "files": files,
        "quality": quality,
        "rebuild_command": rebuild,
        "licence": LICENCE,
        "intended_use": "A prior over natural 32x32 images for model inversion and unlearning of image classifiers; "
                        "not a high-fidelity image generator.",
        "limitations": notes,
    }


def write_card(card: dict[str, Any], weights_dir: Path, curves: str, grid: str) -> None:
    """Write card.json and MODEL_CARD.md next to the weights."""
    (weights_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    a, t, q = card["architecture"], card["training"], card.get("quality") or {}
    lines = [
        f"# Model card: {card['name']}",
        "",
        card["summary"],
        "",
        "## Data",
        f"- {card['data']['dataset']}.",
        f"- Trained on {card['data']['train_images']:,} images; {card['data']['holdout_images']:,} held out "
        f"({card['data']['holdout']}). Labels are not used.",
        "- Not CIFAR-10 and not any audited model's data: the method promises not to need in-distribution data.",
        f"- Preprocessing: {card['preprocessing']}.",
        "",
        "## Architecture",
        f"- Generator ({a['generator_parameters']:,} parameters, z_dim {a['z_dim']}): {a['generator']}.",
        f"- Discriminator ({a['discriminator_parameters']:,} parameters): {a['discriminator']}. "
        "Outputs a realism logit (higher = more real) for images in [-1, 1].",
        f"- Shipped generator weights: {a['generator_weights']}. {a['eval_mode'].capitalize()}.",
        "",
        "## Training",
        f"- Loss: {t['loss']}; {t['optimizer']}; batch {t['batch']}; EMA decay {t['ema_decay']}; seed {t['seed']}.",
        f"- {t['steps']:,} steps, {t['images_seen']:,} images ({t['epochs']} epochs) in {t['wall_minutes']} minutes "
        f"of training time on {t['hardware']}.",
        f"- Losses at the end (mean of the last 1,000 steps): {json.dumps(t['final_losses_mean_last_1000_steps'])}.",
        f"- Curves: `{curves}`; samples: `{grid}`.",
        "",
        "## Quality (docs/generator/README.md)",
    ]
    if q:
        fd = q["frechet_distance_to_holdout"]
        lines += [
            f"Frechet distance to 5,000 held-out images in the penultimate layer ({q['feature_dim']} features) of "
            f"`{q['feature_model']}` (lower is closer):",
            "",
            "| samples | Frechet distance |",
            "| --- | --- |",
            *[f"| {k} | {v:.2f} |" for k, v in fd.items()],
        ]
    else:
        lines.append("Not computed yet.")
    lines += [
        "",
        "## Rebuild",
        "```",
        *card["rebuild_command"],
        "```",
        "",
        "## Files",
        *[f"- `{k}`: {v['bytes']:,} bytes, sha256 `{v['sha256']}`" for k, v in card["files"].items()],
        "- Plain float32 arrays in `.npz`, read with `numpy.load(..., allow_pickle=False)`: loading runs no code.",
        "",
        "## Licence",
        card["licence"],
        "",
        "## Limitations",
        *[f"- {n}" for n in card["limitations"]],
        "",
    ]
    (weights_dir / "MODEL_CARD.md").write_text("\n".join(lines))
