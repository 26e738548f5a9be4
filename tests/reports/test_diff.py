"""`deepaudit diff` as a CI gate: tolerances by kind of metric, changes that are not comparable,
changes within noise, timing left out — and identical weights in two formats diff clean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import cli
from audit.results import AuditResult, CheckResult, Metric, ThresholdOutcome, summarise
from reports.changes import _where_differs, metric_kind, not_comparable, setup_differs, within_noise, worse_by
from reports.diff import diff_results, render_diff_table

runner = CliRunner()


def _m(name: str, value: float | None, *, n: int = 100, method: str = "m", unit: str | None = None,
       hib: bool | None = True, ci: tuple[float, float] | None = None, provenance: str = "measured") -> Metric:
    lo, hi = ci if ci is not None else (None, None)
    return Metric(name=name, value=value, n=n, method=method, unit=unit, higher_is_better=hib, ci_low=lo,
                  ci_high=hi, ci_level=0.95 if ci else None, provenance=provenance)


def _audit(audit_result: AuditResult, metrics: list[Metric], *, status: str = "measured",
           thresholds: list[ThresholdOutcome] = ()) -> AuditResult:
    check = CheckResult(id="c", category="performance", title="C", status=status, summary="s", metrics=metrics,
                        thresholds=list(thresholds))
    return audit_result.model_copy(update={"checks": [check], "summary": summarise([check])})


def _diff(audit_result: AuditResult, base: list[Metric], new: list[Metric], **kw: object):
    return diff_results(_audit(audit_result, base), _audit(audit_result, new), **kw)


def test_metric_kinds() -> None:
    assert metric_kind(_m("accuracy", 0.9)) == "rate"
    assert metric_kind(_m("model_size_mb", 1.0, unit="MiB")) == "cost"
    assert metric_kind(_m("flops_per_sample", 1.0, unit="FLOP")) == "cost"
    for unit in ("ms/batch", "samples/s", "Wh/1000 inferences", "kWh/year"):
        assert metric_kind(_m("t", 1.0, unit=unit)) == "timing"


def test_rates_absolute_costs_relative(audit_result: AuditResult) -> None:
    assert _diff(audit_result, [_m("acc", 0.90)], [_m("acc", 0.895)]).regressions == []
    assert [r.item for r in _diff(audit_result, [_m("acc", 0.90)], [_m("acc", 0.88)]).regressions] == ["acc"]
    # A size 5% larger is within the relative 10%; 20% larger is not — whatever the absolute numbers.
    size = dict(unit="MiB", hib=False, n=1)
    assert _diff(audit_result, [_m("size", 100.0, **size)], [_m("size", 105.0, **size)]).regressions == []
    (r,) = _diff(audit_result, [_m("size", 100.0, **size)], [_m("size", 120.0, **size)]).regressions
    assert "rose by 20.0% (tolerance 0.1 relative)" in r.detail
    assert _diff(audit_result, [_m("size", 100.0, **size)], [_m("size", 120.0, **size)], rel_tolerance=0.25).regressions == []
    # From zero, any rise is a regression.
    assert _diff(audit_result, [_m("size", 0.0, **size)], [_m("size", 1e-6, **size)]).regressions != []


def test_timing_not_judged_unless_asked(audit_result: AuditResult) -> None:
    lat = dict(unit="ms/batch", hib=False)
    report = _diff(audit_result, [_m("latency", 1.0, **lat)], [_m("latency", 3.0, **lat)])
    assert report.regressions == [] and [n.kind for n in report.notes] == ["timing_not_judged"]
    assert "--include-timing" in render_diff_table(report)
    (r,) = _diff(audit_result, [_m("latency", 1.0, **lat)], [_m("latency", 3.0, **lat)], include_timing=True).regressions
    assert "rose by 200.0%" in r.detail
    # The number of timed runs is part of the method's text, not a reason to call timing incomparable.
    a = _m("latency", 1.0, method="median of 20 timed batches of 64", n=20, **lat)
    b = _m("latency", 3.0, method="median of 37 timed batches of 64", n=37, **lat)
    assert not_comparable(a, b) is None


#: A metric only the new audit reports: the check ran another method (e.g. Mahalanobis with features).
EXTRA = _m("auroc", 0.99, n=770)
EXTRA_G = EXTRA.model_copy(update={"group": "mahalanobis"})


def test_not_comparable_when_the_check_ran_differently(audit_result: AuditResult) -> None:
    report = _diff(audit_result, [_m("auroc", 0.9, n=1040)], [_m("auroc", 0.8, n=770), EXTRA_G])
    assert report.regressions == []
    (note,) = report.notes
    assert note.kind == "not_comparable" and "n 1,040 → 770" in note.detail and "other methods" in note.detail
    report = _diff(audit_result, [_m("failing", 0.0, hib=False, method="of the 4 checked (ig, saliency)"), EXTRA_G.model_copy(update={"group": "ig"})],
                   [_m("failing", 1.0, hib=False, method="of the 2 checked (lime, kernel_shap)"), EXTRA_G.model_copy(update={"group": "lime"})])
    assert report.regressions == [] and "method changed" in report.notes[0].detail
    assert not_comparable(_m("e", 1.0), _m("e", 1.0, provenance="estimated")) == "measured → estimated"
    strict = _diff(audit_result, [_m("auroc", 0.9, n=1040)], [_m("auroc", 0.8, n=770), EXTRA_G], strict=True)
    assert [r.item for r in strict.regressions] == ["auroc"] and "not comparable" in strict.regressions[0].detail


def test_n_or_method_that_follow_the_models_answers_do_not_excuse_a_regression(audit_result: AuditResult) -> None:
    """When the check ran the same way (same config, samples and metrics), a changed n or method text
    comes from the model's answers: the rows predicted as a class (precision), the correct rows an
    attack starts from, the attack that turned out strongest. The change is the model's: a regression."""
    report = _diff(audit_result, [_m("precision", 0.98, n=48).model_copy(update={"group": "8"})],
                   [_m("precision", 0.39, n=133).model_copy(update={"group": "8"})])
    assert [r.item for r in report.regressions] == ["precision [8]"] and report.notes == []
    report = _diff(audit_result, [_m("robust_accuracy", 0.6, method="robust accuracy (found by PGD)")],
                   [_m("robust_accuracy", 0.2, method="robust accuracy (found by FGSM)")])
    assert [r.item for r in report.regressions] == ["robust_accuracy"]
    report = _diff(audit_result, [_m("attack_success_rate", 0.2, hib=False, n=62)],
                   [_m("attack_success_rate", 0.7, hib=False, n=47)])
    assert [r.item for r in report.regressions] == ["attack_success_rate"]


