"""The shipped results schema is the one the result models generate, and it rejects bad data."""

from __future__ import annotations

import jsonschema
import pytest

from audit.schema import generate_schema, load_schema, validate_results


def test_shipped_schema_is_current() -> None:
    assert load_schema() == generate_schema(), "regenerate with: python -m audit.schema"


def test_schema_rejects_unknown_status() -> None:
    minimal = {
        "schema_version": "1.0",
        "provenance": {"report_id": "x", "tool_version": "0", "started_at": "t", "finished_at": "t", "seed": 0,
                       "device": "cpu", "hardware": {}, "python": "3", "platform": "p", "libraries": {}, "files": [],
                       "config": {}, "config_sha256": "0", "model": {}},
        "checks": [{"id": "c", "category": "x", "title": "t", "status": "pass", "summary": "s"}],
        "summary": {"status": "pass", "counts": {"pass": 1}, "exit_code": 0},
    }
    validate_results(minimal)
    minimal["checks"][0]["status"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        validate_results(minimal)
