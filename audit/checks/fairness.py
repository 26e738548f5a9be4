"""Fairness: per-group metrics with fairlearn's ``MetricFrame`` and the gaps people cite, with
stratified bootstrap intervals, small-group warnings and a mitigation comparison.

Metric names (stable; thresholds may name any of them)
------------------------------------------------------
``demographic_parity_difference``, ``demographic_parity_ratio``, ``equalized_odds_difference``,
``equal_opportunity_difference``, ``predictive_parity_difference``.

* ``group=None`` — the headline: the worst value over every sensitive feature (and the
  intersection when ``intersectional: true``) and, for multiclass models, over every class
  one-vs-rest. Thresholds apply to these.
* ``group="<feature>"`` — the same gap for one sensitive feature (binary models), or
  ``group="<feature>|class=<name>"`` — one-vs-rest for one class (multiclass models).
* ``group="<feature>=<value>"`` — per-group ``selection_rate``, ``tpr``, ``fpr``, ``ppv``,
  ``accuracy``, ``mean_score``, ``observed_rate`` (binary models; for multiclass see the table).

Decisions
---------
* Missing values in a sensitive column form their own group ``"<missing>"``, and the check warns.
* Groups smaller than ``min_group_size`` are shown but excluded from every gap, so they never
  decide pass or fail on their own; the check warns. With fewer than two groups large enough the
  gaps are undefined (value ``null``) and every threshold on them is missed (no evidence of
  fairness): with the default thresholds that is a warning.
* Default thresholds (difference <= 0.1, ratio >= 0.8, on every gap) WARN, they do not fail: the
  criteria conflict whenever base rates differ (a perfect predictor misses demographic parity), so
  which one must hold depends on the use. Set ``level: fail`` in the config on the ones that apply.
* Only one group in a column: the check is skipped with the reason (there is no gap to measure).
* A gap is judged against its noise floor. The gap of a maximum of absolute differences is positive
  even between groups assigned at random, and its bootstrap interval never contains 0, so a
  permutation test shuffles the group labels (``n_permutations`` times, group sizes fixed) and
  reports the p-value and the null's 95th percentile beside every gap. A gap beyond a ``fail``
  threshold fails only when its p-value, Bonferroni-adjusted over the features and classes tested,
  is below ``significance_level``; otherwise the threshold warns as "within noise" (the data cannot
  tell the gap from chance; more data can). ``warn`` thresholds warn either way.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from audit.config import CheckConfig, ThresholdSpec
from audit.context import AuditContext
from audit.errors import InputError, SkipCheck
from audit.fairness.gaps import (
    GAPS,
    bootstrap_gaps,
    frame_gaps,
    group_counts,
    group_frame,
    noise_floor,
    permutation_gaps,
)
from audit.registry import Check, CheckOutput, NoiseTest, register_check
from audit.results import Figure, Metric, Table
from audit.stats import percentile_interval

MISSING = "<missing>"
GAP_TEXT = {
    "demographic_parity_difference": "largest minus smallest selection rate between groups",
    "demographic_parity_ratio": "smallest over largest selection rate between groups (four-fifths rule: >= 0.8)",
    "equalized_odds_difference": "max of the TPR gap and the FPR gap between groups (fairlearn's worst_case)",
    "equal_opportunity_difference": "largest minus smallest true positive rate between groups",
    "predictive_parity_difference": "largest minus smallest precision (PPV) between groups",
}


class FairnessConfig(CheckConfig):
    """Settings of the ``fairness.group_metrics`` check."""

    min_group_size: int = Field(default=30, ge=1,
                                description="Groups smaller than this are shown but never decide a gap; the check warns.")
    positive_class: Annotated[int, Field(ge=0)] | str | None = Field(
        default=None, description="Binary models: the favourable class (index or name); default the class with index 1. "
                                  "Multiclass models report every class one-vs-rest.")
    intersectional: bool = Field(default=False,
                                 description="Also audit the intersection of all sensitive features (e.g. sex × race).")
    n_resamples: int = Field(default=1000, ge=0,
                             description="Bootstrap resamples (stratified by group) for the 95% intervals of the gaps (0: none).")
    ci_level: float = Field(default=0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    n_permutations: int = Field(
        default=1000, ge=0, description="Shuffles of the group labels in the permutation test that judges each gap "
                                        "against its noise floor (0: no test, a missed fail threshold fails whatever the noise).")
    significance_level: float = Field(
        default=0.05, gt=0, lt=1, description="A gap beyond a fail threshold fails only when its permutation p-value, "
                                              "Bonferroni-adjusted over the sensitive features and classes, is below "
                                              "this; otherwise it warns as within noise.")
    mitigation: list[Literal["threshold_optimizer", "exponentiated_gradient", "reweighing", "adversarial_debiasing",
                             "reweighing_retrain"]] = Field(
        default_factory=lambda: ["threshold_optimizer", "exponentiated_gradient", "reweighing", "reweighing_retrain"],
        description="Mitigations to fit on the 'reference' data set and compare on the eval set (binary models). "
                    "'adversarial_debiasing' (opt-in; a few seconds on a small MLP's features): fairlearn's "
                    "AdversarialFairnessClassifier on the penultimate features; 'reweighing_retrain': the whole model "
                    "retrained from scratch through the recipe in its model.json with reweighing sample weights (one "
                    "training run of the recipe; skipped, with the reason, without a recipe).")
    adversarial_epochs: int = Field(default=20, ge=1, description="adversarial_debiasing: training epochs.")
    adversarial_batch_size: int = Field(default=64, ge=1, description="adversarial_debiasing: samples per step.")
    adversarial_alpha: float = Field(default=1.0, ge=0,
                                     description="adversarial_debiasing: weight of the adversary's gradient (higher: "
                                                 "fairer, less accurate).")
    retrain_epochs: int | None = Field(default=None, ge=1,
                                       description="reweighing_retrain: training epochs (default: the recipe's).")
    max_fit_samples: int = Field(
        default=20_000, ge=10, description="The mitigations are fitted on at most this many rows of the 'reference' "
                                           "set, drawn (seeded) stratified by label × joint sensitive group before "
                                           "any of its logits or features are computed; the report states the number.")
    constraint: Literal["demographic_parity", "equalized_odds"] = Field(
        default="demographic_parity", description="Fairness constraint the mitigations target.")
    save_dir: str | None = Field(default=None, description="Directory to save the mitigated heads and models "
                                                           "(safetensors + JSON) in.")


def sensitive_columns(ctx: AuditContext, intersectional: bool, name: str = "eval") -> tuple[dict[str, pd.Series], list[str]]:
    """Sensitive features as string Series (missing -> ``"<missing>"``) and the columns that had missing values."""
    frame = ctx.dataset(name).sensitive_features
    if frame is None or frame.shape[1] == 0:
        raise SkipCheck(f"the '{name}' data set has no sensitive features; fix: --sensitive COLUMN "
                        f"(or data.{name}.sensitive_features in the config).")
    cols: dict[str, pd.Series] = {}
    missing = []
    for col in frame.columns:
        s = frame[col]
        if s.isna().any():
            missing.append(str(col))
        cols[str(col)] = s.astype(object).where(s.notna(), MISSING).astype(str).reset_index(drop=True)
    if intersectional and len(cols) > 1:
        key = " × ".join(cols)
        cols[key] = pd.Series(["|".join(v) for v in zip(*cols.values())], dtype=str)
    return cols, missing


SIGNIFICANCE_RULE = (
    "Each gap is judged against its noise floor: a permutation test shuffles the group labels (group sizes "
    "fixed) and recomputes the gap; the p-value is the share of shuffles with a gap at least as large (for the "
    "ratio: as small). A gap beyond a fail threshold fails only when its p-value, Bonferroni-adjusted over the "
    "sensitive features and classes tested, is below significance_level; otherwise the threshold warns as "
    "'within noise' (the data cannot tell the gap from chance). Warn thresholds warn either way.")


def _noise_text(name: str, p: float | None, q: float | None, cfg: FairnessConfig) -> str:
    if not cfg.n_permutations:
        return "no permutation test (n_permutations = 0)"
    if p is None:
        return "no permutation test (gap undefined)"
    which = "5th" if name == "demographic_parity_ratio" else "95th"
    return (f"permutation p = {p:.4f} over {cfg.n_permutations} shuffles of the group labels "
            f"(null {which} percentile {q:.4f})")


def noise_tests(tested: dict[str, list[tuple[str, float, float | None, float | None]]],
                alpha: float) -> dict[str, list[NoiseTest]]:
    """Per gap, whether each feature's (and class's) value stands out from its permutation null.

    The headline is the worst of ``m`` tested gaps, so each p-value is Bonferroni-adjusted by ``m``
    (``min(1, m·p)``). A gap with no test (no permutations, or an undefined null) counts as
    significant: the judge must not call it noise without evidence.
    """
    out: dict[str, list[NoiseTest]] = {}
    for name, entries in tested.items():
        m = len(entries)
        tests = []
        for label, value, p, q in entries:
            if p is None:
                tests.append(NoiseTest(value=value, significant=True, text=f"{label}: {value:.3f}, not tested"))
                continue
            adj = min(1.0, p * m)
            which = "5th" if name == "demographic_parity_ratio" else "95th"
            tests.append(NoiseTest(value=value, significant=adj < alpha,
                                   text=f"{label}: {value:.3f}, permutation p = {p:.3f}"
                                        + (f" (Bonferroni ×{m}: {adj:.3f})" if m > 1 else "")
                                        + f", null {which} percentile {q:.3f}"))
        out[name] = tests
    return out


def resolve_positive(ctx: AuditContext, positive: int | str | None) -> list[int]:
    """Classes audited one-vs-rest: the positive class for binary models, every class otherwise."""
    names = ctx.class_names
    if len(names) <= 2:
        if positive is None:
            return [1]
        if isinstance(positive, str) and not positive.isdigit():
            if positive not in names:
                raise InputError(f"The 'positive_class' parameter of fairness.group_metrics must be one of "
                                 f"{names}. Got {positive!r} instead.")
            return [names.index(positive)]
        idx = int(positive)
        if idx not in (0, 1):
            raise InputError(f"The 'positive_class' parameter of fairness.group_metrics must be 0 or 1 for a "
                             f"binary model. Got {positive!r} instead.")
        return [idx]
    if positive is not None:
        raise InputError(f"positive_class applies to binary models only, and this model has {len(names)} classes: "
                         "demographic parity, equalized odds and the other gaps are binary metrics, so "
                         "fairness.group_metrics reports them one-vs-rest for every class (metric group "
                         "'<feature>|class=<name>', headline the worst class); remove positive_class.")
    return list(range(len(names)))


@register_check("fairness.group_metrics")
class GroupMetrics(Check):
    """Per-group accuracy, selection rate, TPR, FPR, PPV and calibration, and the gaps between groups.

    References
    ----------
    Hardt, Price, Srebro. "Equality of Opportunity in Supervised Learning", NeurIPS 2016.
    Feldman et al. "Certifying and Removing Disparate Impact", KDD 2015 (four-fifths rule).
    Bird et al. "Fairlearn: A toolkit for assessing and improving fairness in AI", 2020.
    """

    category = "fairness"
    title = "Group fairness"
    needs = ("labels", "sensitive_features")
    uses = ("reference",)
    Config = FairnessConfig
    metric_names = GAPS + ("selection_rate", "tpr", "fpr", "ppv", "accuracy", "mean_score", "observed_rate")
    default_thresholds = {
        "demographic_parity_difference": ThresholdSpec(max=0.1, level="warn"),
        "demographic_parity_ratio": ThresholdSpec(min=0.8, level="warn"),
        "equalized_odds_difference": ThresholdSpec(max=0.1, level="warn"),
        "equal_opportunity_difference": ThresholdSpec(max=0.1, level="warn"),
        "predictive_parity_difference": ThresholdSpec(max=0.1, level="warn"),
    }

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: FairnessConfig = self.config  # type: ignore[assignment]
        columns, missing = sensitive_columns(ctx, cfg.intersectional)
        y_true, y_pred, probs = ctx.y_true(), ctx.y_pred(), ctx.probs()
        n = len(y_true)
        classes = resolve_positive(ctx, cfg.positive_class)
        binary = len(ctx.class_names) <= 2
        names = ctx.class_names
        for col, s in columns.items():
            if s.nunique() < 2:
                raise SkipCheck(f"only one group ({s.iloc[0]!r}) in the sensitive column {col!r}: there is no "
                                "gap to measure; give data with at least two groups.")
        level = cfg.ci_level if cfg.n_resamples else None
        ci_text = (f"{cfg.ci_level:.0%} percentile bootstrap, {cfg.n_resamples} resamples stratified by group"
                   if cfg.n_resamples else "no interval (n_resamples = 0)")
        metrics: list[Metric] = []
        rows: list[list] = []
        gap_rows: list[list] = []
        small: list[str] = []
        undecided: dict[str, str] = {}
        worst: dict[str, tuple[float, Metric]] = {}
        tested: dict[str, list[tuple[str, float, float | None, float | None]]] = {}
        rng = ctx.rng(self.id)
        for col, groups in columns.items():
            counts = groups.value_counts()
            eligible = counts[counts >= cfg.min_group_size].index.tolist()
            small += [f"{col}={g} (n={int(c)})" for g, c in counts.items() if c < cfg.min_group_size]
            mask = groups.isin(eligible).to_numpy()
            n_eligible = int(mask.sum())
            for c in classes:
                yb = (y_true == c).astype(np.int64)
                pb = (y_pred == c).astype(np.int64)
                score = probs[:, c]
                label = col if binary else f"{col}|class={names[c]}"
                mf = group_frame(yb, pb, groups)
                by = mf.by_group
                mean_score = pd.Series(score).groupby(groups.to_numpy()).mean()
                observed = pd.Series(yb).groupby(groups.to_numpy()).mean()
                for g in by.index:
                    row = by.loc[g]
                    cells = [col, names[c], g, int(row["count"]), g in eligible]
                    cells += [None if pd.isna(row[k]) else round(float(row[k]), 6)
                              for k in ("accuracy", "selection_rate", "tpr", "fpr", "ppv")]
                    cells += [round(float(mean_score[g]), 6), round(float(observed[g]), 6),
                              round(abs(float(mean_score[g]) - float(observed[g])), 6)]
                    rows.append(cells)
                    # Per group (one-vs-rest per class for multiclass), so a threshold on any of them is judged
                    # on the worst group.
                    values = {k: row[k] for k in ("selection_rate", "tpr", "fpr", "ppv", "accuracy")}
                    values["mean_score"], values["observed_rate"] = mean_score[g], observed[g]
                    where = f"{col}={g}" if binary else f"{col}={g}|class={names[c]}"
                    if g not in eligible:
                        undecided[where] = f"fewer than min_group_size = {cfg.min_group_size} members"
                    for k, v in values.items():
                        metrics.append(Metric(name=k, group=where, value=None if pd.isna(v) else float(v),
                                              n=int(row["count"]), method=f"fairlearn MetricFrame by group "
                                              f"({k}, positive class {names[c]!r})"))
                reps: dict[str, np.ndarray] = {}
                null: dict[str, np.ndarray] = {}
                if len(eligible) >= 2:
                    gv, pairs = frame_gaps(by.loc[eligible])  # the one MetricFrame, its judged groups
                    _, counts = group_counts(yb[mask], pb[mask], groups[mask].to_numpy())
                    if cfg.n_resamples:
                        reps = bootstrap_gaps(counts, cfg.n_resamples, rng)
                    if cfg.n_permutations:
                        null = permutation_gaps(counts, cfg.n_permutations, rng)
                else:
                    gv = {k: float("nan") for k in GAPS}
                    pairs = {k: f"fewer than two groups with at least {cfg.min_group_size} members" for k in GAPS}
                for k in GAPS:
                    lo, hi = percentile_interval(reps[k], cfg.ci_level) if k in reps else (None, None)
                    v = None if np.isnan(gv[k]) else gv[k]
                    p, q = noise_floor(null[k], v, k) if k in null and v is not None else (None, None)
                    if v is not None:
                        tested.setdefault(k, []).append((label, v, p, q))
                    m = Metric(name=k, group=label, value=v, ci_low=lo, ci_high=hi, ci_level=level if lo is not None else None,
                               n=n_eligible, higher_is_better=k == "demographic_parity_ratio",
                               method=(f"{GAP_TEXT[k]}; fairlearn MetricFrame over {len(eligible)} groups of "
                                       f"{col!r} with >= {cfg.min_group_size} members, positive class "
                                       f"{names[c]!r}; driven by {pairs[k]}; {ci_text}; {_noise_text(k, p, q, cfg)}"))
                    metrics.append(m)
                    gap_rows.append([label, k, v if v is None else round(v, 6), lo, hi, n_eligible, pairs[k],
                                     None if p is None else round(p, 4), None if q is None else round(q, 6)])
                    badness = -1.0 if v is None else (1 - v if k == "demographic_parity_ratio" else v)
                    if k not in worst or badness > worst[k][0]:
                        worst[k] = (badness, m)
        for k in GAPS:
            m = worst[k][1]
            metrics.append(m.model_copy(update={"group": None, "method": f"worst over {len(columns)} sensitive "
                                                f"feature(s){'' if binary else ' and every class one-vs-rest'}: "
                                                f"{m.group}; " + m.method}))
        headline = {m.name: m for m in metrics if m.group is None}
        four_fifths = headline["demographic_parity_ratio"].value
        limitations = [
            "Group fairness metrics are statistical parity criteria; they cannot all hold at once when base rates "
            "differ (Kleinberg et al. 2016; Chouldechova 2017) — pick the one that fits the use.",
            "Intervals are a stratified bootstrap (group sizes fixed); the headline interval is that of the "
            "feature/class attaining the worst value.",
        ]
        floor: Literal["pass", "warn"] = "pass"
        if small:
            floor = "warn"
            limitations.append(f"Groups smaller than min_group_size={cfg.min_group_size} are shown but excluded "
                               f"from every gap (too few to judge): {', '.join(small[:20])}.")
        if missing:
            floor = "warn"
            limitations.append(f"Missing values in sensitive column(s) {', '.join(missing)} form their own group "
                               f"{MISSING!r}.")
        evidence = [
            Table(title="Per-group metrics",
                  columns=["feature", "positive class", "group", "n", "judged", "accuracy", "selection rate", "TPR",
                           "FPR", "PPV", "mean score", "observed rate", "calibration gap"],
                  rows=rows, caption=f"fairlearn MetricFrame on {n} evaluation samples; 'judged' is false for groups "
                                     f"below min_group_size={cfg.min_group_size}."),
            Table(title="Fairness gaps", columns=["feature", "metric", "value", "ci low", "ci high", "n", "driven by",
                                                  "permutation p", "null 95th percentile"],
                  rows=gap_rows, caption=f"{ci_text}. {SIGNIFICANCE_RULE}"),
        ]
        sel = [r for r in rows if r[1] == names[classes[0]] and r[0] == next(iter(columns))]
        evidence.append(Figure(kind="bar", title="Selection rate by group",
                               data={"labels": [f"{r[2]} (n={r[3]})" for r in sel], "values": [r[6] for r in sel],
                                     "ylabel": "selection rate"},
                               caption=f"Share predicted {names[classes[0]]!r} per group of {next(iter(columns))!r}."))
        dp = [m for m in metrics if m.name == "demographic_parity_difference" and m.group is not None]
        evidence.append(Figure(kind="bar", title="Demographic parity difference with 95% intervals",
                               data={"labels": [str(m.group) for m in dp], "values": [m.value for m in dp],
                                     "ci_low": [m.ci_low for m in dp], "ci_high": [m.ci_high for m in dp],
                                     "ylabel": "demographic parity difference"},
                               caption="Per sensitive feature (and class); the default threshold is 0.1."))
        method = ("Predictions are the argmax of the model's logits. Per-group rates come from fairlearn's MetricFrame; "
                  "gaps are the largest minus the smallest rate and the smallest over the largest (MetricFrame.difference/ratio("
                  "method='between_groups')) over its groups with at least "
                  f"min_group_size={cfg.min_group_size} members. "
                  + ("Binary model: positive class " + repr(names[classes[0]]) + "." if binary else
                     "Multiclass model: every gap is computed one-vs-rest per class; the headline is the worst class."))
        mit_evidence, mit_limits = self._mitigation(ctx, cfg, classes, binary)
        evidence += mit_evidence
        limitations += mit_limits
        dpd = headline["demographic_parity_difference"].value
        eod = headline["equalized_odds_difference"].value
        fmt = lambda v: "undefined" if v is None else f"{v:.3f}"  # noqa: E731
        summary = (f"Demographic parity difference {fmt(dpd)}, ratio {fmt(four_fifths)}"
                   f"{' (below the four-fifths rule)' if four_fifths is not None and four_fifths < 0.8 else ''}, "
                   f"equalized odds difference {fmt(eod)} over {', '.join(columns)} on {n} samples.")
        return CheckOutput(summary=summary, metrics=metrics, evidence=evidence, method=method + " " + SIGNIFICANCE_RULE,
                           limitations=limitations, dataset="eval", n_samples=n, status_floor=floor,
                           noise_tests=noise_tests(tested, cfg.significance_level), undecided_groups=undecided)

    def _mitigation(self, ctx: AuditContext, cfg: FairnessConfig, classes: list[int],
                    binary: bool) -> tuple[list, list[str]]:
        if not cfg.mitigation:
            return [], []
        from audit.fairness.mitigation import run_mitigations

        return run_mitigations(ctx, cfg, classes[0], binary)
