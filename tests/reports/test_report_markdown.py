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
        "- **FAIL** fairness.group\\_gaps: tpr\\_gap = 0.2100, required ≤ 0.1000 (fail level, config): missed",
        "- **WARN** robustness.pgd: robust\\_accuracy = 0.4100, required ≥ 0.5000 (warn level, config): missed",
    ]
    assert "accuracy 0.9120 \\[0.8920, 0.9320\\] n=500" in rows[0]


def test_user_text_escaped(audit_result: AuditResult) -> None:
    text = render_markdown(audit_result)
    assert "<script>" not in text and "<oops>" not in text
    assert "\\<script\\>" in text
    assert escape_md("a | b\nc <d>") == "a \\| b c \\<d\\>"


def test_empty_audit(audit_result: AuditResult) -> None:
    text = render_markdown(audit_result.model_copy(update={"checks": [], "summary": summarise([])}))
    assert text.startswith("## deepaudit: NOT JUDGED — nothing was judged")  # no check ran: nothing is evidenced
    assert _table_rows(text) == []
    assert "Judged: **nothing**" in text


def test_measured_and_not_judged_are_spelled_out(audit_result: AuditResult) -> None:
    from audit.results import ThresholdOutcome

    perf = audit_result.checks[0].model_copy(update={"status": "measured", "thresholds": []})
    ood = audit_result.checks[4].model_copy(update={"thresholds": [ThresholdOutcome(
        metric="worst_auroc", min=0.9, observed=None, passed=False, source="config", note="the check was skipped")]})
    checks = [perf, audit_result.checks[1], ood]
    text = render_markdown(audit_result.model_copy(update={"checks": checks, "summary": summarise(checks)}))
    rows = _table_rows(text)
    assert "**MEASURED**" in _cells(rows[0])[1] and "PASS" not in rows[0]
    assert _cells(rows[0])[3] == "measured, not judged: no threshold applies"
    assert "Judged: fairness.group\\_gaps · measured, not judged: performance." in text
    assert ("- **blocks the gate** ood.energy: worst\\_auroc required ≥ 0.9000 (fail level, config): not judged — "
            "the check was skipped") in text
