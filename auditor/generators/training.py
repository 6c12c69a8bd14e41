"""Train the bundled 32x32 generator on Tiny-ImageNet (never on the audited models' data).

DCGAN generator + light spectrally normalized discriminator, hinge loss, Adam, horizontal flips,
an exponential moving average (EMA) of the generator's weights. Training runs against a
wall-clock budget, checkpoints every few minutes and resumes from its checkpoint, so that it can
run in the background on a shared CPU. ``export`` writes the package's weight files.

Rebuild command (the one the model card records)::

    auditor generator train --minutes 120 --threads 1 --out runs/generator
    auditor generator train --out runs/generator --export auditor/generators/weights --minutes 0 --resume
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .architectures import DCGANConfig, DCGANDiscriminator, DCGANGenerator, folded_discriminator_state
from .images import save_grid

_LOG = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides the result; stored in checkpoints and in the model card."""

    minutes: float = 120.0
    batch: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999
    seed: int = 0
    threads: int = 1
    flip: bool = True
    loss: str = "bce"  # "bce" (the original DCGAN's non-saturating loss) or "hinge"
    translate: int = 0  # DiffAugment-style random translation (pixels) applied to real and fake in D
    model: dict[str, Any] = field(default_factory=lambda: DCGANConfig().to_json())
    sample_every_s: float = 300.0
    checkpoint_every_s: float = 300.0
    log_every: int = 50


