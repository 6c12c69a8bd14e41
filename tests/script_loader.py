"""Load a ``benchmarks/`` script as a module, for the tests that call its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _in_benchmarks(module: ModuleType) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().parent == BENCHMARKS


def load_script(script: str | Path) -> ModuleType:
    """The script (a name in benchmarks/ or a path) as a module, with benchmarks/ on the path for its sibling
    imports. It and the siblings it imports sit in ``sys.modules`` while it runs (dataclasses look their module
    up there) and are taken out after, so that no test sees another's copy."""
    path = Path(script) if isinstance(script, Path) else BENCHMARKS / f"{script}.py"
    saved_path, saved_modules = list(sys.path), dict(sys.modules)
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        for name, loaded in list(sys.modules.items()):
            if saved_modules.get(name) is not loaded and _in_benchmarks(loaded):
                del sys.modules[name]
                if name in saved_modules:
                    sys.modules[name] = saved_modules[name]
    return module
