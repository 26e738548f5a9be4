"""Traceability: which requirement (EU AI Act, NIST AI RMF) each check gives evidence for.

The mapping is data, in ``reports/data/traceability.yaml``, with the version of the legal text it
refers to. A check is mapped by its id and, failing that, by its category, so a new check in an
existing category inherits a mapping; requirements every threshold-tested check evidences
(``all_checks``) are added to every mapped check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from audit.results import AuditResult, CheckResult

DATA_FILE = "data/traceability.yaml"


@dataclass(frozen=True)
class Requirement:
    """One provision of a legal or standard text."""

    id: str
    source: str
    text: str


@dataclass(frozen=True)
class Mapping:
    """The parsed traceability file."""

    sources: dict[str, dict[str, str]]
    requirements: dict[str, Requirement]
    all_checks: tuple[str, ...]
    checks: dict[str, tuple[str, ...]]
    categories: dict[str, tuple[str, ...]]

    def for_check(self, check_id: str, category: str) -> tuple[Requirement, ...]:
        """Requirements a check evidences (by id, else by category); empty when it is not mapped."""
        ids = self.checks.get(check_id) or self.categories.get(category)
        if not ids:
            return ()
        ordered = list(dict.fromkeys((*self.all_checks, *ids)))
        order = list(self.requirements)
        return tuple(self.requirements[i] for i in sorted(ordered, key=order.index))


#: Precedence of the statuses a requirement can take from its applicable checks, least severe first. A
#: ``fail`` threshold set in the config that could not be judged while it blocks the gate makes its check
#: count as ``not_judged`` (after ``fail``, before ``warn``, as in the audit's verdict).
TRACE_ORDER = {"pass": 0, "measured": 1, "warn": 2, "not_judged": 3, "fail": 4, "error": 5}


@dataclass(frozen=True)
class TraceRow:
    """A row of the report's traceability table: a requirement and the checks evidencing it.

    ``not_judged`` holds the ids of checks with a blocking ``fail`` threshold that could not be judged.
    """

    requirement: Requirement
    checks: list[CheckResult] = field(default_factory=list)
    not_judged: frozenset[str] = frozenset()

    def check_status(self, check: CheckResult) -> str:
        """The status a check lends the requirement: its own, or ``not_judged`` for a check that did not
        fail or crash but left a blocking threshold unjudged (a skipped check included)."""
        if check.status not in ("fail", "error") and check.id in self.not_judged:
            return "not_judged"
        return check.status

    @property
    def skipped(self) -> list[CheckResult]:
        """Checks that did not apply (and leave nothing unjudged): listed, never deciding the status."""
        return [c for c in self.checks if self.check_status(c) == "skipped"]

    @property
    def status(self) -> str:
        """The worst status (``TRACE_ORDER``) of the applicable checks — skipped ones do not apply and are
        left out, so 10 passed and 2 skipped is ``pass``; ``"skipped"`` when every check was skipped;
        ``"not tested"`` when no check of this audit evidences the requirement."""
        if not self.checks:
            return "not tested"
        applicable = [self.check_status(c) for c in self.checks if self.check_status(c) != "skipped"]
        if not applicable:
            return "skipped"
        return max(applicable, key=TRACE_ORDER.__getitem__)


def parse_mapping(data: dict[str, Any]) -> Mapping:
    """Validate and parse the YAML content of a traceability file.

    Raises
    ------
    ValueError
        When a check or category names a requirement the file does not define, or a requirement
        names an unknown source.
    """
    sources = {str(k): dict(v) for k, v in data["sources"].items()}
    requirements: dict[str, Requirement] = {}
    for item in data["requirements"]:
        req = Requirement(id=str(item["id"]), source=str(item["source"]), text=str(item["text"]))
        if req.source not in sources:
            raise ValueError(f"requirement {req.id!r} names unknown source {req.source!r}")
        requirements[req.id] = req

    def _ids(where: str, ids: list[str]) -> tuple[str, ...]:
        unknown = [i for i in ids if i not in requirements]
        if unknown:
            raise ValueError(f"{where} names undefined requirement(s) {unknown}")
        return tuple(ids)

    return Mapping(
        sources=sources,
        requirements=requirements,
        all_checks=_ids("all_checks", data.get("all_checks", [])),
        checks={k: _ids(f"checks.{k}", v) for k, v in data.get("checks", {}).items()},
        categories={k: _ids(f"categories.{k}", v) for k, v in data.get("categories", {}).items()},
    )


@lru_cache(maxsize=1)
def load_mapping() -> Mapping:
    """The mapping shipped in ``reports/data/traceability.yaml`` (read once)."""
    text = resources.files("reports").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return parse_mapping(yaml.safe_load(text))


def requirements_for(check: CheckResult) -> tuple[Requirement, ...]:
    """Requirements the check gives evidence for (empty when the mapping does not know it)."""
    return load_mapping().for_check(check.id, check.category)


def trace_rows(result: AuditResult) -> list[TraceRow]:
    """One row per requirement of the mapping, in file order, with the checks of ``result`` evidencing it.

    Requirements no check of this audit evidences are kept (status ``"not tested"``), so the
    table also shows what this audit does *not* cover.
    """
    mapping = load_mapping()
    blocked = frozenset(u.check for u in result.summary.not_judged if u.blocking)
    rows = {rid: TraceRow(req, not_judged=blocked) for rid, req in mapping.requirements.items()}
    for check in result.checks:
        for req in mapping.for_check(check.id, check.category):
            rows[req.id].checks.append(check)
    return list(rows.values())


def unmapped_checks(result: AuditResult) -> list[CheckResult]:
    """Checks of ``result`` the mapping knows neither by id nor by category."""
    return [c for c in result.checks if not requirements_for(c)]
