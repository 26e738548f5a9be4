"""Layout of the HTML report and its PDF (issue 15, item 4): wide tables wrap instead of clipping, no page is
left holding only a heading and a sentence, long per-group metric lists go to an appendix without losing a
number. The PDF tests read the printed text back with pypdf."""

from __future__ import annotations

import re
import shutil
import unicodedata
from pathlib import Path

import pytest

from audit.results import AuditResult, CheckResult, Metric, Table, summarise
from reports import render_html, write_reports
from reports._format import fmt_ci, fmt_num
from reports._layout import MAX_INLINE_GROUP_METRICS, numbered_methods, split_metrics
from reports.html import environment

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="chromium not installed (apt-get install chromium)")

#: Fourteen columns with long identifier-like headers, as the fairness mitigation table has.
WIDE_COLUMNS = ["model"] + [f"{name}_difference_{i}" for i, name in enumerate(
    ["demographic_parity", "equalized_odds", "equal_opportunity", "predictive_parity", "selection_rate",
     "false_positive_rate", "false_negative_rate", "true_positive_rate", "calibration_gap", "balanced_accuracy",
     "expected_calibration", "positive_predictive", "negative_predictive"])]


def _pdf_text(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(str(path)).pages]


def _size_of(path: Path, text: str) -> float:
    """The printed size in points (font size times the text and page scale) of the first run holding ``text``."""
    from pypdf import PdfReader

    sizes: list[float] = []
    for page in PdfReader(str(path)).pages:
        page.extract_text(visitor_text=lambda t, cm, tm, font, size: sizes.append(size * tm[0] * cm[0])
                          if text in t and not sizes else None)
        if sizes:
            return sizes[0]
    raise AssertionError(f"{text!r} is not in the PDF")


def _squash(text: str) -> str:
    """Without white space, and with the ligatures the PDF's fonts print ("ﬀ") as their letters."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def _with_checks(result: AuditResult, checks: list[CheckResult]) -> AuditResult:
    return result.model_copy(update={"checks": checks, "summary": summarise(checks)})


def _wide_check() -> CheckResult:
    rows = [[f"mitigation_method_{r}"] + [round(0.1 + r / 10 + c / 1000, 4) for c in range(1, len(WIDE_COLUMNS))]
            for r in range(5)]
    # Also a long table of two narrow columns (printed in two page columns) with an unbreakable 64-digit hash.
    hashes = [[f"file_{i}", "ab" * 32] for i in range(12)]
    return CheckResult(
        id="fairness.wide", category="fairness", title="Wide mitigation table", status="measured",
        summary="A table wider than the page.", n_samples=100, duration_s=0.1,
        evidence=[Table(title="Mitigation: before and after", columns=WIDE_COLUMNS, rows=rows),
                  Table(title="Hashes", columns=["file", "sha256"], rows=hashes)])


@needs_chromium
def test_every_cell_of_a_wide_table_is_in_the_pdf(tmp_path: Path, audit_result: AuditResult) -> None:
    """A table with 14 long-named columns wraps inside the page: every cell's text is printed (none clipped
    at the right edge, as the Arrests report's mitigation table was)."""
    check = _wide_check()
    written = write_reports(_with_checks(audit_result, [check]), tmp_path, pdf=True)
    printed = _squash("".join(_pdf_text(written["pdf"])))
    table = check.evidence[0]
    for row in table.rows:
        for value in row:
            assert _squash(fmt_num(value) if isinstance(value, float) else str(value)) in printed, value
    for column in table.columns:  # a header may wrap after its underscores; each piece is printed
        for piece in column.split("_"):
            assert piece in printed, (column, piece)
    # The last column's numbers, the first to be cut off when a table runs off the page.
    assert all(fmt_num(row[-1]) in printed for row in table.rows)
    # Nothing overflowed the page width: Chromium would then shrink every page to fit (text smaller than the CSS
    # says, 8.5pt for the print body), hiding the overflow rather than showing it.
    assert _size_of(written["pdf"], "A table wider than the page.") == pytest.approx(8.5, abs=0.01)


def test_wide_tables_get_break_opportunities_and_small_type(audit_result: AuditResult) -> None:
    page = render_html(_with_checks(audit_result, [_wide_check()]))
    assert '<table class="wide">' in page
    assert "<th scope=\"col\">demographic_<wbr>parity_<wbr>difference_<wbr>0</th>" in page
    assert re.search(r"table\.wide \{ font-size: [0-9.]+pt; \}", page)


def test_breakable_escapes_before_it_adds_break_opportunities() -> None:
    breakable = environment().filters["breakable"]
    out = str(breakable('<img src=x onerror="alert(1)">_a/b|c=d,e f_ g'))
    assert "<img" not in out and "&lt;img src=<wbr>x" in out
    assert out.endswith("a/<wbr>b|<wbr>c=<wbr>d,<wbr>e f_ g")  # none before a space: nothing to gain
    assert out.count("<") == out.count("<wbr>")  # the only markup is the renderer's own
    assert str(breakable(0.123456)) == "0.1235" and str(breakable(None)) == "—"


# ------------------------------------------------------------------------------ near-empty pages


def _many_checks(result: AuditResult, n: int = 16) -> list[CheckResult]:
    checks = list(result.checks)
    while len(checks) < n:  # as many checks as a full audit
        c = result.checks[len(checks) % len(result.checks)]
        checks.append(c.model_copy(update={"id": f"{c.id}.copy{len(checks)}", "title": f"{c.title} {len(checks)}"}))
    return checks


