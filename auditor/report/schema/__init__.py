"""The JSON Schema of report.json (``auditor.report/1``), shipped with the package."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")


@lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_report(report: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``report`` does not follow the schema (needs the
    ``test`` extra: jsonschema is not a runtime dependency)."""
    import jsonschema

    jsonschema.validate(report, report_schema(), cls=jsonschema.Draft202012Validator)
