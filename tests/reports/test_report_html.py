"""The HTML report: verdict, escaping, no network, accessibility, determinism."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from audit.results import AuditResult, CheckResult, Table, summarise
from reports import render_html
from reports.html import MAX_TABLE_ROWS, environment, template_context

SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"


class _Tags(HTMLParser):
    """Collects every start tag with its attributes, and the page's visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def _named(parser: _Tags, name: str) -> list[dict[str, str | None]]:
    return [attrs for tag, attrs in parser.tags if tag == name]


def test_verdict_and_every_check_id(audit_result: AuditResult, html_report: str) -> None:
    text = " ".join(" ".join(_parse(html_report).text).split())
    assert "ERROR — 1 of 5 checks could not be completed" in text
    for check in audit_result.checks:
        assert check.id in html_report
        assert check.status.upper() in html_report


def _without_evidence(result: AuditResult) -> AuditResult:
    """The same audit without figures and tables, which are slow to draw and not under test."""
    return result.model_copy(update={"checks": [c.model_copy(update={"evidence": []}) for c in result.checks]})


def test_fail_verdict_in_words(failing_result: AuditResult) -> None:
    page = render_html(_without_evidence(failing_result))
    text = " ".join(" ".join(_parse(page).text).split())
    assert "FAIL — 1 of 4 checks missed a threshold" in text
    assert 'class="badge badge-fail"' in page


def test_user_strings_escaped_and_no_script_at_all(html_report: str) -> None:
    assert ESCAPED_SCRIPT in html_report
    assert "alert(1)</script>" not in html_report
    assert re.search(r"<\s*script", html_report, re.IGNORECASE) is None
    assert not _named(_parse(html_report), "script")
    # Model path, check summary and attestation are all shown, escaped.
    assert f"models/{ESCAPED_SCRIPT}/net.pt" in html_report
    assert f"between groups | {ESCAPED_SCRIPT}" in html_report
    assert f"Sorting pet photos {ESCAPED_SCRIPT}" in html_report


def test_no_network_references(html_report: str) -> None:
    remote = re.compile(r"""(?:\b(?:src|href|srcset|action|poster)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//"""
                        r"""|url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//|@import)""", re.IGNORECASE)
    assert remote.search(html_report) is None
    assert "http://" not in html_report and "https://" not in html_report
    parser = _parse(html_report)
    assert all(a["src"].startswith("data:image/png;base64,") for a in _named(parser, "img"))
    assert all(a["href"].startswith("#") for a in _named(parser, "a"))
    assert not _named(parser, "link") and not _named(parser, "iframe")


def test_images_have_alt_text_and_broken_figure_is_a_note(audit_result: AuditResult, html_report: str) -> None:
    imgs = _named(_parse(html_report), "img")
    figures = [e for c in audit_result.checks for e in c.evidence if e.type == "figure" and e.kind != "text_highlights"]
    assert len(imgs) == len(figures) - 1  # one figure has undrawable data; word highlights are text, not images
    assert all(a.get("alt") and len(a["alt"].strip()) > 20 for a in imgs)
    assert "figure could not be drawn: ValueError" in html_report


def test_accessible_structure(html_report: str) -> None:
    parser = _parse(html_report)
    assert _named(parser, "html")[0].get("lang") == "en"
    assert len(_named(parser, "h1")) == 1
    # overview, traceability, control, one per check, provenance, attestations
    assert len(_named(parser, "h2")) == 5 + 5
    assert all(a.get("scope") in ("col", "row") for a in _named(parser, "th"))
    assert all(_named(parser, tag) for tag in ("main", "header", "footer", "caption"))
    ids = [a["id"] for _, a in parser.tags if a.get("id")]
    assert len(ids) == len(set(ids))
    anchors = {a["href"][1:] for a in _named(parser, "a")}
    assert anchors <= set(ids)


def test_print_css_and_status_words(html_report: str) -> None:
    assert "@media print" in html_report
    assert "page-break-inside: avoid" in html_report
    for word in ("PASS", "WARN", "FAIL", "ERROR", "SKIPPED"):
        assert f">{word}</span>" in html_report


