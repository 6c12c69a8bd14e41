"""``auditor bench``: the defense comparison over the zoo (measurement; reads real data)."""

from __future__ import annotations

from pathlib import Path

import click

from ._options import deprecated_alias, json_option, print_json


@click.command("bench")
@click.option("--zoo", type=click.Path(exists=True, file_okay=False), default="sample_models",
              help="Zoo folder with manifest.json.")
@click.option("--report-dir", "out", type=click.Path(file_okay=False), default="runs/bench",
              help="Folder for bench.json and each model's audit report.")
@click.option("--model", "models", multiple=True, metavar="NAME", help="Only these zoo models (repeatable).")
@click.option("--config", "configs", multiple=True, help="Only these defenses (repeatable); default all.")
@click.option("--eval-limit", type=int, default=None, help="Evaluate on the first N test images only.")
@click.option("--per-class", type=int, default=None, help="SMI samples per class (default 250).")
@click.option("--steps", type=int, default=None, help="Most SMI optimization steps per particle (default 8).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with cifar10.zip etc.")
@click.option("--seed", type=int, default=0, help="Seeds every defense.")
@click.option("--merge", "merge", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Run nothing: print one table from these bench.json files (repeatable; later rows win).")
@click.option("--matrix", is_flag=True, help="With --merge: one row per model, one column per defense (ASR / ACC), "
              "and the means.")
@json_option("Print the bench document (bench.json's content) instead of the table.")
@deprecated_alias("--out", "--report-dir", "out", type=click.Path(file_okay=False))
def bench_cmd(zoo: str, out: str, models: tuple[str, ...], configs: tuple[str, ...], eval_limit: int | None,
              per_class: int | None, steps: int | None, data_dir: str | None, seed: int, merge: tuple[str, ...],
              matrix: bool, as_json: bool) -> None:
    """Tabulate ACC / ASR / RA / DER and wall time of every defense on every zoo model.

    \b
    Examples:
      auditor bench --model cifar10_badnets --config ibau --eval-limit 200
      auditor bench --merge runs/a/bench.json --merge runs/b/bench.json --matrix
      auditor bench --model cifar10_badnets --json > bench.json
    """
    import json

    from auditor.bench import CONFIGS, BenchSetup, merge_documents, render_matrix, render_table, run_bench

    if matrix and not merge:
        raise click.BadParameter("--matrix renders merged runs: give it --merge bench.json files", param_hint="--matrix")
    if merge:
        try:
            documents = [json.loads(Path(path).read_text()) for path in merge]
            merged = merge_documents(documents)
            if as_json:
                print_json(merged)
            else:
                click.echo((render_matrix if matrix else render_table)(merged))
        except (ValueError, KeyError) as exc:
            raise click.BadParameter(f"not a bench.json from `auditor bench` ({exc})", param_hint="--merge") from None
        return
    from auditor.inversion.smi import InversionConfig, with_overrides

    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise click.BadParameter(f"unknown config(s) {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    setup = BenchSetup(zoo=Path(zoo), out=Path(out), configs=tuple(configs) or CONFIGS, models=tuple(models) or None,
                       eval_limit=eval_limit, seed=seed, data_dir=data_dir,
                       inversion=with_overrides(InversionConfig(), per_class=per_class, particle_steps=steps, seed=seed))
    document = run_bench(setup, log=lambda line: click.echo(line, err=True))
    if as_json:
        print_json(document)
    else:
        click.echo(render_table(document))
