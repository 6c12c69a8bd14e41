"""``auditor invert``: synthesize stable samples of every class from the model alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from auditor.options import InversionOptions, inversion_config  # noqa: F401 (re-exported)

from ._options import defaults_from, deprecated_alias, json_option, load_model_from_options, print_json, spec_options
from ._progress import progress_bar

default = defaults_from(InversionOptions)


def inversion_options(func):
    """Options shared by ``invert`` and ``audit``."""
    options = [
        click.option("--per-class", type=click.IntRange(1), default=default("per_class"),
                     help="Samples kept per class (default 250)."),
        click.option("--inversion", type=click.Choice(["particles", "gaussian"]), default=default("inversion"),
                     help="particles: one latent per sample (default); gaussian: one latent Gaussian per class (ablation)."),
        click.option("--steps", type=click.IntRange(1), default=default("steps"),
                     help="Most optimization steps per particle (default 8); with --inversion gaussian, steps of the class Gaussians (default 200)."),
        click.option("--no-stability", is_flag=True, default=default("no_stability"),
                     help="Ablation: plain generative inversion (no bi-level terms)."),
        click.option("--pixels", is_flag=True, default=default("pixels"),
                     help="Ablation: optimize pixels directly, no generator."),
        click.option("--generator", default=default("generator"),
                     help="Registry name, or your own generator as .onnx / TorchScript .pt file."),
        click.option("--rho", type=float, default=default("rho"), help="Inner worst-case parameter radius (relative)."),
        click.option("--eps", type=float, default=default("eps"), help="Inner worst-case input radius (L-inf, 0..1 scale)."),
        click.option("--min-stability", type=click.FloatRange(0, 1), default=default("min_stability"),
                     help="Drop samples whose stability index is below this."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("invert")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Where to write the samples (a .npz file); the per-class summary goes next to it (.json).")
@click.option("--grid", is_flag=False, flag_value="", default=None, metavar="",
              help="Also write a PNG grid, one row per class, next to the output (.png). The older form "
                   "--grid FILE still works and is deprecated.")
@click.option("--seed", type=int, default=0, help="Seeds the inversion.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@json_option("Print the per-class summary and the paths written as JSON on stdout.")
@inversion_options
@spec_options
@deprecated_alias("--summary", "-o (the summary is written next to it)", "summary", type=click.Path(dir_okay=False))
def invert_cmd(model: str, output: str, grid: str | None, seed: int, device: str, overwrite: bool, as_json: bool,
               summary: str | None = None, **options: Any) -> None:
    """Synthesize --per-class samples of every class from MODEL, with no data.

    The outputs are checked before any compute (not the input, not a folder, not each other, their
    folders exist and are writable) and appear together, or not at all.

    \b
    Examples:
      auditor invert suspect.onnx -o samples.npz --grid
      auditor invert suspect.onnx -o samples.npz --per-class 50 --steps 4 --json
    """
    from converters import convert

    from auditor.errors import AuditorError
    from auditor.inversion import invert, save_class_grid
    from auditor.model import Classifier, pick_device
    from auditor.report.files import Staging, check_distinct, check_output_file

    out = Path(output)
    check_output_file(out, "-o", overwrite, inputs=[Path(model)])
    if out.suffix.lower() != ".npz":
        raise AuditorError(f"-o {out}: the samples are written as .npz; name the output *.npz "
                           "(the per-class summary goes next to it as .json)")
    if grid:
        click.echo("warning: --grid FILE is deprecated; --grid alone writes the grid next to -o", err=True)
    summary_path = Path(summary) if summary else out.with_suffix(".json")
    grid_path = None if grid is None else (Path(grid) if grid else out.with_suffix(".png"))
    outputs = {"-o": out, "--summary": summary_path, "--grid": grid_path}
    check_distinct(outputs)
    for option, path in list(outputs.items())[1:]:
        if path is not None:
            check_output_file(path, option, overwrite, inputs=[Path(model)])
    loaded = load_model_from_options(model, options)
    converted = convert(loaded)
    classifier = Classifier.from_converted(converted).to(pick_device(device))
    config = inversion_config(options, seed)
    with progress_bar("inverting", enabled=not as_json) as progress:
        synth = invert(classifier, config, pixels=options.get("pixels", False),
                       generator=options.get("generator"), progress=progress)
    with Staging() as staging:  # the three files appear together or not at all
        synth.save(staging.path(out), layout=loaded.spec.layout)
        staging.write_text(summary_path, json.dumps(synth.summary, indent=2))
        if grid_path is not None:
            save_class_grid(synth.images01, synth.labels, loaded.spec.num_classes, staging.path(grid_path))
    if as_json:
        print_json({"output": str(out), "summary_file": str(summary_path),
                    "grid": str(grid_path) if grid_path else None, "samples": len(synth), "summary": synth.summary})
        return
    kept = synth.summary["kept"]["overall"]
    click.echo(f"wrote {len(synth)} samples to {out} ({synth.summary['seconds']['total']:.0f} s); "
               f"confidence {kept['confidence']:.3f}, stable under input noise {kept['input_noise']:.3f}, "
               f"parameter noise {kept['param_noise']:.3f}, worst-case input {kept['worst_input']:.3f}, "
               f"worst-case parameters {kept['worst_param']:.3f}; diversity {synth.summary['diversity']['spread']:.3f} (near-duplicates {synth.summary['diversity']['near_duplicates']:.1%})")
