"""Every script in benchmarks/ is a maintained tool: ``main(["--help"])`` exits 0 and prints a usage.

The scripts are found by listing the folder, so a new script gets this test without an edit here.
``markers.py`` is a helper module that the scripts import, not a script.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from script_loader import BENCHMARKS, load_script

HELPERS = {"markers.py"}
MAIN_GUARD = re.compile(r'^if __name__ == "__main__":\n    (sys\.exit|raise SystemExit)\(main\(\)\)$', re.M)
SCRIPTS = sorted(path for path in BENCHMARKS.glob("*.py") if path.name not in HELPERS)


def test_the_folder_holds_scripts() -> None:
    assert len(SCRIPTS) >= 10 and all((BENCHMARKS / helper).exists() for helper in HELPERS)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_has_main_and_help(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert MAIN_GUARD.search(path.read_text()), "no `if __name__ == \"__main__\": sys.exit(main())`"
    module = load_script(path)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()
