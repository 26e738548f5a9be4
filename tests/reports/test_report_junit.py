"""JUnit XML: parses with junitparser, with the right counts and result types per check."""

from __future__ import annotations

from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped

from audit.results import AuditResult
from reports import render_junit


def _load(tmp_path: Path, text: str) -> JUnitXml:
    path = tmp_path / "junit.xml"
    path.write_text(text, encoding="utf-8")
    return JUnitXml.fromfile(str(path))


def test_counts_and_types(tmp_path: Path, audit_result: AuditResult) -> None:
    xml = _load(tmp_path, render_junit(audit_result))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert suite.name == "deepaudit: script>"  # no model_info: named from the path models/<script>…</script>/net.pt
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 1, 1, 1)
    cases = {case.name: case for case in suite}
    assert list(cases) == [c.id for c in audit_result.checks]
    expected = {"performance": [], "fairness.group_gaps": [Failure], "robustness.pgd": [],
                "explain.shap": [Error], "ood.energy": [Skipped]}
    for name, types in expected.items():
        assert [type(r) for r in cases[name].result] == types, name
    for check in audit_result.checks:
        case = cases[check.id]
        assert case.classname == f"deepaudit.{check.category}"
        assert case.time == check.duration_s
    assert cases["performance"].is_passed and cases["robustness.pgd"].is_passed


def test_messages(tmp_path: Path, audit_result: AuditResult) -> None:
    cases = {case.name: case for case in next(iter(_load(tmp_path, render_junit(audit_result))))}
    failure = cases["fairness.group_gaps"].result[0]
    assert failure.message == "1 threshold missed: tpr_gap = 0.2100, required ≤ 0.1000"
    assert "tpr_gap" in failure.text and "<script>alert(1)</script>" in failure.text
    assert cases["explain.shap"].result[0].message == "RuntimeError: CUDA out of memory <oops>"
    assert cases["ood.energy"].result[0].message == "no data.ood in the config"
    warn_out = cases["robustness.pgd"].system_out
    assert warn_out.startswith("WARNING: robust_accuracy = 0.4100, required ≥ 0.5000 (warn level, config): missed")


def test_control_characters_do_not_break_the_xml(tmp_path: Path, audit_result: AuditResult) -> None:
    check = audit_result.checks[3].model_copy(update={"error": "bad \x00\x1b byte"})
    result = audit_result.model_copy(update={"checks": [check]})
    case = next(iter(next(iter(_load(tmp_path, render_junit(result))))))
    assert case.result[0].message == "bad \ufffd\ufffd byte"


def test_deterministic(audit_result: AuditResult) -> None:
    assert render_junit(audit_result) == render_junit(audit_result)


def test_measured_check_is_never_a_passing_case(tmp_path: Path, audit_result: AuditResult) -> None:
    """A check with metrics but no threshold asserted nothing: a CI test tab must not show it as passed."""
    from audit.results import summarise

    perf = audit_result.checks[0].model_copy(update={"status": "measured", "thresholds": []})
    checks = [perf, *audit_result.checks[1:]]
    result = audit_result.model_copy(update={"checks": checks, "summary": summarise(checks)})
    suite = next(iter(_load(tmp_path, render_junit(result))))
    case = next(c for c in suite if c.name == "performance")
    assert not case.is_passed and isinstance(case.result[0], Skipped)
    assert case.result[0].message.startswith("measured, not judged")
    assert suite.skipped == 2


def test_not_judged_gate_is_a_failure(tmp_path: Path, audit_result: AuditResult) -> None:
    """A fail threshold from the config that could not be judged fails its case; nothing judged fails 'gate'."""
    from audit.results import ThresholdOutcome, summarise

    skipped = audit_result.checks[4].model_copy(update={"thresholds": [ThresholdOutcome(
        metric="worst_auroc", min=0.9, observed=None, passed=False, source="config",
        note="the check was skipped: no data.ood in the config")]})
    checks = [audit_result.checks[0], skipped]
    result = audit_result.model_copy(update={"checks": checks, "summary": summarise(checks)})
    assert (result.summary.status, result.summary.exit_code) == ("not_judged", 1)
    suite = next(iter(_load(tmp_path, render_junit(result))))
    cases = {c.name: c for c in suite}
    failure = cases["ood.energy"].result[0]
    assert isinstance(failure, Failure) and failure.type == "not_judged"
    assert "worst_auroc required ≥ 0.9000 (config): not judged" in failure.message
    assert isinstance(cases["gate"].result[0], Failure) and suite.failures == 2

    measured = [c.model_copy(update={"status": "measured", "thresholds": []}) for c in audit_result.checks[:1]]
    nothing = audit_result.model_copy(update={"checks": measured, "summary": summarise(measured)})
    gate = {c.name: c for c in next(iter(_load(tmp_path, render_junit(nothing))))}["gate"]
    assert "nothing was judged" in gate.result[0].message