def test_within_noise_judged_from_intervals(audit_result: AuditResult) -> None:
    wide = _diff(audit_result, [_m("acc", 0.90, ci=(0.80, 0.97))], [_m("acc", 0.86, ci=(0.76, 0.94))])
    assert wide.regressions == [] and wide.notes[0].kind == "within_noise"
    narrow = _diff(audit_result, [_m("acc", 0.90, ci=(0.895, 0.905))], [_m("acc", 0.86, ci=(0.855, 0.865))])
    assert [r.item for r in narrow.regressions] == ["acc"]
    # The bound: two equal intervals of half-width h; a difference beyond 1.96·√2·h/1.96 = √2·h is significant.
    h = 0.02
    a = _m("acc", 0.9, ci=(0.9 - h, 0.9 + h))
    assert within_noise(a, _m("acc", 0.9 - 1.40 * h, ci=(0.9 - 2.4 * h, 0.9 - 0.4 * h))) is not None
    assert within_noise(a, _m("acc", 0.9 - 1.43 * h, ci=(0.9 - 2.43 * h, 0.9 - 0.43 * h))) is None
    assert within_noise(_m("acc", 0.9), _m("acc", 0.8)) is None  # no intervals: no noise to judge by


def test_within_noise_reads_each_intervals_own_level() -> None:
    """A 50% interval of half-width h is a standard error of h / 0.6745: two of them differ significantly
    beyond 1.96·√2·h / 0.6745 = 0.0822 at h = 0.02, not at √2·h as two 95% intervals would."""
    def at50(value: float) -> Metric:
        return _m("acc", value, ci=(value - 0.02, value + 0.02)).model_copy(update={"ci_level": 0.5})

    assert within_noise(at50(0.9), at50(0.9 - 0.080)) is not None
    assert within_noise(at50(0.9), at50(0.9 - 0.0845)) is None
    unstated = {"ci_level": None}  # an interval without its level is read as 95%
    h = 0.02
    assert within_noise(_m("acc", 0.9, ci=(0.9 - h, 0.9 + h)).model_copy(update=unstated),
                        _m("acc", 0.9 - 1.40 * h, ci=(0.9 - 2.4 * h, 0.9 - 0.4 * h)).model_copy(update=unstated)) is not None


