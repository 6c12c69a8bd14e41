"""``auditor generator``: sample, describe and rebuild the generator that model inversion searches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._options import deprecated_alias, json_option, print_json, spec_options


def _range(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"expected LO,HI, got {value!r}") from exc
    return (lo, hi)


def generator_options(func: Any) -> Any:
    """--generator NAME|FILE, --z-dim, --generator-range: which generator and how to read a user's."""
    options = [
        click.option("--generator", "generator", default=None, metavar="NAME|FILE",
                     help="A bundled generator (default tinyimagenet32-dcgan) or a .onnx / TorchScript file."),
        click.option("--z-dim", type=int, default=None, help="Latent size of a user generator whose file does not say."),
        click.option("--generator-range", callback=_range, metavar="LO,HI", default=None,
                     help="Value range of a user generator's output (default -1,1)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group("generator")
def generator_group() -> None:
    """The pretrained image generator (bundled, or your own) used by model inversion.

    \b
    Examples:
      auditor generator info
      auditor generator sample suspect.onnx -o as_seen.png
    """


@generator_group.command("sample")
@click.argument("model", type=click.Path(dir_okay=False), required=False, default=None)
@click.option("--n", "count", type=click.IntRange(1, 4096), default=64, help="Number of samples.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="generator_samples.png",
              help="PNG grid to write.")
@click.option("--seed", type=int, default=0, help="Seeds the latents.")
@click.option("--nrow", type=int, default=8, help="Images per row.")
@json_option("Print what was written as JSON.")
@generator_options
@spec_options
@deprecated_alias("--model", "the MODEL argument", "model", type=click.Path(dir_okay=False))
def sample_cmd(count: int, output: str, seed: int, nrow: int, model: str | None, generator: str | None,
               z_dim: int | None, generator_range: tuple[float, float] | None, as_json: bool, **spec_opts: Any) -> None:
    """Write a grid of samples from N(0, I) latents; with MODEL, as that ONNX classifier sees them (its size,
    channels, via the adapter).

    \b
    Examples:
      auditor generator sample -o samples.png
      auditor generator sample suspect.onnx --n 100 --nrow 10 -o as_seen.png
    """
    import torch

    from auditor.generators import DEFAULT_GENERATOR, adapter_for, load_generator, to_unit_range
    from auditor.generators.images import save_grid
    from auditor.report.files import Staging, check_output_file

    # replacing an earlier grid is this command's habit; replacing the model it reads is refused
    check_output_file(Path(output), "-o", overwrite=True, inputs=[Path(model)] if model else [])
    G = load_generator(generator or DEFAULT_GENERATOR, z_dim=z_dim, output_range=generator_range)
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = torch.cat([G(chunk) for chunk in z.split(256)])
        if model:
            from ._options import load_model_from_options

            spec = load_model_from_options(model, spec_opts).spec
            images01 = adapter_for(G, spec).images01(images)
        else:
            images01 = to_unit_range(images, getattr(G, "output_range", (-1.0, 1.0)))
    with Staging() as staging:
        save_grid(images01, staging.path(Path(output)), nrow=nrow)
    if as_json:
        print_json({"output": output, "samples": count, "shape": list(images01.shape[1:])})
    else:
        click.echo(f"wrote {count} samples ({tuple(images01.shape[1:])}) to {output}")


@generator_group.command("info")
@click.option("--generator", "generator", default=None, metavar="NAME", help="A bundled generator.")
@json_option("Print the machine-readable card.")
def info_cmd(generator: str | None, as_json: bool) -> None:
    """Print the model card: data, architecture, training, quality checks, licence.

    \b
    Examples:
      auditor generator info
      auditor generator info --json
    """
    from auditor.generators import DEFAULT_GENERATOR, generator_card, generator_card_markdown

    name = generator or DEFAULT_GENERATOR
    if as_json:
        click.echo(json.dumps(generator_card(name), indent=2))
    else:
        click.echo(generator_card_markdown(name))


@generator_group.command("list")
@json_option("Print the names and descriptions as JSON.")
def list_cmd(as_json: bool) -> None:
    """Bundled generators.

    \b
    Examples:
      auditor generator list
      auditor generator list --json
    """
    from auditor.generators import generator_entry, list_generators

    if as_json:
        print_json([{"name": name, "description": generator_entry(name).description} for name in list_generators()])
        return
    for name in list_generators():
        click.echo(f"{name}: {generator_entry(name).description}")


@generator_group.command("train")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), default="runs/generator",
              help="Run folder: checkpoint, log, sample grids.")
@click.option("--minutes", type=float, default=120.0, help="Wall-clock training budget.")
@click.option("--threads", type=int, default=1, help="torch threads.")
@click.option("--seed", type=int, default=0, help="Seeds the training.")
@click.option("--resume", is_flag=True, help="Continue the run in --out (the budget counts the time already used).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="After training, write the weight files here (e.g. auditor/generators/weights).")
@click.option("--docs", "docs_dir", type=click.Path(file_okay=False), default="docs/generator",
              help="With --export: where the sample grid and training curves go.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder holding tinyimagenet32.zip.")
@json_option("Print the training's end state as JSON.")
@deprecated_alias("--out", "-o/--output", "out", type=click.Path(file_okay=False))
def train_cmd(out: str, minutes: float, threads: int, seed: int, resume: bool, export_dir: str | None,
              docs_dir: str, data_dir: str | None, as_json: bool) -> None:
    """Train the Tiny-ImageNet generator (the model card's rebuild command). Never trains on CIFAR-10.

    \b
    Examples:
      auditor generator train -o runs/generator --minutes 120
      auditor generator train -o runs/generator --resume --export auditor/generators/weights
    """
    from auditor.generators.training import release, train_main

    trainer = train_main(Path(out), minutes, resume, threads=threads, seed=seed, data_dir=data_dir)
    state = {"output": out, "step": trainer.step, "images_seen": trainer.images_seen, "minutes": trainer.elapsed_s / 60,
             "exported_to": export_dir}
    if not as_json:
        click.echo(f"trained to step {trainer.step} ({trainer.images_seen:,} images, {trainer.elapsed_s / 60:.1f} min)")
    if export_dir:
        card = release(Path(out), Path(export_dir), Path(docs_dir))
        if not as_json:
            click.echo(f"exported weights and model card to {export_dir}, grid and curves to {docs_dir} "
                       f"({card['training']['steps']} steps)")
    if as_json:
        print_json(state)
