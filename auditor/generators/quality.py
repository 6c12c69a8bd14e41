"""Quality checks of a generator: Frechet distance in a clean classifier's feature space, nearest neighbours.

The Frechet distance (as in FID, Heusel et al. 2017, but in the penultimate layer of a clean zoo
classifier instead of Inception, which we cannot ship or download) is reported next to two
reference points computed the same way and with the same sample sizes:

* real vs real: held-out Tiny-ImageNet vs training images (the floor a perfect generator reaches);
* a trivial generator: low-frequency ("blurred") noise with the data's per-channel mean and std.

The nearest-neighbour check finds, for generated samples and for held-out real images, the
closest training image (pixel L2 and feature L2). A generator that memorised its training set
would have much smaller distances than held-out real images have.

    python -m auditor.generators.quality --model sample_models/clean.onnx --out docs/generator

This module imports ``auditor.data`` (it is a development tool, not part of the audit path).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

_LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------ features
class PenultimateFeatures:
    """Penultimate-layer features of an ONNX classifier: the input of its last Gemm/MatMul, via onnxruntime."""

    def __init__(self, path: str | Path) -> None:
        import onnx
        import onnxruntime as ort

        from converters.load import load_onnx

        loaded = load_onnx(path)
        self.spec = loaded.spec
        model = onnx.load(str(path))
        linear = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
        if not linear:
            raise ValueError(f"{path} has no Gemm/MatMul layer to take penultimate features from")
        self.tensor = linear[-1].input[0]
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(self.tensor))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_name = self.spec.input_name
        self.path = str(path)

    def __call__(self, images01: np.ndarray, batch: int = 500) -> np.ndarray:
        """Images (N, 3, 32, 32) float in [0, 1] -> features (N, D) float64."""
        out = []
        for start in range(0, len(images01), batch):
            x = self.spec.to_model_input(np.ascontiguousarray(images01[start : start + batch], dtype=np.float32))
            feats = self.session.run([self.tensor], {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
            out.append(feats.reshape(len(feats), -1).astype(np.float64))
        return np.concatenate(out)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), with the trace of the square root from eigvalsh."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = sqrt_a @ s_b @ sqrt_a  # symmetric PSD, same eigenvalues as S_a S_b
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_sqrt)


# ------------------------------------------------------------------ sample sources
def uint8_to_01(x: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]."""
    return x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def generator_samples(G: torch.nn.Module, n: int, seed: int = 0, batch: int = 500) -> np.ndarray:
    """n samples of G from N(0, I) latents, in [0, 1] (N, 3, 32, 32)."""
    from .adapter import to_unit_range

    gen = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), G.z_dim, generator=gen)
            out.append(to_unit_range(G(z), getattr(G, "output_range", (-1.0, 1.0))).numpy())
    return np.concatenate(out)


def blurred_noise(n: int, mean: np.ndarray, std: np.ndarray, seed: int = 0, size: int = 32, coarse: int = 4) -> np.ndarray:
    """The trivial generator: Gaussian noise at ``coarse``x``coarse`` upsampled bicubically, with the data's channel mean/std."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 3, coarse, coarse, generator=gen)
    x = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)
    x = x * torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) + torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    return x.clamp(0, 1).numpy()


# ------------------------------------------------------------------ nearest neighbours
def nearest_neighbours(queries: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(index, L2 distance) of each query's nearest reference row; both (N, D) float32."""
    q = torch.from_numpy(queries.reshape(len(queries), -1).astype(np.float32))
    q2 = (q * q).sum(1, keepdim=True)
    best_d = torch.full((len(q),), float("inf"))
    best_i = torch.zeros(len(q), dtype=torch.long)
    for start in range(0, len(reference), chunk):
        r = torch.from_numpy(reference[start : start + chunk].reshape(-1, q.shape[1]).astype(np.float32))
        d = (q2 - 2 * q @ r.T + (r * r).sum(1)[None]).clamp_min(0)
        dmin, imin = d.min(1)
        better = dmin < best_d
        best_d = torch.where(better, dmin, best_d)
        best_i = torch.where(better, imin + start, best_i)
    return best_i.numpy(), best_d.sqrt().numpy()


