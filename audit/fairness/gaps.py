"""Fairness gaps from per-group confusion counts, their bootstrap intervals and their noise floor;
per-group rates with fairlearn's ``MetricFrame`` and the gaps between them.

Every gap the fairness check reports (demographic parity, equalized odds, equal opportunity,
predictive parity) is a function of each group's confusion counts (tn, fp, fn, tp) alone. So the
resampling works on counts, never on row indices, and its memory does not grow with the rows:

* the stratified bootstrap draws each group's counts from a multinomial with the group's observed
  shares (the same distribution as resampling its rows with replacement);
* the permutation test shuffles the group labels (group sizes and the totals fixed): each group's
  counts are then a multivariate hypergeometric draw. The gap is judged against this null: the
  gap of a maximum of absolute differences is positive even when the groups were assigned at
  random, and its bootstrap interval never contains 0, so an interval alone cannot say a gap is
  real.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import accuracy_score, precision_score

from audit.stats import multinomial_resamples, permutation_p_value, permuted_group_counts

GAPS = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
        "equal_opportunity_difference", "predictive_parity_difference")
RATES = ("selection_rate", "tpr", "fpr", "ppv")
#: Gaps where a smaller value is the worse one.
LOWER_IS_WORSE = frozenset({"demographic_parity_ratio"})


def _rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def group_counts(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group labels (sorted) and their confusion counts ``(G, 4)``: tn, fp, fn, tp (binary y and p)."""
    labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
    codes = 2 * np.asarray(y).astype(np.int64) + np.asarray(p).astype(np.int64)
    counts = np.bincount(inverse.ravel() * 4 + codes, minlength=4 * len(labels)).reshape(len(labels), 4)
    return labels, counts


def rates_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group selection rate, TPR, FPR and PPV from counts ``(..., G, 4)``; NaN where undefined."""
    c = counts.astype(np.float64)
    tn, fp, fn, tp = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    return {"selection_rate": _rate(tp + fp, tn + fp + fn + tp), "tpr": _rate(tp, tp + fn),
            "fpr": _rate(fp, fp + tn), "ppv": _rate(tp, tp + fp)}


def gaps_from_rates(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Gaps over the last axis (groups) of per-group rates; NaN groups are ignored."""

    def diff(a: np.ndarray) -> np.ndarray:
        return np.nanmax(a, axis=-1) - np.nanmin(a, axis=-1)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sel = rates["selection_rate"]
        return {
            "demographic_parity_difference": diff(sel),
            "demographic_parity_ratio": _rate(np.nanmin(sel, axis=-1), np.nanmax(sel, axis=-1)),
            "equalized_odds_difference": np.fmax(diff(rates["tpr"]), diff(rates["fpr"])),
            "equal_opportunity_difference": diff(rates["tpr"]),
            "predictive_parity_difference": diff(rates["ppv"]),
        }


def gaps_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every gap from confusion counts ``(..., G, 4)``."""
    return gaps_from_rates(rates_from_counts(counts))


def bootstrap_gaps(counts: np.ndarray, n_resamples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Gap replicates, ``(n_resamples,)`` each, of the stratified bootstrap (rows resampled within
    each group, group sizes fixed), drawn as one multinomial per group."""
    draws = np.stack([multinomial_resamples(c, n_resamples, rng) for c in counts], axis=1)
    return gaps_from_counts(draws)


def permutation_gaps(counts: np.ndarray, n_resamples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Gap replicates under the null that the groups do not matter: group labels shuffled."""
    return gaps_from_counts(permuted_group_counts(counts, n_resamples, rng))


def noise_floor(null: np.ndarray, observed: float, name: str, level: float = 0.95) -> tuple[float | None, float | None]:
    """Permutation p-value of an observed gap and the null's ``level`` quantile (for a ratio, where
    smaller is worse, the ``1 - level`` quantile): a gap beyond it is not explained by chance."""
    lower = name in LOWER_IS_WORSE
    p = permutation_p_value(null, observed, greater=not lower)
    finite = null[np.isfinite(null)]
    q = float(np.quantile(finite, 1 - level if lower else level)) if finite.size else None
    return p, q


# ------------------------------------------------------------- per-group rates with fairlearn


def ppv(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Precision; NaN when nothing is predicted positive."""
    return float(precision_score(y_true, y_pred, zero_division=np.nan))


def group_frame(y: np.ndarray, p: np.ndarray, groups: pd.Series) -> MetricFrame:
    """fairlearn's MetricFrame of the per-group rates (binary y and p)."""
    return MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
                 "ppv": ppv, "accuracy": accuracy_score, "count": lambda yt, yp: len(yt)},
        y_true=y, y_pred=p, sensitive_features=groups.rename("group"))


def frame_gaps(by: pd.DataFrame) -> tuple[dict[str, float], dict[str, str]]:
    """Gaps between the groups of a MetricFrame's ``by_group`` (restricted to the groups judged) and the pair
    driving each: fairlearn's ``difference``/``ratio(method="between_groups")``, i.e. largest minus smallest and
    smallest over largest of each rate, undefined (NaN) groups left out."""
    rates = by[list(RATES)].astype(float)
    hi, lo = rates.max(), rates.min()
    diff = hi - lo

    def pair(col: str) -> str:
        s = rates[col].dropna()
        if len(s) < 2:
            return "n/a"
        top, bottom = s.idxmax(), s.idxmin()
        return f"{bottom} ({s[bottom]:.3f}) vs {top} ({s[top]:.3f}) in {col}"

    tpr_gap, fpr_gap = float(diff["tpr"]), float(diff["fpr"])
    eo_col = "tpr" if np.nan_to_num(tpr_gap, nan=-1) >= np.nan_to_num(fpr_gap, nan=-1) else "fpr"
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.divide(lo["selection_rate"], hi["selection_rate"]))
    values = {
        "demographic_parity_difference": float(diff["selection_rate"]),
        "demographic_parity_ratio": ratio,
        "equalized_odds_difference": float(np.fmax(tpr_gap, fpr_gap)),
        "equal_opportunity_difference": tpr_gap,
        "predictive_parity_difference": float(diff["ppv"]),
    }
    pairs = {
        "demographic_parity_difference": pair("selection_rate"),
        "demographic_parity_ratio": pair("selection_rate"),
        "equalized_odds_difference": pair(eo_col),
        "equal_opportunity_difference": pair("tpr"),
        "predictive_parity_difference": pair("ppv"),
    }
    return values, pairs
