"""Verdicts: how thresholds are judged (per-group metrics on their worst group, defaults overridden by
the config, measured when nothing was judged) and how the summary gates (not judged, nothing judged)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from audit.checks.performance import majority_baseline_test
from audit.config import ThresholdSpec
from audit.registry import CheckOutput
from audit.results import CheckResult, Metric, ThresholdOutcome, summarise
from audit.runner import judge


def _m(name: str, value: float | None, group: str | None = None) -> Metric:
    return Metric(name=name, value=value, n=10, method="test", group=group)


def _out(*metrics: Metric, floor: str = "pass") -> CheckOutput:
    return CheckOutput(summary="s", metrics=list(metrics), status_floor=floor)  # type: ignore[arg-type]


PER_CLASS = [_m("precision", 1.0, "a"), _m("precision", 0.4, "b"), _m("precision", None, "c"),
             _m("precision", 0.7, "d")]


def test_per_group_metric_min_is_judged_on_the_lowest_group() -> None:
    status, [t] = judge(_out(*PER_CLASS), {"precision": ThresholdSpec(min=0.5)}, {})
    assert (status, t.passed, t.observed, t.group, t.note) == ("fail", False, 0.4, "b", None)
    assert t.detail == "worst of 3 groups (lowest value): b; 1 undefined group(s) left out: c"
    status, [t] = judge(_out(*PER_CLASS), {"precision": ThresholdSpec(min=0.3)}, {})
    assert (status, t.passed, t.group) == ("pass", True, "b")


def test_per_group_metric_max_is_judged_on_the_highest_group() -> None:
    status, [t] = judge(_out(*PER_CLASS), {"precision": ThresholdSpec(max=0.9, level="warn")}, {})
    assert (status, t.observed, t.group) == ("warn", 1.0, "a")


def test_per_group_metric_with_both_bounds_takes_the_group_furthest_out() -> None:
    _, [t] = judge(_out(*PER_CLASS), {"precision": ThresholdSpec(min=0.2, max=0.8)}, {})
    assert (t.group, t.passed) == ("a", False)  # 1.0 is 0.2 above max; 0.4 is inside
    _, [t] = judge(_out(*PER_CLASS), {"precision": ThresholdSpec(min=0.5, max=1.2)}, {})
    assert (t.group, t.passed) == ("b", False)


def test_headline_metric_wins_over_groups_and_every_undefined_group_is_not_judged() -> None:
    _, [t] = judge(_out(_m("accuracy", 0.9), _m("accuracy", 0.1, "g")), {"accuracy": ThresholdSpec(min=0.5)}, {})
    assert (t.passed, t.group, t.observed) == (True, None, 0.9)
    status, [t] = judge(_out(_m("recall", None, "a"), _m("recall", float("nan"), "b")),
                        {"recall": ThresholdSpec(min=0.5)}, {})
    assert (status, t.passed, t.observed) == ("warn", False, None) and "undefined for every one of its 2 groups" in t.note


def test_perfect_classifier_precision_min_zero_passes() -> None:
    """Issue 12: `precision.min=0` on a perfect classifier used to FAIL (only headline metrics were looked at)."""
    status, [t] = judge(_out(*[_m("precision", 1.0, c) for c in "abc"]), {"precision": ThresholdSpec(min=0)}, {})
    assert (status, t.passed, t.observed) == ("pass", True, 1.0)


def test_no_threshold_is_measured_not_pass() -> None:
    assert judge(_out(_m("latency", 3.0)), {}, {}) == ("measured", [])
    assert judge(_out(_m("latency", 3.0), floor="warn"), {}, {})[0] == "warn"
    # only a threshold that could not be judged: a warning, never a pass
    status, [t] = judge(_out(_m("ece", None)), {"ece": ThresholdSpec(max=0.1)}, {})
    assert status == "warn" and t.note is not None


def test_config_overrides_default_and_defaults_on_unreported_metrics_do_not_apply() -> None:
    defaults = {"p": ThresholdSpec(max=0.01), "flip_rate": ThresholdSpec(max=0.5, level="warn")}
    status, outcomes = judge(_out(_m("p", 0.2)), {}, defaults)
    assert status == "fail" and [(t.metric, t.source) for t in outcomes] == [("p", "default")]
    status, [t] = judge(_out(_m("p", 0.2)), {"p": ThresholdSpec(max=1.0)}, defaults)
    assert (status, t.source, t.max) == ("pass", "config", 1.0)
    # a config threshold on a metric the check did not report is not judged (and never silently dropped)
    status, outcomes = judge(_out(_m("p", 0.001)), {"flip_rate": ThresholdSpec(max=0.5)}, defaults)
    flip = next(t for t in outcomes if t.metric == "flip_rate")
    assert status == "warn" and flip.note == "the check did not report this metric" and flip.source == "config"


def _check(cid: str, status: str, *thresholds: ThresholdOutcome) -> CheckResult:
    return CheckResult(id=cid, category="x", title=cid, status=status, summary="s", thresholds=list(thresholds))


MET = ThresholdOutcome(metric="accuracy", min=0.5, observed=0.9, passed=True, source="config")
UNJUDGED = ThresholdOutcome(metric="worst_auroc", min=0.9, observed=None, passed=False, source="config",
                            note="the check was skipped: no data.ood")


def test_summary_gates_on_a_configured_fail_threshold_that_could_not_be_judged() -> None:
    checks = [_check("performance", "pass", MET), _check("ood", "skipped", UNJUDGED)]
    s = summarise(checks)
    assert (s.status, s.exit_code, s.judged) == ("not_judged", 1, ["performance"])
    assert [(u.check, u.metric, u.blocking) for u in s.not_judged] == [("ood", "worst_auroc", True)]
    s = summarise(checks, on_not_judged="warn")
    assert (s.status, s.exit_code, s.not_judged[0].blocking) == ("warn", 0, False)
    # a warn-level or built-in default threshold that could not be judged never blocks the gate
    for soft in (UNJUDGED.model_copy(update={"level": "warn"}), UNJUDGED.model_copy(update={"source": "default"})):
        s = summarise([_check("performance", "pass", MET), _check("ood", "warn", soft)])
        assert (s.status, s.exit_code) == ("warn", 0)
    # a missed fail threshold still decides first; an error before everything
    missed = MET.model_copy(update={"observed": 0.1, "passed": False})
    assert summarise([_check("p", "fail", missed), _check("ood", "skipped", UNJUDGED)]).status == "fail"
    assert summarise([_check("p", "error"), _check("ood", "skipped", UNJUDGED)]).exit_code == 3


def test_nothing_judged_exits_1_unless_on_not_judged_warn() -> None:
    checks = [_check("efficiency", "measured"), _check("ood", "skipped")]
    s = summarise(checks)
    assert (s.status, s.exit_code, s.judged, s.nothing_judged) == ("not_judged", 1, [], True)
    s = summarise(checks, on_not_judged="warn")
    assert (s.status, s.exit_code) == ("measured", 0)
    assert summarise([_check("p", "pass", MET), _check("efficiency", "measured")]).status == "pass"


def test_thresholds_of_checks_that_did_not_run_are_not_judged() -> None:
    from audit.config import validate_config
    from audit.runner import unrun_thresholds

    cfg = validate_config({"model": {"path": "m.pt"}, "data": {"eval": {"path": "d.npz"}},
                           "checks": {"ood": {"enabled": False, "thresholds": {"worst_auroc": {"min": 0.8}}},
                                      "drift": {"thresholds": {"max_psi": {"max": 0.2, "level": "warn"}}}}})
    unrun = unrun_thresholds(cfg, ran={"performance", "drift"})
    assert [(u.check, u.metric, u.min, u.reason) for u in unrun] == [
        ("ood", "worst_auroc", 0.8, "the check is disabled (enabled: false)")]
    s = summarise([_check("performance", "pass", MET)], unrun=unrun)
    assert (s.status, s.exit_code, s.not_judged[0].blocking) == ("not_judged", 1, True)


@pytest.mark.parametrize("n_correct, support", [(20, [20, 20, 20]), (27, [25, 20, 15]), (60, [20, 20, 20]),
                                                (14, [10] * 10), (50, [50]), (0, [3, 7])])
def test_majority_baseline_test_equals_scipy_and_the_binomial_tail(n_correct: int, support: list[int]) -> None:
    support_arr = np.array(support)
    n, p0 = int(support_arr.sum()), max(support) / sum(support)
    baseline, p = majority_baseline_test(n_correct, support_arr)
    assert baseline == p0
    assert p == binomtest(n_correct, n, p0, alternative="greater").pvalue
    assert p == pytest.approx(binom.sf(n_correct - 1, n, p0), rel=1e-9, abs=1e-15)  # P(X >= k), the known answer


def test_near_chance_fails_and_a_good_model_passes_the_default_condition() -> None:
    from audit.checks.performance import Performance

    defaults = Performance.default_thresholds
    # 10 balanced classes, 1,000 samples: 14% accuracy against a 10% baseline is significant; 11% is not
    for n_correct, expected in ((110, "fail"), (140, "pass"), (100, "fail")):
        _, p = majority_baseline_test(n_correct, np.full(10, 100))
        assert judge(_out(_m("informative_p_value", p)), {}, defaults)[0] == expected, n_correct
    # significance alone lets a near-chance model through on a large set: the lift condition warns
    _, p = majority_baseline_test(1400, np.full(10, 1000))
    lift = (0.14 - 0.1) / 0.9
    status, outcomes = judge(_out(_m("informative_p_value", p), _m("baseline_lift", lift)), {}, defaults)
    assert status == "warn" and [t.passed for t in outcomes] == [True, False]


def test_a_default_that_cannot_be_judged_is_listed_but_is_not_a_risk() -> None:
    """What the tool could not measure (e.g. the sanity check could not run: null) is not a risk of the model:
    a built-in default on it is not judged, says so, and does not warn; a threshold the user set still warns."""
    from audit.results import AuditResult
    from reports import _format as fmt

    spec = {"methods_failing_sanity": ThresholdSpec(max=0, level="warn")}
    status, [t] = judge(_out(_m("methods_failing_sanity", None)), {}, spec)
    assert (status, t.source, t.passed) == ("measured", "default", False) and t.note.startswith("undefined")
    assert judge(_out(_m("methods_failing_sanity", None)), spec, {})[0] == "warn"
    checks = [_check("performance", "pass", MET), _check("explanations", status, t)]
    s = summarise(checks)
    assert (s.status, s.exit_code) == ("pass", 0) and [(u.metric, u.blocking) for u in s.not_judged] == [
        ("methods_failing_sanity", False)]
    result = AuditResult.model_construct(checks=checks, summary=s, probe=None)
    assert all(r["check"] != "explanations" for r in fmt.top_risks(result))


def test_groups_that_do_not_decide_are_left_out_of_the_worst_group() -> None:
    """Groups below a check's minimum size are shown but never decide (fairness' min_group_size)."""
    out = _out(_m("tpr", 0.9, "sex=f"), _m("tpr", 0.8, "sex=m"), _m("tpr", 0.0, "sex=x"))
    out.undecided_groups = {"sex=x": "fewer than min_group_size = 30 members"}
    status, [t] = judge(out, {"tpr": ThresholdSpec(min=0.5)}, {})
    assert (status, t.group, t.observed) == ("pass", "sex=m", 0.8)
    assert "1 group(s) shown but not deciding (fewer than min_group_size = 30 members): sex=x" in t.detail
    only_small = _out(_m("tpr", 0.0, "sex=x"))
    only_small.undecided_groups = out.undecided_groups
    status, [t] = judge(only_small, {"tpr": ThresholdSpec(min=0.5)}, {})
    assert status == "warn" and t.note.startswith("only groups that do not decide")


def test_a_schema_1_results_file_keeps_what_was_judged() -> None:
    """`deepaudit report old.json`: a 1.x results.json has no summary.judged; it is derived from the thresholds,
    so an old audit is not re-rendered as 'nothing was judged'."""
    import json

    from audit.results import AuditResult
    from reports import _format as fmt
    from tests.reports.conftest import build_result

    data = json.loads(build_result().to_json())
    data["schema_version"] = "1.2"
    for key in ("judged", "not_judged", "on_not_judged"):
        data["summary"].pop(key)
    old = AuditResult.from_json(json.dumps(data))
    assert old.summary.judged == ["performance", "fairness.group_gaps", "robustness.pgd"]
    assert all("nothing was judged" not in r["text"] for r in fmt.top_risks(old, limit=50))