def discriminator_scores(D: torch.nn.Module, images01: np.ndarray, batch: int = 500) -> np.ndarray:
    """Realism logits of images in [0, 1] (the discriminator reads [-1, 1])."""
    with torch.no_grad():
        return np.concatenate([D(torch.from_numpy(images01[i : i + batch]) * 2 - 1).numpy()
                               for i in range(0, len(images01), batch)])


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    scores = np.concatenate([positive, negative])
    ranks = scores.argsort().argsort().astype(np.float64) + 1
    return float((ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "median": float(np.median(values)), "p5": float(np.percentile(values, 5)),
            "min": float(values.min())}


# ------------------------------------------------------------------ the report
def run_checks(model_path: str | Path, out: str | Path, generator: torch.nn.Module | None = None, n: int = 5000,
               n_nn: int = 500, seed: int = 0, data_dir: str | Path | None = None,
               extra_generators: dict[str, Callable[[], torch.nn.Module]] | None = None,
               discriminator: torch.nn.Module | None = None) -> dict[str, Any]:
    """Compute every figure of docs/generator/README.md and write quality.json and nearest_neighbours.png."""
    from auditor.data.tinyimagenet import load_tinyimagenet_split

    from .images import save_grid
    from .registry import get_discriminator, get_generator

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    G = generator or get_generator()
    feats = PenultimateFeatures(model_path)
    x_train, _ = load_tinyimagenet_split("train", data_dir)
    x_hold, _ = load_tinyimagenet_split("holdout", data_dir)
    rng = np.random.default_rng(seed)
    train_subset = uint8_to_01(x_train[rng.choice(len(x_train), n, replace=False)])
    holdout = uint8_to_01(x_hold[:n])
    train01_mean = train_subset.mean(axis=(0, 2, 3))
    train01_std = train_subset.std(axis=(0, 2, 3))

    f_hold = feats(holdout)
    sources: dict[str, np.ndarray] = {
        "real_train": train_subset,
        "generator": generator_samples(G, n, seed=seed),
        "blurred_noise": blurred_noise(n, train01_mean, train01_std, seed=seed),
    }
    for name, factory in (extra_generators or {}).items():
        sources[name] = generator_samples(factory(), n, seed=seed)
    frechet = {name: frechet_distance(feats(images), f_hold) for name, images in sources.items()}

    # the discriminator as a realism prior (eval mode): does it rank held-out real images above samples?
    D = discriminator if discriminator is not None else (get_discriminator() if generator is None else None)
    realism: dict[str, Any] = {}
    if D is not None:
        scores = {name: discriminator_scores(D, images) for name, images in
                  (("heldout_real", holdout), ("generator", sources["generator"]), ("blurred_noise", sources["blurred_noise"]))}
        realism = {f"mean_logit_{k}": float(v.mean()) for k, v in scores.items()}
        realism["auc_real_vs_generator"] = auc(scores["heldout_real"], scores["generator"])
        realism["auc_real_vs_blurred_noise"] = auc(scores["heldout_real"], scores["blurred_noise"])

    # nearest neighbours in the training set (pixels and features), generated vs held-out real
    train01_all = uint8_to_01(x_train)
    gen_q = sources["generator"][:n_nn]
    hold_q = holdout[:n_nn]
    nn_gen_i, nn_gen_d = nearest_neighbours(gen_q, train01_all)
    _, nn_hold_d = nearest_neighbours(hold_q, train01_all)
    f_train_all = feats(train01_all)
    _, nnf_gen_d = nearest_neighbours(feats(gen_q).astype(np.float32), f_train_all.astype(np.float32))
    _, nnf_hold_d = nearest_neighbours(feats(hold_q).astype(np.float32), f_train_all.astype(np.float32))
    # figure: 32 generated samples (odd rows) above their nearest training image in pixel space (even rows)
    pairs = []
    for row in range(4):
        idx = range(row * 8, row * 8 + 8)
        pairs.append(gen_q[list(idx)])
        pairs.append(train01_all[nn_gen_i[list(idx)]])
    save_grid(np.concatenate(pairs), out / "nearest_neighbours.png", nrow=8, scale=3)

    report = {
        "feature_model": str(model_path),
        "feature_tensor": feats.tensor,
        "feature_dim": int(f_hold.shape[1]),
        "n_per_set": n,
        "holdout": "5,000 Tiny-ImageNet images never trained on (seed 0)",
        "frechet_distance_to_holdout": frechet,
        "nearest_training_image": {
            "n_queries": n_nn,
            "pixel_l2": {"generated": _summary(nn_gen_d), "heldout_real": _summary(nn_hold_d)},
            "feature_l2": {"generated": _summary(nnf_gen_d), "heldout_real": _summary(nnf_hold_d)},
            "generated_closer_than_5th_pct_of_real": float((nn_gen_d < np.percentile(nn_hold_d, 5)).mean()),
        },
        "discriminator_realism": realism,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "quality.json").write_text(json.dumps(report, indent=2))
    return report


def report_markdown(report: dict[str, Any], card: dict[str, Any], extra_notes: list[str] | None = None) -> str:
    """docs/generator/README.md from quality.json and the model card (every figure is measured, none typed in)."""
    fd = report["frechet_distance_to_holdout"]
    nn = report["nearest_training_image"]
    t = card["training"]
    labels = {
        "real_train": "real: 5,000 training images (reference floor)",
        "generator": f"**{card['name']}** (final EMA weights)",
        "blurred_noise": "trivial generator: blurred noise with the data's channel mean/std",
    }
    lines = [
        "# The bundled generator: samples, training curves, quality checks",
        "",
        f"`{card['name']}`: a DCGAN trained on {card['data']['train_images']:,} Tiny-ImageNet 32x32 images "
        f"({t['steps']:,} steps, {t['images_seen']:,} images = {t['epochs']} epochs, {t['wall_minutes']} minutes on one "
        "shared CPU thread). Model card: `auditor/generators/weights/MODEL_CARD.md` (`auditor generator info`).",
        "",
        "## Samples",
        "",
        "![64 samples](samples.png)",
        "",
        "64 samples from z ~ N(0, I), seed 0 (`auditor generator sample --n 64 -o docs/generator/samples.png` "
        "draws the same kind of grid).",
        "",
        "## Training curves",
        "",
        "![curves](training_curves.png)",
        "",
        "Discriminator and generator losses (non-saturating BCE) and the discriminator's mean logits on real and "
        "generated batches, against images seen.",
        "",
        "## Frechet distance",
        "",
        f"Frechet distance between {report['n_per_set']:,} images of each source and {report['n_per_set']:,} held-out "
        f"Tiny-ImageNet images, in the penultimate layer (`{report['feature_tensor']}`, {report['feature_dim']} "
        f"features) of the clean classifier `{report['feature_model']}`. Same formula as FID, but not FID: the "
        "feature network is a small CIFAR-10 classifier, so the numbers are comparable only within this table.",
        "",
        "| samples | Frechet distance to held-out real |",
        "| --- | ---: |",
        *[f"| {labels.get(k, k)} | {v:.2f} |" for k, v in fd.items()],
        "",
        "## Nearest training images",
        "",
        f"For {nn['n_queries']} generated samples and {nn['n_queries']} held-out real images, the distance to the "
        f"closest of the {card['data']['train_images']:,} training images (pixels in [0, 1], 3,072 values; and the "
        "classifier features above). A generator that reproduced training images would sit far below the "
        "held-out real images.",
        "",
        "| query | pixel L2 median | pixel L2 5th pct | pixel L2 min | feature L2 median | feature L2 min |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (("generated", "generated"), ("heldout_real", "held-out real")):
        p, f = nn["pixel_l2"][key], nn["feature_l2"][key]
        lines.append(f"| {label} | {p['median']:.2f} | {p['p5']:.2f} | {p['min']:.2f} | {f['median']:.2f} | {f['min']:.2f} |")
    lines += [
        "",
        f"Share of generated samples closer to a training image than the 5th percentile of held-out real images: "
        f"{100 * nn['generated_closer_than_5th_pct_of_real']:.1f}%.",
        "",
        "![nearest neighbours](nearest_neighbours.png)",
        "",
        "Rows 1, 3, 5, 7: generated samples; rows 2, 4, 6, 8: the nearest training image (pixel L2) of the sample above.",
        "",
    ]
    realism = report.get("discriminator_realism") or {}
    if realism:
        lines += [
            "## The discriminator as a realism prior",
            "",
            "Mean logit (eval mode) and ranking AUC, held-out real images against each source:",
            "",
            "| images | mean logit |",
            "| --- | ---: |",
            f"| held-out real | {realism['mean_logit_heldout_real']:.2f} |",
            f"| generator samples | {realism['mean_logit_generator']:.2f} |",
            f"| blurred noise | {realism['mean_logit_blurred_noise']:.2f} |",
            "",
            f"AUC real vs generator {realism['auc_real_vs_generator']:.3f}; real vs blurred noise "
            f"{realism['auc_real_vs_blurred_noise']:.3f}.",
            "",
        ]
    lines += [
        "## Reproduce",
        "",
        "```",
        f"python -m auditor.generators.quality --model {report['feature_model']} --out docs/generator",
        "```",
        "",
        f"Figures from `quality.json` (computed in {report['seconds']} s).",
        "",
    ]
    if extra_notes:
        lines += ["## Notes", "", *[f"- {n}" for n in extra_notes], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Frechet distance and nearest-neighbour checks of the generator")
    parser.add_argument("--model", required=True, help="A clean classifier (ONNX) whose penultimate layer gives features.")
    parser.add_argument("--out", default="docs/generator")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--n-nn", type=int, default=500)
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="NAME=run/checkpoint.pt: also score the EMA generator of a training checkpoint.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--update-card", action="store_true",
                        help="Also put the figures into the package's card.json / MODEL_CARD.md and write OUT/README.md.")
    parser.add_argument("--note", action="append", default=[], help="A line for the README's notes.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(args.threads)

    def _from_checkpoint(path: str) -> Callable[[], torch.nn.Module]:
        def build() -> torch.nn.Module:
            from .architectures import DCGANConfig, DCGANGenerator

            state = torch.load(path, map_location="cpu", weights_only=False)  # our own training checkpoint
            from .training import recalibrate_batchnorm

            g = DCGANGenerator(DCGANConfig.from_json(state["config"]["model"]))
            g.load_state_dict(state["G_ema"])
            return recalibrate_batchnorm(g)  # as the shipped weights were exported
        return build

    extra = {name: _from_checkpoint(p) for name, p in (item.split("=", 1) for item in args.checkpoint)}
    result = run_checks(args.model, args.out, n=args.n, n_nn=args.n_nn, extra_generators=extra)
    print(json.dumps(result, indent=2))
    if args.update_card:
        from .card import write_card
        from .registry import generator_card

        weights = Path(__file__).resolve().parent / "weights"
        card = generator_card()
        card["quality"] = result
        write_card(card, weights, f"{args.out}/training_curves.png", f"{args.out}/samples.png")
        (Path(args.out) / "README.md").write_text(report_markdown(result, card, args.note))
