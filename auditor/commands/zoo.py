"""``auditor zoo``: rebuild the sample models from the real data."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._options import deprecated_alias, json_option, print_json

DEFAULT_OUT = Path("sample_models")


@click.group("zoo")
def zoo_group() -> None:
    """The CIFAR-10 sample-model zoo (backdoored and clean models with a manifest).

    \b
    Examples:
      auditor zoo list
      auditor zoo build --quick --model cifar10_badnets
    """


@zoo_group.command("list")
@json_option("Print the recipes as JSON.")
def list_cmd(as_json: bool) -> None:
    """Zoo models that can be built, with attack and export style.

    \b
    Examples:
      auditor zoo list
      auditor zoo list --json
    """
    from auditor.zoo.recipes import HELD_APART_DIR, HELD_APART_RECIPES, HOLDOUT_RECIPES, RECIPES

    if as_json:
        print_json([{"name": r.name, "attack": r.attack, "export_style": r.export_style, "arch": r.arch,
                     "held_out": r.name in HOLDOUT_RECIPES, "held_apart": r.name in HELD_APART_RECIPES}
                    for r in (*RECIPES.values(), *HOLDOUT_RECIPES.values(), *HELD_APART_RECIPES.values())])
        return
    for recipe in RECIPES.values():
        click.echo(f"{recipe.name:26s} attack={recipe.attack or 'none':16s} export={recipe.export_style:20s} init={recipe.init}")
    for recipe in HOLDOUT_RECIPES.values():
        click.echo(f"{recipe.name:26s} held out (not committed; build with --out runs/holdout) arch={recipe.arch} "
                   f"export={recipe.export_style}")
    for recipe in HELD_APART_RECIPES.values():
        click.echo(f"{recipe.name:28s} held apart (in {HELD_APART_DIR}/; build with -o {HELD_APART_DIR}) "
                   f"attack={recipe.attack or 'none'} arch={recipe.arch} export={recipe.export_style}")


@zoo_group.command("table")
@click.option("--zoo", "folder", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT,
              help="Zoo folder with manifest.json.")
@json_option("Print the manifest's model entries as JSON instead of the table.")
@deprecated_alias("--dir", "--zoo", "folder", type=click.Path(file_okay=False, path_type=Path))
def table_cmd(folder: Path, as_json: bool) -> None:
    """The zoo's figures as a Markdown table (what docs/zoo.md shows).

    \b
    Examples:
      auditor zoo table
      auditor zoo table --zoo runs/holdout --json
    """
    from auditor.zoo.manifest import read_manifest
    from auditor.zoo.report import markdown_table

    if as_json:
        print_json(read_manifest(Path(folder))["models"])
    else:
        click.echo(markdown_table(folder))


@zoo_group.command("build")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Zoo model to build (repeatable; default: every committed one; `zoo list` names the held-out ones).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: sample_models, or a temporary folder with --quick).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with cifar10.zip (default: $AUDITOR_DATA_DIR, else ../shared/data).")
@click.option("--quick", is_flag=True, help="Tiny network, 1 epoch, 512 images: checks the pipeline in seconds.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu",
              help="Where the network trains (export and evaluation run on the CPU in onnxruntime either way).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe field for a sweep (arch, seed, epochs, lr, warmup, export_style, attack_kwargs).")
@click.option("--validation", type=int, default=0,
              help="Hold out this many training images and report ACC/ASR/RA on them: tune on these, not on the test set.")
@json_option("Print the manifest entries as JSON.")
@deprecated_alias("--out", "-o/--output", "out_dir", type=click.Path(file_okay=False, path_type=Path))
def build_cmd(models: tuple[str, ...], out_dir: Path | None, data_dir: str | None, quick: bool, threads: int | None,
              device: str, sets: tuple[str, ...], validation: int, as_json: bool) -> None:
    """Train, export and evaluate zoo models (seeded), recording them in OUTPUT/manifest.json.

    \b
    Examples:
      auditor zoo build --quick --model cifar10_badnets
      auditor zoo build --model cifar10_clean_a --device cuda
      auditor zoo build --model cifar10_badnets --set seed=1 --validation 5000 -o runs/sweep
    """
    import tempfile

    from auditor.zoo.build import build_model
    from auditor.zoo.recipes import RECIPES, get_recipe, with_overrides

    from ._options import key_value_pairs

    overrides = key_value_pairs(sets, "--set")
    names = list(models) or list(RECIPES)
    for name in names:
        with_overrides(get_recipe(name), overrides)  # fail before any training on a typo or a bad override
    if (overrides or validation) and out_dir in (None, DEFAULT_OUT) and not quick:
        raise click.UsageError("--set and --validation make sweep models: give them an -o/--output folder other than sample_models")
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="auditor-zoo-quick-")) if quick else DEFAULT_OUT
    entries = []
    for name in names:
        entry = build_model(name, out_dir, data_dir=data_dir, quick=quick, threads=threads, device=device,
                            overrides=overrides, validation=validation)
        entries.append(entry)
        if not as_json:
            test = entry["metrics"]["test"]
            pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
            val = entry["metrics"].get("validation")
            held = f"validation ACC {pct(val['acc'])} ASR {pct(val['asr'])}; " if val else ""
            click.echo(f"{name}: {held}test ACC {pct(test['acc'])} ASR {pct(test['asr'])} RA {pct(test['ra'])} "
                       f"({entry['training_seconds']:.0f} s) -> {out_dir / entry['file']}")
    if as_json:
        click.echo(json.dumps(entries, indent=2))