def test_sections_show_every_part(html_report: str) -> None:
    for text in ("[0.8920, 0.9320]", "0.9120", "no — missed", "Rows are the true class.", "Method",
                 "Limitations", "Measured on the evaluation set only.", "RuntimeError: CUDA out of memory &lt;oops&gt;",
                 "no data.ood in the config", "1.25 s", "estimated", "12.5000 J", "bird | &lt;b&gt;",
                 "ab" * 32, "ef" * 32, "torch", "2.4.0", "n_bins: 4", "human_oversight", "reviewer: QA team",
                 "not evidenced by the tool", "Provenance", "Attestations", "r-0001", "2024-05-01T10:00:00Z"):
        assert text in html_report, text


def test_rendering_is_deterministic_and_reproducible_from_json(audit_result: AuditResult, html_report: str) -> None:
    again = AuditResult.model_validate_json(audit_result.model_dump_json(indent=2))
    assert render_html(again) == html_report


def test_empty_audit_and_no_attestations(audit_result: AuditResult) -> None:
    empty = audit_result.model_copy(update={"checks": [], "summary": summarise([]), "attestations": {}})
    page = render_html(empty)
    assert "No checks ran." in page
    assert "Not evidenced by the tool: 5 open or missing attestations" in page
    assert page.count("<strong>MISSING</strong>") == 5 + 5  # page one list and the attestations table
    assert len(_named(_parse(page), "h1")) == 1


def test_ragged_and_long_evidence_tables(audit_result: AuditResult) -> None:
    rows = [[i, {"nested": [i]}] for i in range(MAX_TABLE_ROWS + 5)] + [["short"]]
    check = CheckResult(id="t", category="c", title="T", status="pass", summary="s",
                        evidence=[Table(title="Big", columns=["a", "b", "c"], rows=rows),
                                  Table(title="Empty", columns=[], rows=[])])
    page = render_html(audit_result.model_copy(update={"checks": [check], "summary": summarise([check])}))
    assert f"Showing the first {MAX_TABLE_ROWS} of {MAX_TABLE_ROWS + 6} rows" in page
    assert "{&#34;nested&#34;: [0]}" in page
    assert "no rows" in page


def test_template_blocks_can_be_extended(audit_result: AuditResult) -> None:
    env = environment()
    child = env.from_string('{% extends "report.html.j2" %}{% block compliance %}'
                            '<section id="compliance"><h2>Compliance</h2>{{ result.checks | length }}</section>'
                            '{% endblock %}')
    page = child.render(template_context(_without_evidence(audit_result)))
    assert '<section id="compliance"><h2>Compliance</h2>5</section>' in page
    assert page.index('id="compliance"') < page.index('id="provenance"')


@pytest.mark.parametrize("level, shown", [(0.95, "[0.8920, 0.9320]</td>"), (0.9, "[0.8920, 0.9320] (90%)</td>")])
def test_ci_level_noted_when_not_95(audit_result: AuditResult, level: float, shown: str) -> None:
    check = audit_result.checks[0]
    metric = check.metrics[0].model_copy(update={"ci_level": level})
    check = check.model_copy(update={"metrics": [metric], "evidence": []})
    page = render_html(audit_result.model_copy(update={"checks": [check], "summary": summarise([check])}))
    assert shown in page


def test_control_characters_never_reach_the_page(audit_result: AuditResult) -> None:
    """NUL, ESC (terminal escapes), BEL and bidi overrides in data-derived strings (here a check summary) are
    removed from the filed document; escaping alone leaves them in it."""
    hostile = "grp\x00one \x1b[31mred\x1b[0m \x07bell \u202eevil"
    checks = [audit_result.checks[0].model_copy(update={"summary": hostile}), *audit_result.checks[1:]]
    page = render_html(_without_evidence(audit_result.model_copy(update={"checks": checks})))
    for ch in ("\x00", "\x1b", "\x07", "\u202e"):
        assert ch not in page, repr(ch)
    assert "grpone [31mred[0m bell evil" in page
