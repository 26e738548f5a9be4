"""Data drift between the reference (e.g. training) set and the evaluation set, per feature.

Context for the other results: a model judged on data unlike what it was trained on is judged on
something else. Numeric features get the two-sample Kolmogorov–Smirnov test, low-cardinality
features the chi-square test of homogeneity (both from SciPy), and every feature the population
stability index (PSI) on reference quantile bins. p-values are corrected for the number of
features with Benjamini–Hochberg.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy import stats

from audit.config import CheckConfig, ThresholdSpec
from audit.context import AuditContext
from audit.errors import SkipCheck
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from audit.rows import as_array


class DriftConfig(CheckConfig):
    """Settings of the ``drift`` check."""

    alpha: float = Field(default=0.05, gt=0, lt=1, description="False discovery rate for the per-feature tests.")
    n_bins: int = Field(default=10, ge=2, le=100, description="Reference-quantile bins for PSI.")
    max_categories: int = Field(default=10, ge=2, description="Features with at most this many distinct values are categorical.")
    psi_alert: float = Field(default=0.25, gt=0, description="PSI above this marks a major shift (0.1-0.25: moderate).")


def population_stability_index(reference: np.ndarray, current: np.ndarray, n_bins: int = 10,
                               eps: float = 1e-4) -> float:
    """PSI = sum over bins of (c - r) * ln(c / r), bins at reference quantiles (or categories)."""
    values = np.unique(reference)
    if len(values) <= n_bins:
        edges = None
        r = np.array([(reference == v).mean() for v in values])
        c = np.array([(current == v).mean() for v in values])
        # Mass the reference never saw goes into its own bin.
        r, c = np.r_[r, 0.0], np.r_[c, 1.0 - c.sum()]
    else:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1]))
        r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
        c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1) / len(current)
    r, c = np.clip(r, eps, None), np.clip(c, eps, None)
    return float(np.sum((c - r) * np.log(c / r)))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Adjusted p-values (step-up), as ``statsmodels``' ``fdr_bh``."""
    n = len(p)
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return out


@register_check("drift")
class Drift(Check):
    """Per-feature drift of tabular inputs, reference against evaluation set.

    References
    ----------
    Benjamini, Hochberg. "Controlling the False Discovery Rate", JRSS B 1995.
    Yurdakul. "Statistical Properties of Population Stability Index", 2018.
    """

    category = "shift"
    title = "Data drift (reference vs evaluation)"
    needs = ("reference",)
    input_kinds = ("tabular",)
    Config = DriftConfig
    metric_names = ("share_drifted", "max_psi", "psi", "p_value")
    #: Built-in condition (warn): any feature whose shift is significant at the false discovery rate ``alpha``.
    default_thresholds = {"share_drifted": ThresholdSpec(max=0, level="warn")}

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: DriftConfig = self.config  # type: ignore[assignment]
        if "reference" not in ctx.datasets:
            raise SkipCheck("no reference set: give data.reference (e.g. the training data) to measure drift.")
        ref, ev = ctx.datasets["reference"], ctx.dataset("eval")
        if ctx.adapter.input_kind != "tabular" or isinstance(ev.inputs, list) or ev.inputs.ndim != 2:
            raise SkipCheck(f"drift tests per feature apply to tabular data; this model takes {ctx.adapter.input_kind} inputs.")
        if ref.inputs.shape[1] != ev.inputs.shape[1]:
            raise SkipCheck(f"the reference set has {ref.inputs.shape[1]} features but the evaluation set {ev.inputs.shape[1]}.")
        names = ev.feature_names or [f"x{j}" for j in range(ev.inputs.shape[1])]
        ref_x, ev_x = as_array(ref.inputs), as_array(ev.inputs)  # tables (N, F): small, read whole
        tests, pvals, psis = [], [], []
        for j in range(ev.inputs.shape[1]):
            r, c = np.asarray(ref_x[:, j], float), np.asarray(ev_x[:, j], float)
            categories = np.union1d(np.unique(r), np.unique(c))
            if len(categories) <= cfg.max_categories:
                table = np.array([[np.sum(r == v) for v in categories], [np.sum(c == v) for v in categories]])
                table = table[:, table.sum(axis=0) > 0]
                p = 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table)[1])
                tests.append("chi-square")
            else:
                p = float(stats.ks_2samp(r, c).pvalue)
                tests.append("Kolmogorov-Smirnov")
            pvals.append(p)
            psis.append(population_stability_index(r, c, cfg.n_bins))
        adjusted = benjamini_hochberg(np.array(pvals))
        drifted = adjusted < cfg.alpha
        n_ref, n_ev = len(ref), len(ev)
        metrics = [
            Metric(name="share_drifted", value=float(drifted.mean()), n=len(names), higher_is_better=False,
                   method=f"share of features whose Benjamini–Hochberg adjusted p-value is below {cfg.alpha} "
                          f"({n_ref} reference vs {n_ev} evaluation samples)"),
            Metric(name="max_psi", value=float(max(psis)), n=n_ref + n_ev, higher_is_better=False,
                   method=f"largest population stability index over features, {cfg.n_bins} reference-quantile bins"),
        ]
        for j, name in enumerate(names):
            metrics.append(Metric(name="psi", group=name, value=psis[j], n=n_ref + n_ev, higher_is_better=False,
                                  method=f"population stability index, {cfg.n_bins} reference-quantile bins"))
            metrics.append(Metric(name="p_value", group=name, value=float(adjusted[j]), n=n_ref + n_ev,
                                  method=f"scipy.stats {tests[j]} test, Benjamini–Hochberg adjusted"))
        order = np.argsort(-np.array(psis))
        rows = [[names[j], tests[j], round(pvals[j], 6), round(float(adjusted[j]), 6), round(psis[j], 4),
                 "yes" if drifted[j] else "no"] for j in order]
        major = [names[j] for j in order if psis[j] > cfg.psi_alert]
        evidence = [
            Table(title="Per-feature drift, largest PSI first",
                  columns=["feature", "test", "p-value", "BH-adjusted p", "PSI", "drifted"], rows=rows),
            Figure(kind="bar", title="Population stability index per feature",
                   data={"labels": [names[j] for j in order[:30]], "values": [psis[j] for j in order[:30]],
                         "ylabel": "PSI (0.1 moderate, 0.25 major)"}),
        ]
        summary = (f"{int(drifted.sum())} of {len(names)} features drifted (FDR {cfg.alpha}); largest PSI "
                   f"{max(psis):.3f} ({names[order[0]]})" + (f"; major shift in {', '.join(major[:5])}." if major else "."))
        return CheckOutput(
            summary=summary, metrics=metrics, evidence=evidence, dataset="eval", n_samples=n_ev,
            method=(f"Per feature: chi-square test of homogeneity for features with at most {cfg.max_categories} "
                    "distinct values, else two-sample Kolmogorov–Smirnov (SciPy); p-values adjusted with "
                    "Benjamini–Hochberg across features; PSI on reference-quantile bins."),
            limitations=["Per-feature tests miss shifts in the joint distribution (correlations between features).",
                         "With large samples tiny, harmless shifts are significant: read p-values beside PSI."],
            status_floor="warn" if major else "pass",
        )
