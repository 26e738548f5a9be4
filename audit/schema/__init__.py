"""The versioned JSON Schema of ``results.json``.

``results.schema.json`` is generated from :mod:`audit.results`; regenerate it after changing the
result models with ``python -m audit.schema`` (a test fails while the two differ).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")


def generate_schema() -> dict[str, Any]:
    from audit.results import SCHEMA_VERSION, AuditResult

    schema = AuditResult.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"deepaudit/results/{SCHEMA_VERSION}"
    schema["title"] = f"deepaudit results.json, schema version {SCHEMA_VERSION}"
    return schema


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_results(data: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``data`` does not follow the shipped schema."""
    import jsonschema

    jsonschema.validate(data, load_schema(), cls=jsonschema.Draft202012Validator)
