"""``auditor evaluate``: ACC, ASR and RA of an ONNX classifier, measured in onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._options import load_model_from_options, spec_options


@click.command("evaluate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Evaluation data: an .npz with x (N,H,W,C uint8) and y (N,), or a folder with one subfolder per class.")
@click.option("--attack-from", "attack_from", metavar="MANIFEST[:NAME]",
              help="Take the attack from a zoo manifest entry (NAME defaults to the entry whose file is MODEL).")
@click.option("--attack", "attack_name", help="Attack by name with its default settings (e.g. badnets).")
@click.option("--target", type=int, default=None, help="Target class for --attack (default 0).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@spec_options
def evaluate_cmd(model: Path, data_path: Path, attack_from: str | None, attack_name: str | None, target: int | None,
                 as_json: bool, **spec_opts: Any) -> None:
    """Clean accuracy, attack success rate and robust accuracy of MODEL on --data."""
    from auditor.data.formats import load_eval_data
    from auditor.errors import AuditorError
    from auditor.evaluate import OnnxClassifier, evaluate, format_table

    from ._measure import resolve_attack

    loaded = load_model_from_options(str(model), spec_opts)
    spec = loaded.spec
    attack = resolve_attack(model, spec, attack_from, attack_name, target)
    if attack is None and attack_from:
        raise AuditorError(f"{attack_from}: the manifest entry of {model.name} is a clean model and names no attack")
    x, y, _names = load_eval_data(data_path, expect_shape=(spec.height, spec.width, spec.channels))
    result = evaluate(OnnxClassifier(loaded.path, spec), x, y, attack)
    if as_json:
        click.echo(json.dumps({"model": str(model), "data": str(data_path), **result.to_json(),
                               "attack_params": attack.params() if attack else None}, indent=2))
    else:
        click.echo(format_table([(model.name, result)]))
