"""Every script in benchmarks/ is a maintained tool: ``main(["--help"])`` exits 0 and prints a usage.

The scripts are found by listing the folder, so a new script gets this test without an edit here.
``markers.py`` is a helper module that the scripts import, not a script.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HELPERS = {"markers.py"}
MAIN_GUARD = re.compile(r'^if __name__ == "__main__":\n    (sys\.exit|raise SystemExit)\(main\(\)\)$', re.M)
SCRIPTS = sorted(path for path in BENCHMARKS.glob("*.py") if path.name not in HELPERS)


def _in_benchmarks(module) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().parent == BENCHMARKS


def _load(path: Path):
    """The script as a module, with benchmarks/ on the path for its sibling imports. It and the siblings
    it imports sit in ``sys.modules`` while it runs (dataclasses look their module up there) and are
    taken out after, so that no test sees another's copy."""
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


def test_the_folder_holds_scripts() -> None:
    assert len(SCRIPTS) >= 10 and all((BENCHMARKS / helper).exists() for helper in HELPERS)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_has_main_and_help(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert MAIN_GUARD.search(path.read_text()), "no `if __name__ == \"__main__\": sys.exit(main())`"
    module = _load(path)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()