def _translate(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random integer translation with zero padding (DiffAugment's 'translation'), differentiable."""
    if shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
    idx_n = torch.arange(n).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


class Trainer:
    """One training run in ``out``: state in ``checkpoint.pt``, a JSON-lines log, sample grids."""

    def __init__(self, config: TrainConfig, out: Path, data_dir: str | Path | None = None) -> None:
        self.config = config
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.model_config = DCGANConfig.from_json(config.model)
        self.G = DCGANGenerator(self.model_config)
        self.D = DCGANDiscriminator(self.model_config, spectral_norm=True)
        self.G_ema = copy.deepcopy(self.G).eval()
        for p in self.G_ema.parameters():
            p.requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
        self.step = 0
        self.images_seen = 0
        self.elapsed_s = 0.0
        self.gen = torch.Generator().manual_seed(config.seed + 1)
        self.fixed_z = torch.randn(64, self.model_config.z_dim, generator=torch.Generator().manual_seed(1234))

    # ----------------------------------------------------------------- state
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        state = {
            "config": asdict(self.config),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed_s": self.elapsed_s,
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)

    def load_checkpoint(self) -> None:
        # Our own checkpoint, written by save_checkpoint: weights_only=False is needed for the RNG state.
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.elapsed_s = float(state["elapsed_s"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])

    # ----------------------------------------------------------------- training
    def _update_ema(self) -> None:
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.lerp_(p, 1.0 - decay)
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        """One D step and one G step (hinge loss) on a batch of real images in [-1, 1]."""
        cfg = self.config
        n = real.shape[0]
        z = torch.randn(n, self.model_config.z_dim, generator=self.gen)
        fake = self.G(z)
        # Discriminator
        d_real = self.D(_translate(real, cfg.translate, self.gen))
        d_fake = self.D(_translate(fake.detach(), cfg.translate, self.gen))
        if cfg.loss == "bce":
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        else:
            loss_d = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        # Generator (same fakes, fresh D forward)
        g_out = self.D(_translate(fake, cfg.translate, self.gen))
        loss_g = F.softplus(-g_out).mean() if cfg.loss == "bce" else -g_out.mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self._update_ema()
        self.step += 1
        self.images_seen += n
        return {
            "loss_d": loss_d.item(),
            "loss_g": loss_g.item(),
            "d_real": d_real.detach().mean().item(),
            "d_fake": d_fake.detach().mean().item(),
        }

    def sample_grid(self, path: Path) -> None:
        """EMA generator (batch-norm statistics re-estimated, as exported) on fixed latents: top 4 rows;
        the raw generator in eval mode: bottom 4 rows."""
        with torch.no_grad():
            ema = self.recalibrated_ema(batches=8, batch=128)(self.fixed_z[:32])
            raw = self.G.eval()(self.fixed_z[:32])
        self.G.train()
        save_grid((torch.cat([ema, raw]) + 1) / 2, path, nrow=8)

    def run(self, max_steps: int | None = None) -> None:
        """Train until the wall-clock budget (summed over resumes) or ``max_steps`` is used up."""
        from auditor.data.tinyimagenet import load_tinyimagenet_split

        cfg = self.config
        x, _ = load_tinyimagenet_split("train", self.data_dir)
        data = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW, 55,000 images
        n = data.shape[0]
        budget = cfg.minutes * 60.0
        log_path = self.out / "log.jsonl"
        perm_gen = torch.Generator().manual_seed(cfg.seed + 1000 + self.step)
        perm = torch.randperm(n, generator=perm_gen)
        pos = 0
        last_sample = last_ckpt = time.monotonic()
        acc: dict[str, float] = {}
        acc_n = 0
        t_log = time.monotonic()
        _LOG.info("training from step %d (%.1f min used of %.1f)", self.step, self.elapsed_s / 60, cfg.minutes)
        with open(log_path, "a") as log:
            while self.elapsed_s < budget and (max_steps is None or self.step < max_steps):
                t0 = time.monotonic()
                if pos + cfg.batch > n:
                    perm = torch.randperm(n, generator=perm_gen)
                    pos = 0
                idx = perm[pos : pos + cfg.batch]
                pos += cfg.batch
                real = data[idx].float().div_(127.5).sub_(1.0)
                if cfg.flip:
                    flip = torch.rand(real.shape[0], generator=self.gen) < 0.5
                    real = torch.where(flip.view(-1, 1, 1, 1), real.flip(3), real)
                stats = self.train_step(real)
                for k, v in stats.items():
                    acc[k] = acc.get(k, 0.0) + v
                acc_n += 1
                now = time.monotonic()
                self.elapsed_s += now - t0
                if self.step % cfg.log_every == 0:
                    rate = acc_n * cfg.batch / max(now - t_log, 1e-9)
                    row = {"step": self.step, "images": self.images_seen, "elapsed_s": round(self.elapsed_s, 1),
                           "img_per_s": round(rate, 1), **{k: round(v / acc_n, 4) for k, v in acc.items()}}
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    acc, acc_n, t_log = {}, 0, now
                if not math.isfinite(stats["loss_d"]) or not math.isfinite(stats["loss_g"]):
                    raise RuntimeError(f"training diverged at step {self.step}: {stats}")
                if now - last_sample >= cfg.sample_every_s:
                    self.sample_grid(self.out / f"samples_{self.step:07d}.png")
                    last_sample = now
                if now - last_ckpt >= cfg.checkpoint_every_s:
                    self.save_checkpoint()
                    last_ckpt = now
                    if (self.out / "STOP").exists():  # touch RUN/STOP to end a background run early, cleanly
                        _LOG.info("found %s: stopping", self.out / "STOP")
                        break
        self.save_checkpoint()
        self.sample_grid(self.out / f"samples_{self.step:07d}.png")
        _LOG.info("stopped at step %d, %d images, %.1f min", self.step, self.images_seen, self.elapsed_s / 60)

    # ----------------------------------------------------------------- export
    def recalibrated_ema(self, batches: int = 50, batch: int = 256) -> DCGANGenerator:
        """The EMA generator with batch-norm running statistics re-estimated for its own weights.

        The EMA copies G's running statistics, which were measured with G's (not the EMA's)
        weights; a pass over fresh latents in train mode makes eval-mode outputs match.
        """
        return recalibrate_batchnorm(copy.deepcopy(self.G_ema), batches, batch)

    def export(self, folder: Path, name: str = "tinyimagenet32-dcgan") -> dict[str, Any]:
        """Write ``<name>.G.npz`` and ``<name>.D.npz`` (no pickle) and return facts for the card."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        g = self.recalibrated_ema()
        g_state = {k: v.detach().cpu().numpy() for k, v in g.state_dict().items()}
        d_state = {k: v.cpu().numpy() for k, v in folded_discriminator_state(self.D).items()}
        np.savez(folder / f"{name}.G.npz", **g_state)
        np.savez(folder / f"{name}.D.npz", **d_state)
        return {
            "generator_parameters": sum(int(np.prod(v.shape)) for k, v in g.state_dict().items() if "running" not in k and "num_batches" not in k),
            "discriminator_parameters": sum(int(p.numel()) for p in self.D.parameters()),
            "steps": self.step,
            "images_seen": self.images_seen,
            "train_wall_minutes": round(self.elapsed_s / 60, 1),
        }


def recalibrate_batchnorm(g: DCGANGenerator, batches: int = 50, batch: int = 256) -> DCGANGenerator:
    """Re-estimate a generator's batch-norm statistics on fresh latents (in place); returns it in eval mode."""
    for m in g.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    g.train()
    gen = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        for _ in range(batches):
            g(torch.randn(batch, g.z_dim, generator=gen))
    return g.eval()


def read_log(path: Path) -> list[dict[str, Any]]:
    """Rows of a training log (JSON lines)."""
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def train_main(out: Path, minutes: float, resume: bool, threads: int = 1, seed: int = 0,
               batch: int = 64, data_dir: str | Path | None = None, max_steps: int | None = None,
               **overrides: Any) -> Trainer:
    """Start or resume a run in ``out`` (a resumed run keeps its stored configuration but takes the new budget)."""
    out = Path(out)
    checkpoint = out / "checkpoint.pt"
    if resume and checkpoint.is_file():
        stored = torch.load(checkpoint, map_location="cpu", weights_only=False)["config"]
        stored.update(minutes=minutes, threads=threads)
        trainer = Trainer(TrainConfig(**stored), out, data_dir)
        trainer.load_checkpoint()
    else:
        if checkpoint.is_file() and not resume:
            raise FileExistsError(f"{checkpoint} exists: pass --resume to continue it or choose another --out")
        trainer = Trainer(TrainConfig(minutes=minutes, threads=threads, seed=seed, batch=batch, **overrides), out, data_dir)
        (out / "train_config.json").write_text(json.dumps(asdict(trainer.config), indent=2))
    trainer.run(max_steps=max_steps)
    return trainer


if __name__ == "__main__":  # python -m auditor.generators.training --minutes 120 --out runs/generator [--resume]
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/generator"))
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train_main(args.out, args.minutes, args.resume, args.threads, args.seed, args.batch, args.data_dir)


def plot_curves(log_path: Path, out_path: Path, loss: str = "bce") -> Path:
    """Training curves (losses and mean D outputs vs images seen) from a run's log, as a PNG."""
    from PIL import Image

    from .images import line_plot, smooth

    rows = read_log(log_path)
    xs = [float(r["images"]) for r in rows]
    tmp_a, tmp_b = out_path.with_suffix(".a.png"), out_path.with_suffix(".b.png")
    names = ("D loss (BCE)", "G loss (non-sat.)") if loss == "bce" else ("D hinge loss", "G loss -D(G(z))")
    line_plot({names[0]: (xs, smooth([r["loss_d"] for r in rows])),
               names[1]: (xs, smooth([r["loss_g"] for r in rows]))},
              tmp_a, title="losses (50-step means, smoothed)", xlabel="images seen")
    line_plot({"mean D logit, real": (xs, smooth([r["d_real"] for r in rows])),
               "mean D logit, fake": (xs, smooth([r["d_fake"] for r in rows]))},
              tmp_b, title="discriminator logits (train mode)", xlabel="images seen")
    with Image.open(tmp_a) as a, Image.open(tmp_b) as b:
        both = Image.new("RGB", (a.width, a.height + b.height), "white")
        both.paste(a, (0, 0))
        both.paste(b, (0, a.height))
        both.save(out_path)
    tmp_a.unlink()
    tmp_b.unlink()
    return out_path


REBUILD_COMMAND = [
    "pip install -e .   # or PYTHONPATH=. from the repository root; needs ../shared/data/tinyimagenet32.zip",
    "auditor generator train --out runs/generator --minutes 112 --threads 1 --seed 0",
    "auditor generator train --out runs/generator --minutes 112 --resume --export auditor/generators/weights "
    "--docs docs/generator   # after an interruption; with the budget spent it only exports",
    "python -m auditor.generators.quality --model sample_models/cifar10_clean_a.onnx --out docs/generator "
    "--update-card   # Frechet / nearest-neighbour figures into the card and docs/generator/README.md",
]


def release(run_dir: Path, weights_dir: Path, docs_dir: Path, name: str = "tinyimagenet32-dcgan",
            quality: dict[str, Any] | None = None, notes: list[str] | None = None) -> dict[str, Any]:
    """Export a finished run as package data: weights, card.json, MODEL_CARD.md, sample grid and curves."""
    from .card import build_card, write_card

    stored = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)["config"]
    trainer = Trainer(TrainConfig(**stored), Path(run_dir))
    trainer.load_checkpoint()
    facts = trainer.export(Path(weights_dir), name)
    docs_dir = Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    curves = plot_curves(Path(run_dir) / "log.jsonl", docs_dir / "training_curves.png", trainer.config.loss)
    G = DCGANGenerator(trainer.model_config)
    with np.load(Path(weights_dir) / f"{name}.G.npz", allow_pickle=False) as data:
        G.load_state_dict({k: torch.from_numpy(np.array(data[k])) for k in data.files})
    G.eval()
    with torch.no_grad():
        z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(0))
        grid = save_grid((G(z) + 1) / 2, docs_dir / "samples.png", nrow=8, scale=3)
    card = build_card(name, Path(weights_dir), asdict(trainer.config), facts, read_log(Path(run_dir) / "log.jsonl"),
                      quality, REBUILD_COMMAND, notes or [])
    write_card(card, Path(weights_dir), str(curves), str(grid))
    return card