def test_worse_by_is_absolute_for_rates_and_relative_for_costs() -> None:
    assert worse_by(_m("acc", 0.5), _m("acc", 0.48), True) == pytest.approx(0.02)  # not 0.04, relative
    assert worse_by(_m("acc", 0.5), _m("acc", 0.53), True) == pytest.approx(-0.03)
    size = lambda v: _m("size", v, unit="MB", hib=False)  # noqa: E731
    assert worse_by(size(4.0), size(5.0), False) == pytest.approx(0.25)
    assert worse_by(size(0.0), size(0.0), False) == 0.0  # from zero: unchanged is not worse
    assert worse_by(size(0.0), size(3.0), False) == float("inf")
    speed = lambda v: _m("throughput", v, unit="FLOPs", hib=True)  # noqa: E731
    assert worse_by(speed(0.0), speed(2.0), True) == 0.0  # from zero and better: not worse


def test_setup_differs_says_what_ran_differently() -> None:
    def check(*names: str, config: dict | None = None, n: int = 100) -> CheckResult:
        metrics = [_m(name.split("@")[0], 0.5).model_copy(update={"group": name.split("@")[1] if "@" in name else None})
                   for name in names]
        return CheckResult(id="c", category="performance", title="C", status="measured", summary="s", n_samples=n,
                           metrics=metrics, config=config or {})

    assert setup_differs(check("a"), check("a")) is None
    assert setup_differs(check("a", config={"k": 1}), check("a", config={"k": 2})) == "the check's configuration changed"
    assert setup_differs(check("a"), check("a", n=50)) == "the check ran on 100 → 50 samples"
    assert setup_differs(check("a"), check("a", "x@g1", "y", "z@g2")) == (
        "the check ran other methods (3 metrics in one audit only: x [g1], y, z [g2])")
    assert setup_differs(check("a", "w"), check("a", "x@g1", "y", "z@g2")) == (
        "the check ran other methods (4 metrics in one audit only: w, x [g1], y, … (1 more))")


def test_where_two_method_texts_differ_is_shown_from_just_before_the_difference() -> None:
    assert _where_differs("ab", "ac") == _where_differs("ab", "ac", width=2) == "'ab' → 'ac'"  # whole: no '…'
    assert _where_differs("abc", "abcd") == "'abc' → 'abcd'"  # one is the other's beginning
    a, b = "x" * 30 + "abc" + "y" * 60, "x" * 30 + "abd" + "y" * 60  # they differ at 32; shown from 22, 50 long
    assert _where_differs(a, b) == repr("…" + a[22:72] + "…") + " → " + repr("…" + b[22:72] + "…")
    assert _where_differs(a, b, width=200) == repr("…" + a[22:]) + " → " + repr("…" + b[22:])


def _thr(metric: str, observed: float, passed: bool) -> ThresholdOutcome:
    return ThresholdOutcome(metric=metric, min=0.85, level="warn", observed=observed, passed=passed, source="default")


def test_status_worse_only_through_incomparable_metrics_is_a_note(audit_result: AuditResult) -> None:
    base = _audit(audit_result, [_m("auroc", 0.9, n=1040)], status="pass", thresholds=[_thr("auroc", 0.9, True)])
    new = _audit(audit_result, [_m("auroc", 0.8, n=770), EXTRA_G], status="warn", thresholds=[_thr("auroc", 0.8, False)])
    report = diff_results(base, new)
    assert report.regressions == [] and {n.item for n in report.notes} == {"status", "auroc"}
    assert diff_results(base, new, strict=True).regressions[0].kind == "status"
    same_n = _audit(audit_result, [_m("auroc", 0.8, n=1040)], status="warn", thresholds=[_thr("auroc", 0.8, False)])
    assert [r.kind for r in diff_results(base, same_n).regressions] == ["status", "metric"]
    errored = _audit(audit_result, [_m("auroc", 0.8, n=770), EXTRA_G], status="error", thresholds=[_thr("auroc", 0.8, False)])
    assert diff_results(base, errored).regressions[0].kind == "status"  # an error is never excused


