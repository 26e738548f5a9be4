"""Number formatting and the verdict sentence, shared by every format."""

from __future__ import annotations

import pytest

from audit.results import AuditResult, CheckResult, Metric, ThresholdOutcome, summarise
from reports import _format as fmt


@pytest.mark.parametrize("value, text", [
    (None, "—"), (True, "yes"), (3, "3"), (0.91234, "0.9123"), (0.0, "0.0000"), (1.0, "1.0000"),
    (1.2345e-5, "1.234e-05"), (2.5e7, "25,000,000"), (13706.0, "13,706"), (1234.56, "1,234.6"), (3.0, "3"), (2.5e15, "2.5e+15"), (float("nan"), "NaN"), (float("-inf"), "−∞"), ("x", "x"),
])
def test_fmt_num(value: object, text: str) -> None:
    assert fmt.fmt_num(value) == text


def test_bounds_and_intervals() -> None:
    assert fmt.fmt_bound(ThresholdOutcome(metric="m", min=0.1, max=0.2, observed=0.15, passed=True, source="config")) \
        == "0.1000 … 0.2000"
    assert fmt.fmt_bound(ThresholdOutcome(metric="m", observed=None, passed=True, source="config")) == "no bound"
    m = Metric(name="m", value=0.5, ci_low=0.4, ci_high=0.6, ci_level=0.9, n=10, method="x", unit="J")
    assert fmt.fmt_ci(m) == "[0.4000, 0.6000] (90%)"
    assert fmt.fmt_metric(m) == "m 0.5000 J [0.4000, 0.6000] (90%) n=10"
    assert fmt.fmt_ci(Metric(name="m", value=None, n=0, method="x")) == "—"


def _check(i: int, status: str) -> CheckResult:
    return CheckResult(id=f"c{i}", category="x", title="X", status=status, summary="s")


@pytest.mark.parametrize("statuses, sentence", [
    (["pass"], "PASS — the only check passed"),
    (["pass", "pass"], "PASS — all 2 checks passed"),
    (["pass", "skipped"], "PASS — 1 of 2 checks passed (1 skipped)"),
    (["pass", "warn"], "WARN — 1 of 2 checks raised a warning; no fail threshold was missed"),
    (["pass", "fail", "warn"], "FAIL — 1 of 3 checks missed a threshold (1 warned)"),
    (["error", "fail"], "ERROR — 1 of 2 checks could not be completed (1 failed)"),
    (["skipped"], "SKIPPED — the only check was skipped"),
    (["skipped", "skipped"], "SKIPPED — all 2 checks were skipped"),
    (["fail"], "FAIL — the only check missed a threshold"),
])
def test_verdict(audit_result: AuditResult, statuses: list[str], sentence: str) -> None:
    checks = [_check(i, s) for i, s in enumerate(statuses)]
    result = audit_result.model_copy(update={"checks": checks, "summary": summarise(checks)})
    assert fmt.verdict(result) == sentence


def test_key_metrics_prefer_gated_overall_metrics(audit_result: AuditResult) -> None:
    fairness = audit_result.check("fairness.group_gaps")
    assert [m.name for m in fmt.key_metrics(fairness)] == ["tpr_gap"]
    grouped_only = fairness.model_copy(update={"metrics": fairness.metrics[1:]})
    assert [m.group for m in fmt.key_metrics(grouped_only)] == ["a", "b"]


def test_anchor_is_safe_and_unique() -> None:
    assert fmt.anchor(2, 'fairness."<x>"') == "check-2-fairness-x"
    assert fmt.anchor(3, "!!!") == "check-3"


def test_top_risks_order_and_page_one(audit_result: AuditResult) -> None:
    """Error first (its evidence is missing), then missed fail thresholds, then warnings; passes never appear."""
    from reports.html import render_html
    from reports.markdown import render_markdown

    risks = fmt.top_risks(audit_result)
    statuses = [r["status"] for r in risks]
    assert statuses == sorted(statuses, key=["error", "fail", "warn"].index) and statuses[:2] == ["error", "fail"]
    assert "tpr_gap = 0.2100, required ≤ 0.1000 (fail level): missed" in risks[1]["text"]
    assert all(r["check"] != "Predictive performance" for r in risks)
    page_one = render_html(audit_result).split('id="traceability"')[0]
    assert "Top risks" in page_one and risks[1]["anchor"] in page_one
    assert "**Top risks**" in render_markdown(audit_result)


def test_within_noise_reads_as_missed_not_as_not_judged() -> None:
    noisy = ThresholdOutcome(metric="equalized_odds_difference", max=0.1, observed=0.105, passed=False, source="config",
                             level="warn", detail="within noise, not significant: g: 0.105, permutation p = 0.412")
    undefined = ThresholdOutcome(metric="m", max=0.1, observed=None, passed=False, source="config", note="undefined")
    assert fmt.threshold_outcome(noisy) == "missed, within noise"
    assert fmt.describe_threshold(noisy).endswith("(warn level): missed, within noise, not significant: g: 0.105, "
                                                  "permutation p = 0.412")
    assert fmt.threshold_outcome(undefined) == "not judged"
    check = CheckResult(id="fairness.group_metrics", category="fairness", title="Group fairness", status="warn",
                        summary="s", thresholds=[noisy])
    from reports.markdown import _thresholds_cell

    assert "missed, within noise" in _thresholds_cell(check)


def test_skipped_checks_are_never_top_risks(audit_result: AuditResult) -> None:
    """A method that does not apply (here: Neural Cleanse on a binary model) is skipped with its reason, which
    page one never lists among the risks, whatever its check's config thresholds."""
    from reports.html import render_html

    skipped = CheckResult(id="poisoning.backdoor_scan", category="poisoning", title="Backdoor scan", status="skipped",
                          summary="Skipped: Neural Cleanse does not apply: needs at least 5 classes.",
                          skip_reason="Neural Cleanse does not apply: needs at least 5 classes.")
    result = audit_result.model_copy(update={"checks": [*audit_result.checks, skipped]})
    risks = fmt.top_risks(result, limit=50)
    assert risks and all(r["check"] not in ("Backdoor scan", "OOD detection") for r in risks)
    page_one = render_html(result).split("Top risks", 1)[1].split("</ol>", 1)[0]
    assert "Backdoor scan" not in page_one and "Neural Cleanse" not in page_one