@needs_chromium
def test_no_page_holds_only_a_heading_and_a_sentence(tmp_path: Path, audit_result: AuditResult) -> None:
    """Headings stay with what follows them and nothing forces a break that strands a section's start (in the
    demo PDFs page 2 held only the Traceability heading and one paragraph)."""
    written = write_reports(_with_checks(audit_result, _many_checks(audit_result)), tmp_path, pdf=True)
    pages = _pdf_text(written["pdf"])
    for i, text in enumerate(pages[:-1], start=1):  # the last page may be short
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) >= 8, f"page {i} of {len(pages)} holds only: {lines}"


# ------------------------------------------------------------------------------------- appendix


def _grouped_check(n_groups: int) -> CheckResult:
    metrics = [Metric(name="mce", value=0.0978, n=500, method="mean error over corruptions")]
    for g in range(n_groups):
        metrics += [Metric(name="accuracy", group=f"noise/{g}", value=0.9 - g / 1000, ci_low=0.85 - g / 1000,
                           ci_high=0.95 - g / 1000, n=500, method=f"accuracy under noise at severity {g}"),
                    Metric(name="ece", group=f"noise/{g}", value=0.02 + g / 1000, n=500,
                           method="expected calibration error, 15 bins", provenance="estimated")]
    return CheckResult(id="corruption", category="robustness", title="Corruptions", status="measured",
                       summary="Many per-group values.", n_samples=500, metrics=metrics, duration_s=0.1)


def test_few_per_group_metrics_stay_in_the_section() -> None:
    check = _grouped_check(MAX_INLINE_GROUP_METRICS // 2)
    split = split_metrics(check)
    assert split.inline == check.metrics and split.appendix == []


def test_many_per_group_metrics_move_to_the_appendix_and_none_is_lost() -> None:
    check = _grouped_check(20)
    split = split_metrics(check)
    assert [m.name for m in split.inline] == ["mce"]
    assert sorted(map(id, split.inline + split.appendix)) == sorted(map(id, check.metrics))
    assert split.names == ["accuracy", "ece"] and split.groups == 20
    rows, methods = numbered_methods(split.appendix, by_name=True)
    assert [m.name for m, _ in rows] == ["accuracy"] * 20 + ["ece"] * 20
    # Each accuracy row has its own method; the 20 ece rows share one, stated once.
    assert methods == [f"accuracy under noise at severity {g}" for g in range(20)] + ["expected calibration error, 15 bins"]
    assert [k for _, k in rows] == list(range(1, 21)) + [21] * 20
    in_check_order, _ = numbered_methods(split.appendix)
    assert [m for m, _ in in_check_order] == split.appendix


def test_the_appendix_lists_every_per_group_value_once(audit_result: AuditResult) -> None:
    check = _grouped_check(20)
    page = render_html(_with_checks(audit_result, [check]))
    section = page[page.index('id="check-1-corruption"'):page.index('id="provenance"')]
    appendix = page[page.index('id="appendix"'):]
    assert "40 per-group values of accuracy, ece (20 groups)" in section
    assert 'href="#appendix-check-1-corruption"' in section and 'id="appendix-check-1-corruption"' in appendix
    for m in check.metrics[1:]:
        cell = f"<td>noise/<wbr>{m.group[6:]}</td>"
        assert cell not in section and cell in appendix
        assert f">{fmt_num(m.value)}" in appendix
        if m.ci_low is not None:
            assert fmt_ci(m) in appendix
    assert appendix.count("(estimated)") == 20  # an estimated value says so beside the number
    assert appendix.count("[21] expected calibration error, 15 bins") == 1 and appendix.count("[21]</td>") == 20
    assert '<li><a href="#appendix">' in page
    # Each metric's name heads its rows once, instead of filling a column on every row.
    assert appendix.count('colspan="5">accuracy</th>') == 1 and appendix.count('colspan="5">ece</th>') == 1


def test_no_appendix_when_every_metric_fits_its_section(html_report: str) -> None:
    assert 'id="appendix"' not in html_report and 'href="#appendix' not in html_report


@needs_chromium
def test_appendix_numbers_are_printed_whole_in_the_pdf(tmp_path: Path, audit_result: AuditResult) -> None:
    """The appendix's six-column table runs in half the page width: a value, an interval bound or n is never
    broken between its digits ("0.968" / "8", n "6" / "4", as an adversarial appendix printed)."""
    metrics = [Metric(name="robust_accuracy", value=0.4688, n=64, method="lowest accuracy")]
    for g in range(12):
        metrics.append(Metric(name="accuracy_under_attack", group=f"fgsm/linf/0.0{g:02d}", value=0.9688 - g / 1000,
                              ci_low=0.8930, ci_high=0.9914, n=64, method=f"FGSM linf eps {g}; Wilson interval"))
    check = CheckResult(id="adversarial", category="robustness", title="Adversarial", status="measured",
                        summary="Many per-group values.", n_samples=64, metrics=metrics, duration_s=0.1)
    assert split_metrics(check).appendix  # the values are in the appendix's flowed table
    written = write_reports(_with_checks(audit_result, [check]), tmp_path, pdf=True)
    text = "".join(_pdf_text(written["pdf"]))
    appendix = text[text.rindex("Appendix"):]
    for m in metrics[1:]:
        assert fmt_num(m.value) in appendix, fmt_num(m.value)
    assert "0.8930" in appendix and "0.9914" in appendix
    assert re.search(r"\b64\b", appendix)
