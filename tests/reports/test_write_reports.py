"""write_reports: exactly the asked files, results.json round-trips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from junitparser import JUnitXml

from audit.results import AuditResult
from reports import write_reports


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_json_only(tmp_path: Path, audit_result: AuditResult) -> None:
    written = write_reports(audit_result, tmp_path / "out", html=False)
    assert written == {"json": tmp_path / "out" / "results.json"}
    assert _files(tmp_path) == {"out/results.json"}
    text = written["json"].read_text(encoding="utf-8")
    assert text == audit_result.model_dump_json(indent=2)
    assert AuditResult.model_validate_json(text) == audit_result


def test_every_format(tmp_path: Path, audit_result: AuditResult, html_report: str) -> None:
    out = tmp_path / "out"
    written = write_reports(audit_result, out, junit=tmp_path / "ci" / "junit.xml", markdown=tmp_path / "summary.md")
    assert written == {"json": out / "results.json", "html": out / "report.html",
                       "junit": tmp_path / "ci" / "junit.xml", "markdown": tmp_path / "summary.md"}
    assert _files(tmp_path) == {"out/results.json", "out/report.html", "ci/junit.xml", "summary.md"}
    assert written["html"].read_text(encoding="utf-8") == html_report
    assert next(iter(JUnitXml.fromfile(str(written["junit"])))).tests == 5
    assert written["markdown"].read_text(encoding="utf-8").startswith("## deepaudit: ERROR")


def test_render_error_writes_nothing(tmp_path: Path, audit_result: AuditResult, monkeypatch: pytest.MonkeyPatch) -> None:
    import reports

    def broken(result: AuditResult) -> str:
        raise RuntimeError("template broke")

    monkeypatch.setattr(reports, "render_markdown", broken)
    with pytest.raises(RuntimeError):
        write_reports(audit_result, tmp_path / "out", html=False, markdown=tmp_path / "s.md")
    assert not os.path.exists(tmp_path / "out")
