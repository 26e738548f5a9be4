"""Threshold judging and the audit verdict on known cases, edge by edge: bounds are inclusive, a fail
missed only within noise warns (and why, word for word), the worst group and its detail text, and
the summary's counts, exit codes and not-judged list."""

from __future__ import annotations

import pytest

from audit.config import ThresholdSpec
from audit.registry import CheckOutput, NoiseTest
from audit.results import WITHIN_NOISE, CheckResult, Metric, NotJudged, ThresholdOutcome, summarise, within_noise
from audit.runner import judge


def _m(name: str, value: float | None, group: str | None = None) -> Metric:
    return Metric(name=name, value=value, n=10, method="test", group=group)


def _out(*metrics: Metric, noise: dict | None = None, undecided: dict | None = None) -> CheckOutput:
    return CheckOutput(summary="s", metrics=list(metrics), noise_tests=noise or {}, undecided_groups=undecided or {})


def _noise(value: float, significant: bool, text: str) -> NoiseTest:
    return NoiseTest(value=value, significant=significant, text=text)


def test_bounds_are_inclusive() -> None:
    assert judge(_out(_m("a", 0.5)), {"a": ThresholdSpec(min=0.5)}, {})[0] == "pass"
    assert judge(_out(_m("a", 0.5)), {"a": ThresholdSpec(max=0.5)}, {})[0] == "pass"
    assert judge(_out(_m("a", 0.4999)), {"a": ThresholdSpec(min=0.5)}, {})[0] == "fail"
    assert judge(_out(_m("a", 0.5001)), {"a": ThresholdSpec(max=0.5)}, {})[0] == "fail"


GAP = "demographic_parity_difference"
FAIL = {GAP: ThresholdSpec(max=0.1, level="fail")}


def test_a_fail_missed_only_within_noise_warns_and_says_why() -> None:
    tests = [_noise(0.3, False, "sex: 0.3, p = 0.4"), _noise(0.2, False, "race: 0.2, p = 0.5"),
             _noise(0.15, False, "age: 0.15, p = 0.6"), _noise(0.12, False, "region: 0.12, p = 0.7"),
             _noise(0.05, True, "income: 0.05, p = 0.001")]  # significant, but inside the bound: not counted
    status, [t] = judge(_out(_m(GAP, 0.3), noise={GAP: tests}), FAIL, {})
    assert (status, t.level, t.passed, t.observed) == ("warn", "warn", False, 0.3)
    assert t.detail == (f"{WITHIN_NOISE}, not significant (a fail threshold, reported as a warning): "
                        "sex: 0.3, p = 0.4; race: 0.2, p = 0.5; age: 0.15, p = 0.6")  # the first three
    assert within_noise(t)


def test_within_noise_keeps_the_worst_group_detail() -> None:
    metrics = [_m("tpr_gap", 0.05, "a"), _m("tpr_gap", 0.4, "b")]
    status, [t] = judge(_out(*metrics, noise={"tpr_gap": [_noise(0.4, False, "b: p = 0.3")]}),
                        {"tpr_gap": ThresholdSpec(max=0.1)}, {})
    assert status == "warn"
    assert t.detail == (f"{WITHIN_NOISE}, not significant (a fail threshold, reported as a warning): b: p = 0.3; "
                        "worst of 2 groups (highest value): b")


def test_noise_does_not_soften_what_it_should_not() -> None:
    beyond = [_noise(0.3, False, "sex: p = 0.4")]
    # one significant estimate beyond the bound: a real gap, still a fail
    status, [t] = judge(_out(_m(GAP, 0.3), noise={GAP: beyond + [_noise(0.25, True, "race: p = 0.001")]}), FAIL, {})
    assert (status, t.level, t.detail) == ("fail", "fail", None)
    # estimates all inside the bound say nothing about the one that missed it
    status, [t] = judge(_out(_m(GAP, 0.3), noise={GAP: [_noise(0.05, False, "x")]}), FAIL, {})
    assert (status, t.detail) == ("fail", None)
    # noise tests of another metric do not apply
    status, _ = judge(_out(_m(GAP, 0.3), noise={"other": beyond}), FAIL, {})
    assert status == "fail"
    # a warn threshold stays a plain warning; a met threshold stays met; an undefined one stays not judged
    _, [t] = judge(_out(_m(GAP, 0.3), noise={GAP: beyond}), {GAP: ThresholdSpec(max=0.1, level="warn")}, {})
    assert (t.level, t.detail) == ("warn", None)
    status, [t] = judge(_out(_m(GAP, 0.05), noise={GAP: beyond}), FAIL, {})
    assert (status, t.passed, t.detail) == ("pass", True, None)
    status, [t] = judge(_out(_m(GAP, None), noise={GAP: beyond}), FAIL, {})
    assert (t.level, t.detail) == ("fail", None) and t.note is not None


def test_worst_group_is_found_wherever_it_is_listed() -> None:
    metrics = [_m("fpr", 0.3, "a"), _m("fpr", 0.9, "b"), _m("fpr", 0.1, "c")]
    _, [t] = judge(_out(*metrics), {"fpr": ThresholdSpec(max=0.5)}, {})
    assert (t.group, t.observed, t.detail) == ("b", 0.9, "worst of 3 groups (highest value): b")
    _, [t] = judge(_out(*metrics), {"fpr": ThresholdSpec(min=0.2)}, {})
    assert (t.group, t.detail) == ("c", "worst of 3 groups (lowest value): c")
    _, [t] = judge(_out(*metrics), {"fpr": ThresholdSpec(min=0.2, max=0.5)}, {})
    assert (t.group, t.detail) == ("b", "worst of 3 groups (furthest out of bounds value): b")


