"""The bundled sample: a BadNets CIFAR-10 model, its zoo manifest and the committed evaluation subset.

They are what ``auditor audit`` with no MODEL works on, so they must be found wherever the command
runs, not only in the repository root. The package holds them as ``auditor/sample_models`` (a link
to the repository's ``sample_models/`` in a checkout, the files themselves in an installed wheel),
so no binary is stored twice.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_MODEL = "cifar10_badnets.onnx"
EVAL_SUBSET = "cifar10_test_1000.npz"
MANIFEST = "manifest.json"


def _candidates() -> list[Path]:
    """Where the samples may be: inside the package (wheel, or a checkout's link), then the checkout's own
    folder (a checkout made where links are not supported holds a text file instead of the link)."""
    found = [Path(str(resources.files("auditor") / "sample_models"))]
    found.append(Path(__file__).resolve().parents[1] / "sample_models")
    return found


def sample_path(name: str = SAMPLE_MODEL) -> Path:
    """The bundled file ``name`` (the default sample model unless named), from any working directory."""
    for folder in _candidates():
        if (folder / name).is_file():
            return folder / name
    from .errors import AuditorError

    raise AuditorError(f"the bundled sample {name} is not installed (looked in "
                       f"{', '.join(str(f) for f in _candidates())}); name a model")


def default_sample() -> tuple[Path, Path, Path]:
    """The sample model, the evaluation subset it is measured on, and the manifest naming its attack."""
    return sample_path(SAMPLE_MODEL), sample_path(EVAL_SUBSET), sample_path(MANIFEST)
