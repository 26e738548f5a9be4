"""Manual attestations as the report shows them: human statements the tool cannot evidence.

``AuditResult.attestations`` carries what the config held (validated there by
:class:`audit.config.Attestation`); older results may hold plain strings. Here every known topic
gets a row, present or not, so missing and open ones can be counted on page one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit.results import AuditResult

from ._format import to_yaml

#: Topics a high-risk system's documentation needs a human statement for, in report order.
KNOWN_TOPICS: dict[str, str] = {
    "intended_purpose": "Intended purpose",
    "human_oversight": "Human oversight measures",
    "data_governance": "Data governance",
    "logging": "Logging",
    "post_market_monitoring": "Post-market monitoring",
}


@dataclass(frozen=True)
class AttestationRow:
    """One topic: its statement (if any) and whether it counts as open."""

    key: str
    title: str
    statement: str | None
    owner: str | None
    date: str | None
    status: str  # "stated", "approved", "open" or "missing"

    @property
    def is_open(self) -> bool:
        """Missing or marked open: not evidenced, and not yet stated by anyone."""
        return self.status in ("open", "missing")


FIELDS = {"statement", "owner", "date", "status"}


def _row(key: str, value: Any) -> AttestationRow:
    title = KNOWN_TOPICS.get(key, key.replace("_", " ").capitalize())
    if isinstance(value, dict) and not set(value) <= FIELDS:
        # A free-form mapping (results written before attestations were typed): show it as YAML.
        value = to_yaml(value)
    if isinstance(value, dict):
        statement = value.get("statement")
        return AttestationRow(key, title, None if statement is None else str(statement),
                              None if value.get("owner") is None else str(value["owner"]),
                              None if value.get("date") is None else str(value["date"]),
                              str(value.get("status") or ("stated" if statement else "open")))
    if value is None or value == "":
        return AttestationRow(key, title, None, None, None, "missing")
    return AttestationRow(key, title, str(value), None, None, "stated")


def attestation_rows(result: AuditResult) -> list[AttestationRow]:
    """Every known topic (missing ones included), then any extra topics the config added."""
    given = result.attestations
    rows = [_row(k, given[k]) if k in given else AttestationRow(k, t, None, None, None, "missing")
            for k, t in KNOWN_TOPICS.items()]
    rows += [_row(k, v) for k, v in given.items() if k not in KNOWN_TOPICS]
    return rows


def open_attestations(result: AuditResult) -> list[AttestationRow]:
    """Rows that are missing or open: listed on page one as not evidenced by the tool."""
    return [r for r in attestation_rows(result) if r.is_open]
