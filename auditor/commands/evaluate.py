"""``auditor evaluate``: ACC, ASR and RA of an ONNX classifier, measured in onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._options import deprecated_alias, json_option, load_model_from_options, print_json, spec_options


@click.command("evaluate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--eval-data", "data_path", type=click.Path(path_type=Path), default=None,
              help="Evaluation data: an .npz with x (N,H,W,C uint8) and y (N,), or a folder with one subfolder per class.")
@click.option("--attack-from", "attack_from", metavar="MANIFEST[:NAME]",
              help="Take the attack from a zoo manifest entry (NAME defaults to the entry whose file is MODEL).")
@click.option("--attack", "attack_name", help="Attack by name with its default settings (e.g. badnets).")
@click.option("--target", type=int, default=None, help="Target class for --attack (default 0).")
@json_option("Print JSON instead of a table.")
@spec_options
@deprecated_alias("--data", "--eval-data", "data_path", type=click.Path(path_type=Path))
def evaluate_cmd(model: Path, data_path: Path, attack_from: str | None, attack_name: str | None, target: int | None,
                 as_json: bool, **spec_opts: Any) -> None:
    """Clean accuracy, attack success rate and robust accuracy of MODEL on --eval-data, in onnxruntime.

    \b
    Examples:
      auditor evaluate suspect.onnx --eval-data test.npz
      auditor evaluate suspect.onnx --eval-data test.npz --attack badnets --target 0 --json
      auditor evaluate sample_models/cifar10_wanet.onnx --eval-data sample_models/cifar10_test_1000.npz --attack-from sample_models
    """
    from auditor.data.formats import load_eval_data
    from auditor.errors import AuditorError
    from auditor.evaluate import OnnxClassifier, evaluate, format_table

    from auditor.measure import resolve_attack

    if data_path is None:
        raise click.UsageError("Missing option '--eval-data'.")
    loaded = load_model_from_options(str(model), spec_opts)
    spec = loaded.spec
    attack = resolve_attack(model, spec, attack_from, attack_name, target)
    if attack is None and attack_from:
        raise AuditorError(f"{attack_from}: the manifest entry of {model.name} is a clean model and names no attack")
    x, y, _names = load_eval_data(data_path, expect_shape=(spec.height, spec.width, spec.channels))
    result = evaluate(OnnxClassifier(loaded.path, spec), x, y, attack)
    if as_json:
        print_json({"model": str(model), "data": str(data_path), **result.to_json(),
                    "attack_params": attack.params() if attack else None})
    else:
        click.echo(format_table([(model.name, result)]))
