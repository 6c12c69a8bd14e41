"""The pages describe the project as it is: CI runs the README's test command, and no page, comment or
docstring narrates the development history (that goes in CHANGELOG.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDINALS = ("tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth "
            "twentieth").split()
# "the sixteenth round"; a fraction ("a tenth of the learning rate") is not history
HISTORY = re.compile(r"\b(" + "|".join(ORDINALS) + r")\b(?! of\b)|\b(development|work) (round|session)s?\b"
                     r"|\bthis session\b|\bprevious session\b|the issue's bar", re.IGNORECASE)


def _project_text_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for folder in ("auditor", "converters"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line)
    assert f"```bash\n{command}\n```" in readme


@pytest.mark.parametrize("path", _project_text_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_or_comment_narrates_the_development_history(path: Path) -> None:
    hits = [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
            if HISTORY.search(line)]
    assert not hits, hits


@pytest.mark.parametrize("path", [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_says_session_only_of_onnxruntime(path: Path) -> None:
    hits = [line.strip() for line in path.read_text().splitlines()
            if re.search(r"\bsessions?\b", line, re.IGNORECASE) and "onnxruntime" not in line.lower()]
    assert not hits, hits


# imported inside a function that says which extra it needs
OPTIONAL_IMPORTS = {"jsonschema": "auditor.report.schema.validate_report (the test extra)"}


def _declared_distributions() -> set[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra, extra_requirements in project["optional-dependencies"].items():
        if extra != "test":  # the package's own code may not need a test-only dependency
            requirements += extra_requirements
    return {re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_every_package_the_code_imports_is_a_declared_dependency() -> None:
    """A module imported by auditor/ or converters/ but installed here by something else passes CI and breaks
    a fresh install (scipy once did: the README's main command exited 2)."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    providers = packages_distributions()
    declared = _declared_distributions()
    missing = set()
    for folder in ("auditor", "converters"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                         else [])
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in ("auditor", "converters") or top in OPTIONAL_IMPORTS:
                        continue
                    distributions = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                    if not distributions & declared:
                        missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, sorted(missing)
