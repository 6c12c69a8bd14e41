"""``auditor invert``: synthesize stable samples of every class from the model alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._options import load_model_from_options, spec_options
from ._progress import progress_bar


def inversion_options(func):
    """Options shared by ``invert`` and ``audit``."""
    options = [
        click.option("--per-class", type=click.IntRange(1), default=None, help="Samples kept per class (default 250)."),
        click.option("--inversion", "inversion_method", type=click.Choice(["particles", "gaussian"]), default=None,
                     help="particles: one latent per sample (default); gaussian: one latent Gaussian per class (ablation)."),
        click.option("--steps", type=click.IntRange(1), default=None,
                     help="Most optimization steps per particle (default 8); with --inversion gaussian, steps of the class Gaussians (default 200)."),
        click.option("--no-stability", is_flag=True, help="Ablation: plain generative inversion (no bi-level terms)."),
        click.option("--pixels", is_flag=True, help="Ablation: optimize pixels directly, no generator."),
        click.option("--generator", "generator_name", default=None,
                     help="Registry name, or your own generator as .onnx / TorchScript .pt file."),
        click.option("--rho", type=float, default=None, help="Inner worst-case parameter radius (relative)."),
        click.option("--eps", type=float, default=None, help="Inner worst-case input radius (L-inf, 0..1 scale)."),
        click.option("--min-stability", type=click.FloatRange(0, 1), default=None,
                     help="Drop samples whose stability index is below this."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def inversion_config(options: dict[str, Any], seed: int):
    from auditor.inversion.smi import InversionConfig, with_overrides

    method = options.get("inversion_method") or InversionConfig().method
    steps = options.get("steps")
    return with_overrides(
        InversionConfig(), per_class=options.get("per_class"), method=method,
        particle_steps=steps if method == "particles" else None, steps=steps if method == "gaussian" else None,
        stability=False if options.get("no_stability") else None, rho=options.get("rho"), eps=options.get("eps"),
        min_stability=options.get("min_stability"), seed=seed,
    )


@click.command("invert")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Where to write the samples (a .npz file).")
@click.option("--grid", type=click.Path(dir_okay=False), default=None, help="Also write a PNG grid, one row per class.")
@click.option("--summary", type=click.Path(dir_okay=False), default=None,
              help="Per-class JSON summary (default: next to the output, .json).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@inversion_options
@spec_options
def invert_cmd(model: str, output: str, grid: str | None, summary: str | None, seed: int, device: str,
               overwrite: bool, **options: Any) -> None:
    """Synthesize --per-class samples of every class from MODEL, with no data.

    The outputs are checked before any compute (not the input, not a folder, not each other, their
    folders exist and are writable) and appear together, or not at all."""
    from converters import convert

    from auditor.errors import AuditorError
    from auditor.inversion import invert, save_class_grid
    from auditor.model import Classifier, pick_device
    from auditor.report.files import Staging, check_distinct, check_output_file

    out = Path(output)
    check_output_file(out, "-o", overwrite, inputs=[Path(model)])
    if out.suffix.lower() != ".npz":
        raise AuditorError(f"-o {out}: the samples are written as .npz; name the output *.npz "
                           "(the per-class summary goes to --summary, default next to it as .json)")
    summary_path = Path(summary) if summary else out.with_suffix(".json")
    grid_path = Path(grid) if grid else None
    outputs = {"-o": out, "--summary": summary_path, "--grid": grid_path}
    check_distinct(outputs)
    for option, path in list(outputs.items())[1:]:
        if path is not None:
            check_output_file(path, option, overwrite, inputs=[Path(model)])
    loaded = load_model_from_options(model, options)
    converted = convert(loaded)
    classifier = Classifier.from_converted(converted).to(pick_device(device))
    config = inversion_config(options, seed)
    with progress_bar("inverting") as progress:
        synth = invert(classifier, config, pixels=options.get("pixels", False),
                       generator=options.get("generator_name"), progress=progress)
    with Staging() as staging:  # the three files appear together or not at all
        synth.save(staging.path(out), layout=loaded.spec.layout)
        staging.write_text(summary_path, json.dumps(synth.summary, indent=2))
        if grid_path is not None:
            save_class_grid(synth.images01, synth.labels, loaded.spec.num_classes, staging.path(grid_path))
    kept = synth.summary["kept"]["overall"]
    click.echo(f"wrote {len(synth)} samples to {out} ({synth.summary['seconds']['total']:.0f} s); "
               f"confidence {kept['confidence']:.3f}, stable under input noise {kept['input_noise']:.3f}, "
               f"parameter noise {kept['param_noise']:.3f}, worst-case input {kept['worst_input']:.3f}, "
               f"worst-case parameters {kept['worst_param']:.3f}; diversity {synth.summary['diversity']['spread']:.3f} (near-duplicates {synth.summary['diversity']['near_duplicates']:.1%})")
