"""Measurement against real data for ``evaluate`` and ``audit --eval-data``.

Zoo-side code (attacks, data formats, evaluation): the API and the commands import it only when the user asks for
a measurement, so the audit itself never depends on data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from converters import ModelSpec, load_onnx


def resolve_attack(model: Path, spec: ModelSpec, attack_from: str | None, attack_name: str | None,
                   target: int | None) -> Any | None:
    """The attack named by ``--attack-from MANIFEST[:NAME]`` or ``--attack NAME [--target T]``."""
    from auditor.attacks import attack_from_params, get_attack
    from auditor.errors import AuditorError
    from auditor.zoo.manifest import find_entry

    if attack_from and attack_name:
        raise AuditorError("give either --attack-from or --attack, not both")
    if attack_from:
        manifest, _, name = attack_from.partition(":")
        manifest_path = Path(manifest)
        if manifest_path.is_dir():
            manifest_path = manifest_path / "manifest.json"
        if not manifest_path.is_file():
            raise AuditorError(f"--attack-from: {manifest_path} does not exist")
        entry = find_entry(manifest_path, name=name or None, model_file=None if name else model)
        if entry.get("attack") is None:
            return None  # a clean model: only accuracy is measured
        return attack_from_params(entry["attack"], base_dir=manifest_path.parent)
    if attack_name:
        kwargs: dict[str, Any] = {"num_classes": spec.num_classes}
        if target is not None:
            kwargs["target"] = target
        return get_attack(attack_name, **kwargs)
    if target is not None:
        raise AuditorError("--target needs --attack")
    return None


def make_evaluator(data_path: Path, spec: ModelSpec, attack: Any | None) -> Callable[[Path], dict]:
    """A callback that measures ACC/ASR/RA of an ONNX file in onnxruntime on ``data_path``."""
    from auditor.data.formats import load_eval_data
    from auditor.evaluate import OnnxClassifier, evaluate

    x, y, _names = load_eval_data(data_path, expect_shape=(spec.height, spec.width, spec.channels))

    def measure(onnx_path: Path) -> dict:
        loaded = load_onnx(onnx_path)
        result = evaluate(OnnxClassifier(loaded.path, spec), x, y, attack)
        return {**result.to_json(), "data": str(data_path)}

    return measure
