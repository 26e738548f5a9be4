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
    judged = status in ("pass", "warn", "fail")  # these got their status from a judged threshold
    met = ThresholdOutcome(metric="m", min=0.5, observed=0.9 if status != "fail" else 0.1, passed=status != "fail",
                           source="config")
    return CheckResult(id=f"c{i}", category="x", title="X", status=status, summary="s",
                       thresholds=[met] if judged else [])


@pytest.mark.parametrize("statuses, on_not_judged, sentence", [
    (["pass"], "fail", "PASS — the only check passed"),
    (["pass", "pass"], "fail", "PASS — all 2 checks passed"),
    (["pass", "skipped"], "fail", "PASS — 1 of 2 checks passed (1 skipped)"),
    (["pass", "measured"], "fail", "PASS — 1 of 2 checks passed (1 measured, not judged)"),
    (["pass", "warn"], "fail", "WARN — 1 of 2 checks raised a warning; no fail threshold was missed"),
    (["pass", "fail", "warn"], "fail", "FAIL — 1 of 3 checks missed a threshold (1 warned)"),
    (["error", "fail"], "fail", "ERROR — 1 of 2 checks could not be completed (1 failed)"),
    (["skipped"], "fail", "NOT JUDGED — nothing was judged: no check had a threshold (from the config or a "
                          "built-in default) that could be judged"),
    (["measured", "skipped"], "fail", "NOT JUDGED — nothing was judged: no check had a threshold (from the config "
                                      "or a built-in default) that could be judged"),
    (["skipped", "skipped"], "warn", "SKIPPED — all 2 checks were skipped"),
    (["measured", "skipped"], "warn", "MEASURED — 1 of 2 checks was measured; nothing was judged (on_not_judged: warn) "
                                      "(1 skipped)"),
    (["fail"], "fail", "FAIL — the only check missed a threshold"),
])
def test_verdict(audit_result: AuditResult, statuses: list[str], on_not_judged: str, sentence: str) -> None:
    checks = [_check(i, s) for i, s in enumerate(statuses)]
    result = audit_result.model_copy(update={"checks": checks, "summary": summarise(checks, on_not_judged=on_not_judged)})
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
    assert "tpr_gap = 0.2100, required ≤ 0.1000 (fail level, config): missed" in risks[1]["text"]
    assert all(r["check"] != "Predictive performance" for r in risks)
    page_one = render_html(audit_result).split('id="traceability"')[0]
    assert "Top risks" in page_one and risks[1]["anchor"] in page_one
    assert "**Top risks**" in render_markdown(audit_result)


def test_within_noise_reads_as_missed_not_as_not_judged() -> None:
    noisy = ThresholdOutcome(metric="equalized_odds_difference", max=0.1, observed=0.105, passed=False, source="config",
                             level="warn", detail="within noise, not significant: g: 0.105, permutation p = 0.412")
    undefined = ThresholdOutcome(metric="m", max=0.1, observed=None, passed=False, source="config", note="undefined")
    assert fmt.threshold_outcome(noisy) == "missed, within noise"
    assert fmt.describe_threshold(noisy).endswith("(warn level, config): missed, within noise, not significant: g: 0.105, "
                                                  "permutation p = 0.412")
    assert fmt.threshold_outcome(undefined) == "not judged"
    check = CheckResult(id="fairness.group_metrics", category="fairness", title="Group fairness", status="warn",
                        summary="s", thresholds=[noisy])
    from reports.markdown import _thresholds_cell

    assert "missed, within noise" in _thresholds_cell(check)
    # judged (never 'not judged', so it cannot block the gate), and a warning, not a failure
    from audit.results import effective_level, is_judged

    assert is_judged(noisy) and effective_level(noisy) == "warn" and not is_judged(undefined)
    assert fmt.judgement(noisy).startswith("equalized_odds_difference 0.1050 > required 0.1000 (config), within noise")
    result_checks = [check.model_copy(update={"id": "c"})]
    from audit.results import summarise as _summarise

    assert _summarise(result_checks).status == "warn" and _summarise(result_checks).not_judged == []


@pytest.mark.parametrize("threshold, text", [
    (dict(min=0.99, observed=0.965, passed=False, source="config"), "accuracy 0.9650 < required 0.9900 (config)"),
    (dict(max=0.01, observed=0.3, passed=False, source="default"), "accuracy 0.3000 > required 0.0100 (built-in default)"),
    (dict(min=0.5, observed=0.9, passed=True, source="config"), "accuracy 0.9000 meets required ≥ 0.5000 (config)"),
    (dict(min=0.5, observed=0.2, passed=False, source="config", group="cat"),
     "accuracy [worst group: cat] 0.2000 < required 0.5000 (config)"),
    (dict(min=0.5, observed=None, passed=False, source="config", note="the check was skipped"),
     "accuracy required ≥ 0.5000 (config): not judged — the check was skipped"),
])
def test_judgement_says_what_was_required(threshold: dict, text: str) -> None:
    assert fmt.judgement(ThresholdOutcome(metric="accuracy", **threshold)) == text


def test_measured_is_never_shown_as_pass(audit_result: AuditResult) -> None:
    """Page one, Markdown and the status word: a measured check reads MEASURED, never PASS, and the
    verdict of an audit where nothing was judged is not PASS."""
    from reports.html import render_html
    from reports.markdown import render_markdown

    measured = [c.model_copy(update={"status": "measured", "thresholds": []}) for c in audit_result.checks[:1]]
    result = audit_result.model_copy(update={"checks": measured, "summary": summarise(measured)})
    assert (result.summary.status, result.summary.exit_code) == ("not_judged", 1)
    page_one = render_html(result).split('id="traceability"')[0]
    assert 'class="badge badge-pass"' not in page_one and "PASS</span>" not in page_one
    assert 'class="badge badge-measured"' in page_one and "MEASURED</span>" in page_one
    assert "measured, not judged: no threshold applies" in page_one
    assert "<strong>Judged:</strong> <strong>nothing</strong>" in page_one
    md = render_markdown(result)
    assert "PASS" not in md.replace("PASS means", "") and "**MEASURED**" in md
    warn = audit_result.model_copy(update={"checks": measured, "summary": summarise(measured, on_not_judged="warn")})
    assert (warn.summary.status, warn.summary.exit_code) == ("measured", 0)
    page_one = render_html(warn).split('id="traceability"')[0]
    assert 'class="badge badge-pass"' not in page_one and 'class="badge badge-measured"' in page_one


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
