"""Regenerate ``results.schema.json`` from the result models."""

import json

from audit.schema import SCHEMA_PATH, generate_schema

SCHEMA_PATH.write_text(json.dumps(generate_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
print(f"wrote {SCHEMA_PATH}")
