"""Markdown summary for CI job pages."""

from __future__ import annotations

from audit.results import AuditResult, summarise
from reports import render_markdown
from reports.markdown import escape_md


def _table_rows(text: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return rows[2:]  # header and separator


def _cells(row: str) -> list[str]:
    # Split on unescaped pipes only.
    cells, current, escaped = [], "", False
    for ch in row.strip()[1:-1]:
        if ch == "|" and not escaped:
            cells.append(current.strip())
            current = ""
        else:
            current += ch
        escaped = ch == "\\" and not escaped
    return [*cells, current.strip()]


def test_heading_rows_and_missed_lines(failing_result: AuditResult) -> None:
    text = render_markdown(failing_result)
    assert text.startswith("## deepaudit: FAIL — 1 of 4 checks missed a threshold")
    rows = _table_rows(text)
    assert len(rows) == len(failing_result.checks)
    assert all(len(_cells(row)) == 4 for row in rows)
    for row, check in zip(rows, failing_result.checks):
        assert escape_md(check.id) in _cells(row)[0]
        assert f"**{check.status.upper()}**" in _cells(row)[1]
    missed = [line for line in text.splitlines() if line.startswith("- **")]
    assert missed == [
        "- **FAIL** fairness.group\\_gaps: tpr\\_gap = 0.2100, required ≤ 0.1000 (fail level): missed",
        "- **WARN** robustness.pgd: robust\\_accuracy = 0.4100, required ≥ 0.5000 (warn level): missed",
    ]
    assert "accuracy 0.9120 \\[0.8920, 0.9320\\] n=500" in rows[0]


def test_user_text_escaped(audit_result: AuditResult) -> None:
    text = render_markdown(audit_result)
    assert "<script>" not in text and "<oops>" not in text
    assert "\\<script\\>" in text
    assert escape_md("a | b\nc <d>") == "a \\| b c \\<d\\>"


def test_empty_audit(audit_result: AuditResult) -> None:
    text = render_markdown(audit_result.model_copy(update={"checks": [], "summary": summarise([])}))
    assert text.startswith("## deepaudit: SKIPPED — no checks ran")
    assert _table_rows(text) == []
