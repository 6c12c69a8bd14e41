"""``auditor bench``: the defense comparison over the zoo (measurement; reads real data)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("bench")
@click.option("--zoo", type=click.Path(exists=True, file_okay=False), default="sample_models", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench", show_default=True)
@click.option("--model", "models", multiple=True, help="Only these zoo models (repeatable).")
@click.option("--config", "configs", multiple=True, help="Only these defenses (repeatable); default all.")
@click.option("--eval-limit", type=int, default=None, help="Evaluate on the first N test images only.")
@click.option("--per-class", type=int, default=None, help="SMI samples per class (default 250).")
@click.option("--steps", type=int, default=None, help="Most SMI optimization steps per particle (default 8).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with cifar10.zip etc.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--merge", "merge", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Run nothing: print one table from these bench.json files (repeatable; later rows win).")
@click.option("--matrix", is_flag=True, help="With --merge: one row per model, one column per defense (ASR / ACC), "
              "and the means.")
def bench_cmd(zoo: str, out: str, models: tuple[str, ...], configs: tuple[str, ...], eval_limit: int | None,
              per_class: int | None, steps: int | None, data_dir: str | None, seed: int, merge: tuple[str, ...],
              matrix: bool) -> None:
    """Tabulate ACC / ASR / RA / DER and wall time of every defense on every zoo model."""
    import json

    from auditor.bench import CONFIGS, BenchSetup, merge_documents, render_matrix, render_table, run_bench

    if matrix and not merge:
        raise click.BadParameter("--matrix renders merged runs: give it --merge bench.json files", param_hint="--matrix")
    if merge:
        try:
            documents = [json.loads(Path(path).read_text()) for path in merge]
            click.echo((render_matrix if matrix else render_table)(merge_documents(documents)))
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
    click.echo(render_table(document))