def test_diff_cli_flags(tmp_path: Path, audit_result: AuditResult) -> None:
    lat = dict(unit="ms/batch", hib=False)
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    base.write_text(_audit(audit_result, [_m("latency", 1.0, **lat)]).to_json())
    new.write_text(_audit(audit_result, [_m("latency", 1.5, **lat)]).to_json())
    res = runner.invoke(cli.app, ["diff", str(base), str(new)])
    assert res.exit_code == 0 and "Timing not judged" in res.stdout
    res = runner.invoke(cli.app, ["diff", str(base), str(new), "--include-timing"])
    assert res.exit_code == 1 and "1 regression(s)" in res.stdout
    assert runner.invoke(cli.app, ["diff", str(base), str(new), "--include-timing", "--rel-tolerance", "0.6"]).exit_code == 0
    res = runner.invoke(cli.app, ["diff", str(base), str(new), "--rel-tolerance", "-1"])
    assert res.exit_code == 2 and "--rel-tolerance must be a number >= 0" in res.stderr


# ------------------------------------------------------------------ end to end: one model, two formats

def _flags(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["audit", "--model", str(model), "--data", str(data), "--out", str(out), "--quiet", "--device", "cpu",
            "--no-html", "--set", "energy.track=false", "--set", "checks.performance.n_resamples=50",
            "--set", "checks.ood={n_synthetic: 40}", "--set", "checks.efficiency={min_seconds: 0, measure_energy: false}",
            "--set", "checks.explanations={max_samples: 2, n_steps: 4, n_shap_samples: 4, n_perturb: 2, methods: [integrated_gradients, lime]}",
            *[f"--set=checks.{c}.enabled=false" for c in ("corruption", "adversarial", "privacy.extraction")],
            "--set", "checks.performance.thresholds={informative_p_value: {max: 1}, baseline_lift: {min: -1000}}", *extra]


def test_same_weights_in_two_formats_diff_clean(tmp_path: Path) -> None:
    """ONNX exposes no features (OOD scores on the whole set, not a held-out half) and no gradients
    (explanations sanity-checked on other methods): every change is 'not comparable', none a regression;
    the same model with its last layer's rows rotated regresses."""
    from safetensors.torch import save_file
    from tiny_models import TINY_CNN_CLASS, TinyCNN, band_images

    torch.manual_seed(0)
    model = TinyCNN()
    x, y = band_images(150, size=8)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):  # a few steps make it a real classifier of the bright band (accuracy ~1)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    model.eval()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    torch.onnx.export(model, torch.from_numpy(x[:1]), str(tmp_path / "m.onnx"), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})
    with torch.no_grad():
        model.fc2.weight.copy_(model.fc2.weight[[1, 2, 0]])
    save_file(model.state_dict(), str(tmp_path / "worse.safetensors"))
    cls = ["--model-class", TINY_CNN_CLASS]
    for name, model_file, extra in (("st", "m.safetensors", cls), ("onnx", "m.onnx", []), ("worse", "worse.safetensors", cls)):
        res = runner.invoke(cli.app, _flags(tmp_path / model_file, tmp_path / "d.npz", tmp_path / name, *extra))
        assert res.exit_code in (0, 1), res.stderr
    res = runner.invoke(cli.app, ["diff", str(tmp_path / "st/results.json"), str(tmp_path / "onnx/results.json")])
    assert res.exit_code == 0, res.stdout
    assert "No regressions." in res.stdout and "Not comparable" in res.stdout
    assert "no longer reported (the check's limitations say why): " in res.stdout  # one line per check, not one per metric
    res = runner.invoke(cli.app, ["diff", str(tmp_path / "st/results.json"), str(tmp_path / "worse/results.json")])
    assert res.exit_code == 1 and "accuracy" in res.stdout, res.stdout
    # What makes the two formats differ is stated, not hidden.
    ood = {c["id"]: c for c in json.loads((tmp_path / "onnx/results.json").read_text())["checks"]}["ood"]
    assert any("features" in lim for lim in ood["limitations"])


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_diff_rejects_bad_tolerances(bad: float, audit_result: AuditResult) -> None:
    with pytest.raises(ValueError, match="rel_tolerance"):
        diff_results(audit_result, audit_result, rel_tolerance=bad)