def test_group_details_name_at_most_five_groups() -> None:
    six = [f"g{i}" for i in range(6)]
    metrics = [_m("recall", 0.9, "ok")] + [_m("recall", None, g) for g in six]
    _, [t] = judge(_out(*metrics), {"recall": ThresholdSpec(min=0.5)}, {})
    assert t.detail == "worst of 1 groups (lowest value): ok; 6 undefined group(s) left out: g0, g1, g2, g3, g4, …"
    _, [t] = judge(_out(*metrics[:6]), {"recall": ThresholdSpec(min=0.5)}, {})
    assert t.detail == "worst of 1 groups (lowest value): ok; 5 undefined group(s) left out: g0, g1, g2, g3, g4"
    small = {g: "fewer than 30 rows" for g in six}
    metrics = [_m("recall", 0.9, "ok")] + [_m("recall", 0.1, g) for g in six]
    _, [t] = judge(_out(*metrics, undecided=small), {"recall": ThresholdSpec(min=0.5)}, {})
    assert t.passed and t.detail == ("worst of 1 groups (lowest value): ok; 6 group(s) shown but not deciding "
                                     "(fewer than 30 rows): g0, g1, g2, g3, g4")
    status, [t] = judge(_out(*metrics[1:], undecided=small), {"recall": ThresholdSpec(min=0.5)}, {})
    assert t.note == "only groups that do not decide (fewer than 30 rows): g0, g1, g2, g3, g4" and status == "warn"


def test_an_undefined_headline_says_so() -> None:
    _, [t] = judge(_out(_m("ece", float("nan"))), {"ece": ThresholdSpec(max=0.1)}, {})
    assert t.note == ("undefined for this data (too few samples or groups, or a component that did not run: "
                      "see the metric)") and t.observed is None


def _check(cid: str, status: str, *thresholds: ThresholdOutcome) -> CheckResult:
    return CheckResult(id=cid, category="x", title=cid, status=status, summary="s", thresholds=list(thresholds))


MET = ThresholdOutcome(metric="accuracy", min=0.5, observed=0.9, passed=True, source="config")


def test_summary_counts_codes_and_not_judged_entries() -> None:
    s = summarise([_check("a", "pass", MET), _check("b", "pass", MET), _check("c", "measured")])
    assert s.counts == {"pass": 2, "measured": 1, "skipped": 0, "warn": 0, "fail": 0, "error": 0}
    assert (s.status, s.exit_code, s.on_not_judged) == ("pass", 0, "fail")
    missed = MET.model_copy(update={"observed": 0.1, "passed": False})
    assert (summarise([_check("a", "fail", missed)]).exit_code, summarise([_check("a", "fail", missed)]).status) == (1, "fail")
    # every not-judged threshold is listed with its bounds; a missing note is an empty reason
    unjudged = ThresholdOutcome(metric="auroc", min=0.6, max=0.99, observed=None, passed=False, source="config",
                                note="the check was skipped")
    s = summarise([_check("a", "pass", MET), _check("b", "skipped", unjudged)], on_not_judged="warn")
    [u] = s.not_judged
    assert (u.check, u.metric, u.min, u.max, u.reason, u.blocking) == ("b", "auroc", 0.6, 0.99, "the check was skipped", False)
    assert s.on_not_judged == "warn"
    noteless = unjudged.model_copy(update={"note": ""})
    assert summarise([_check("a", "pass", MET), _check("b", "skipped", noteless)]).not_judged[0].reason == ""
    # nothing ran at all and the user accepts not-judged: skipped, exit 0
    s = summarise([_check("a", "skipped")], on_not_judged="warn")
    assert (s.status, s.exit_code) == ("skipped", 0)


def test_only_a_configured_fail_threshold_that_was_not_judged_softens_or_blocks() -> None:
    warn_level = ThresholdOutcome(metric="auroc", min=0.6, observed=None, passed=False, source="config",
                                  level="warn", note="skipped")
    default_fail = warn_level.model_copy(update={"level": "fail", "source": "default"})
    for soft in (warn_level, default_fail):
        s = summarise([_check("a", "pass", MET, soft)])
        assert (s.status, s.exit_code, s.not_judged[0].blocking) == ("pass", 0, False)
    for level, source in (("warn", "config"), ("fail", "default")):
        unrun = [NotJudged(check="ood", metric="auroc", level=level, source=source, reason="disabled", blocking=False)]
        s = summarise([_check("a", "pass", MET)], unrun=unrun)
        assert (s.status, s.not_judged[0].blocking) == ("pass", False)
    unrun = [NotJudged(check="ood", metric="auroc", level="fail", source="config", reason="disabled", blocking=False)]
    assert summarise([_check("a", "pass", MET)], unrun=unrun).not_judged[0].blocking is True
    assert summarise([_check("a", "pass", MET)], unrun=unrun, on_not_judged="warn").not_judged[0].blocking is False


@pytest.mark.parametrize(("passed", "detail", "expected"), [
    (False, f"{WITHIN_NOISE}, not significant", True), (True, f"{WITHIN_NOISE}, not significant", False),
    (False, "worst of 2 groups", False), (False, None, False)])
def test_within_noise_known_cases(passed: bool, detail: str | None, expected: bool) -> None:
    t = ThresholdOutcome(metric="m", max=0.1, observed=0.3, passed=passed, source="config", detail=detail)
    assert within_noise(t) is expected
