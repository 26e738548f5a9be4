"""Performance: accuracy, balanced accuracy, macro-F1, per-class precision and recall, confusion
matrix, expected calibration error with a reliability diagram — each with a bootstrap 95% interval —
and whether the model beats a trivial rule with statistical significance.

Point estimates come from scikit-learn on the full evaluation set. Intervals come from a
vectorised percentile bootstrap over the same predictions (``audit.stats``).

The trivial-rule tests. Two rules are "no better than nothing": always answering the most frequent
class (judged on accuracy: the one-sided exact binomial test of caret's ``confusionMatrix``,
"AccuracyPValue", accuracy against the no-information rate, ``baseline_p_value``, computed with
``scipy.stats.binomtest``), and predictions that carry no information about the label (judged on
balanced accuracy: a permutation test with the predictions shuffled against the labels,
``chance_p_value``). A model must beat at least one of them: ``informative_p_value`` =
min(1, 2 × min(the two p-values)) (Bonferroni over the two tests) is judged by default (≤ 0.01), so
a chance-level or constant model fails the default audit, while a model that trades accuracy for
recall on a rare class (fraud, diagnosis: accuracy below the majority rate, balanced accuracy well
above chance) does not fail for it. Significance alone lets a near-chance model through on a large
set (14% on 10 balanced classes is significant at 1% from about 400 samples), so ``baseline_lift``,
the larger of (accuracy − majority rate) / (1 − majority rate) and (balanced accuracy − 1/K) /
(1 − 1/K) — the share of the trivial rule's errors the model removes — is judged too: below 0.1 it
warns.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from pydantic import Field
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_score, recall_score

from audit.config import CheckConfig, ThresholdSpec
from audit.context import AuditContext
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from audit.stats import (
    binned_sums,
    bootstrap_cell_count_chunks,
    bootstrap_index_chunks,
    confusion_counts,
    percentile_interval,
    permutation_p_value,
    shuffled_confusion_diagonals,
)


class PerformanceConfig(CheckConfig):
    """Settings of the ``performance`` check."""

    n_resamples: int = Field(default=1000, ge=0, description="Bootstrap resamples for the 95% intervals (0: none).")
    ci_level: float = Field(default=0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    n_bins: int = Field(default=15, ge=2, le=100, description="Equal-width confidence bins for ECE and the reliability diagram.")
    n_permutations: int = Field(
        default=2000, ge=200, le=100_000,
        description="Permutations of the test that balanced accuracy beats chance (chance_p_value); at least 200 so "
                    "that informative_p_value can reach 0.01.")


# ----------------------------------------------------------------- metrics from confusion matrices
# Each takes counts of shape (..., K, K) and follows scikit-learn's definitions exactly, including
# which classes count: those present in y_true (balanced accuracy) or in y_true ∪ y_pred (macro-F1).


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def accuracy_from_counts(cm: np.ndarray) -> np.ndarray:
    return np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))


def recall_from_counts(cm: np.ndarray) -> np.ndarray:
    """Per-class recall; NaN for classes absent from y_true."""
    return _safe_div(np.diagonal(cm, axis1=-2, axis2=-1), cm.sum(axis=-1))


def precision_from_counts(cm: np.ndarray) -> np.ndarray:
    """Per-class precision; NaN for classes never predicted."""
    return _safe_div(np.diagonal(cm, axis1=-2, axis2=-1), cm.sum(axis=-2))


def balanced_accuracy_from_counts(cm: np.ndarray) -> np.ndarray:
    return np.nanmean(recall_from_counts(cm), axis=-1)


def macro_f1_from_counts(cm: np.ndarray) -> np.ndarray:
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    present = (support + predicted) > 0
    denom = support + predicted  # = 2tp + fp + fn
    f1 = np.where(present, _safe_div(2 * tp, denom), np.nan)
    return np.nanmean(f1, axis=-1)


def ece_from_bins(counts: np.ndarray, correct: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Expected calibration error, sum over bins of (n_b / n) * |acc_b - conf_b|."""
    n = counts.sum(axis=-1)
    return np.abs(correct - confidence).sum(axis=-1) / n


def confidence_bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins on [0, 1], right-closed: bin i holds (i/n, (i+1)/n], bin 0 also holds 0."""
    return np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE of top-1 confidence (Guo et al. 2017) with equal-width bins."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    counts, acc_sum, conf_sum = binned_sums(confidence_bins(conf, n_bins), [correct, conf], n_bins)
    return float(ece_from_bins(counts, acc_sum, conf_sum))


def majority_baseline_test(n_correct: int, support: np.ndarray) -> tuple[float, float]:
    """Majority-class baseline accuracy and the one-sided exact binomial p-value of beating it.

    Parameters
    ----------
    n_correct : int
        Correct predictions of the model.
    support : ndarray
        Samples per class in the evaluation set.

    Returns
    -------
    baseline : float
        Share of the most frequent class (the no-information rate).
    p_value : float
        ``P(X >= n_correct)`` for ``X ~ Binomial(n, baseline)``: small when the accuracy is too high to
        come from a model no better than the baseline.

    References
    ----------
    Kuhn, "Building Predictive Models in R Using the caret Package", J. Stat. Softw. 28(5), 2008
    (``confusionMatrix``: AccuracyPValue).
    """
    n = int(support.sum())
    baseline = float(support.max() / n)
    return baseline, float(binomtest(n_correct, n, baseline, alternative="greater").pvalue)


#: Above this many rows the permutation test draws shuffled confusion tables and the bootstrap draws counts per
#: cell (``audit.stats``): the same distributions at a cost that no longer grows with the rows.
ROWS_UP_TO = 20_000
#: The bootstrap's cells pool confidences within 1/CONF_GRID of each other (ECE's replicates use their mean).
CONF_GRID = 2000


def chance_balanced_accuracy_test(y_true: np.ndarray, y_pred: np.ndarray, n_permutations: int,
                                  rng: np.random.Generator, max_cells: int = 4_000_000,
                                  rows_up_to: int = ROWS_UP_TO) -> float | None:
    """One-sided permutation p-value that balanced accuracy beats predictions independent of the labels.

    The predictions are shuffled against the labels (their class totals kept), ``n_permutations``
    times, and the balanced accuracy (mean recall over the classes present in ``y_true``, as
    scikit-learn defines it) of each shuffle forms the null. Shuffles are drawn in chunks of at most
    ``max_cells`` predictions, so memory does not grow with ``n_permutations``. Above ``rows_up_to``
    rows (and K² below a tenth of them) each shuffle is drawn as its confusion table instead
    (``audit.stats.shuffled_confusion_diagonals``: the same null distribution, ``O(K²)`` a shuffle).

    Returns
    -------
    float or None
        ``(1 + #{null >= observed}) / (1 + n_permutations)``; None for an empty set.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(y_true)
    if n == 0:
        return None
    order = np.argsort(y_true, kind="stable")
    labels = y_true[order]
    _, starts, support = np.unique(labels, return_index=True, return_counts=True)

    def balanced(pred_sorted: np.ndarray) -> np.ndarray:
        hits = (pred_sorted == labels).astype(np.int64)
        return (np.add.reduceat(hits, starts, axis=-1) / support).mean(axis=-1)

    observed = float(balanced(y_pred[order]))
    if n > rows_up_to and 10 * len(support) ** 2 <= n:
        present = np.unique(y_true)
        k = int(max(y_true.max(), y_pred.max())) + 1
        diag = shuffled_confusion_diagonals(np.bincount(y_true, minlength=k), np.bincount(y_pred, minlength=k),
                                            n_permutations, rng)
        return permutation_p_value((diag[:, present] / support).mean(axis=1), observed)
    chunk = max(1, max_cells // n)
    null = []
    for start in range(0, n_permutations, chunk):
        rows = min(chunk, n_permutations - start)
        null.append(balanced(rng.permuted(np.broadcast_to(y_pred, (rows, n)), axis=1)[:, order]))
    return permutation_p_value(np.concatenate(null), observed)


def bootstrap_counts(y_true: np.ndarray, y_pred: np.ndarray, conf: np.ndarray, n_classes: int, n_bins: int,
                     n_resamples: int, rng: np.random.Generator,
                     rows_up_to: int = ROWS_UP_TO) -> tuple[str, Iterator[tuple[np.ndarray, ...]]]:
    """The bootstrap's replicates in chunks: ``(confusion matrices (b, K, K), per-bin counts, correct and
    confidence sums (b, bins))``, and how they were drawn.

    Rows are resampled with replacement. Above ``rows_up_to`` rows, when the cells below number at most a
    quarter of the rows, each resample is drawn as counts per cell (``audit.stats.bootstrap_cell_count_chunks``)
    at a cost that does not grow with the rows: the confusion matrix from its K² cells, and the
    confidence bins from cells of (bin, correct, confidence to 1/``CONF_GRID``), ECE's confidence sums
    from each cell's mean confidence (within 1/CONF_GRID of each row's). The two are drawn independently:
    each metric's interval depends on its own replicates only, whose distribution is the row bootstrap's.
    """
    n, k = len(y_true), n_classes
    bins = confidence_bins(conf, n_bins)
    correct = (y_pred == y_true).astype(np.float64)
    if n > rows_up_to:
        codes = y_true.astype(np.int64) * k + y_pred
        cm_cells, cm_counts = np.unique(codes, return_counts=True)
        q = np.minimum((conf * CONF_GRID).astype(np.int64), CONF_GRID - 1)
        keys = (bins * 2 + correct.astype(np.int64)) * CONF_GRID + q
        cells, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        if 4 * (len(cells) + len(cm_cells)) <= n:
            mean_conf = np.bincount(inverse.ravel(), weights=conf, minlength=len(cells)) / counts
            cell_bin, cell_correct = cells // (2 * CONF_GRID), (cells // CONF_GRID) % 2
            weights = np.stack([np.ones(len(cells)), cell_correct.astype(np.float64), mean_conf], axis=1)

            def from_cells() -> Iterator[tuple[np.ndarray, ...]]:
                b = max(1, min(n_resamples, 4_000_000 // max(k * k, len(cells))))  # resamples a chunk, both draws
                cm_chunks = bootstrap_cell_count_chunks(cm_counts, n_resamples, rng, max_elements=b * len(cm_cells))
                bin_chunks = bootstrap_cell_count_chunks(counts, n_resamples, rng, max_elements=b * len(cells))
                for cm_c, c in zip(cm_chunks, bin_chunks, strict=True):
                    cm = np.zeros((len(cm_c), k * k), dtype=np.int64)
                    cm[:, cm_cells] = cm_c
                    sums = [np.stack([np.bincount(cell_bin, weights=row * w, minlength=n_bins) for row in c])
                            for w in weights.T]
                    yield (cm.reshape(-1, k, k), *sums)

            return (f"above {rows_up_to:,} rows each resample is drawn as counts per cell, the same resampling "
                    f"distribution at a cost that does not grow with the rows: the confusion matrix over its "
                    f"{len(cm_cells)} cells and, independently, ECE's bins over {len(cells)} cells of (bin, correct, "
                    f"confidence to 1/{CONF_GRID}), each cell's mean confidence standing for its rows'"), from_cells()

    def from_rows() -> Iterator[tuple[np.ndarray, ...]]:
        for idx in bootstrap_index_chunks(n, n_resamples, rng):
            yield (confusion_counts(y_true, y_pred, k, idx), *binned_sums(bins, [correct, conf], n_bins, idx))

    return "row indices drawn with replacement", from_rows()


def baseline_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], point: dict[str, float],
                     n_permutations: int, rng: np.random.Generator) -> list[Metric]:
    """The trivial-rule metrics (module docstring): majority rate, the two tests, their combination and the lift."""
    n = len(y_true)
    support = np.bincount(y_true, minlength=len(names))
    baseline, p_acc = majority_baseline_test(int((y_true == y_pred).sum()), support)
    p_chance = chance_balanced_accuracy_test(y_true, y_pred, n_permutations, rng, rows_up_to=ROWS_UP_TO)
    tables = len(y_true) > ROWS_UP_TO and 10 * len(np.unique(y_true)) ** 2 <= len(y_true)
    p_informative = min(1.0, 2 * min(p_acc, p_chance)) if p_chance is not None else None
    chance = 1 / int((support > 0).sum())
    lifts = [(point["accuracy"] - baseline) / (1 - baseline) if baseline < 1 else None,
             (point["balanced_accuracy"] - chance) / (1 - chance) if chance < 1 else None]
    lift = max((v for v in lifts if v is not None), default=None)
    majority = names[int(np.argmax(support))]
    return [
        Metric(name="baseline_accuracy", value=baseline, n=n, higher_is_better=None,
               method=f"accuracy of always predicting the most frequent class of the evaluation set ({majority}): "
                      "its share of the samples (the no-information rate)"),
        Metric(name="baseline_p_value", value=p_acc, n=n, higher_is_better=False,
               method=f"one-sided exact binomial test that accuracy exceeds the majority-class baseline "
                      f"(scipy.stats.binomtest({int((y_true == y_pred).sum())}, {n}, p={baseline:.4g}, "
                      "alternative='greater'); caret's AccuracyPValue); the baseline is treated as known"),
        Metric(name="chance_p_value", value=p_chance, n=n, higher_is_better=False,
               method=f"one-sided permutation test that balanced accuracy exceeds that of predictions independent of "
                      f"the labels: the predictions shuffled against the labels {n_permutations} times (seeded"
                      + (", each shuffle drawn as its confusion table with the same margins: the same null at a cost "
                         "that does not grow with the rows" if tables else "")
                      + "), p = (1 + #shuffles at least as good) / (1 + shuffles)"),
        Metric(name="informative_p_value", value=p_informative, n=n, higher_is_better=False,
               method="min(1, 2 × min(baseline_p_value, chance_p_value)): the model beats the majority class on "
                      "accuracy or chance on balanced accuracy (Bonferroni over the two tests)"),
        Metric(name="baseline_lift", value=lift, n=n, higher_is_better=True,
               method="the larger of (accuracy - majority rate) / (1 - majority rate) and (balanced accuracy - 1/K) / "
                      "(1 - 1/K) over the K classes present: the share of the trivial rule's errors the model removes "
                      "(1: none left; 0: no better than the trivial rule; undefined when the evaluation set holds "
                      "one class)"),
    ]


@register_check("performance")
class Performance(Check):
    """Accuracy, balanced accuracy, macro-F1, per-class precision/recall, confusion matrix and
    calibration on the evaluation set.

    References
    ----------
    Guo, Pleiss, Sun, Weinberger. "On Calibration of Modern Neural Networks", ICML 2017.
    Efron, Tibshirani. "An Introduction to the Bootstrap", 1993 (percentile intervals).
    """

    category = "performance"
    title = "Predictive performance and calibration"
    needs = ("labels",)
    Config = PerformanceConfig
    metric_names = ("accuracy", "balanced_accuracy", "macro_f1", "ece", "min_class_recall", "precision", "recall",
                    "baseline_accuracy", "baseline_p_value", "chance_p_value", "informative_p_value",
                    "baseline_lift")
    #: A model must beat a trivial rule (the majority class on accuracy, or chance on balanced accuracy) with
    #: significance (1%), and by more than a sliver: removing under a tenth of the rule's errors warns.
    default_thresholds = {"informative_p_value": ThresholdSpec(max=0.01, level="fail"),
                          "baseline_lift": ThresholdSpec(min=0.1, level="warn")}

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: PerformanceConfig = self.config  # type: ignore[assignment]
        y_true = ctx.y_true()
        probs = ctx.probs()
        y_pred = ctx.y_pred()
        names = ctx.class_names
        k, n = len(names), len(y_true)
        labels = list(range(k))
        conf = probs.max(axis=1)
        correct = (y_pred == y_true).astype(np.float64)
        bins = confidence_bins(conf, cfg.n_bins)

        # Point estimates: scikit-learn, the reference.
        recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
        precision = precision_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
        point = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
            "ece": expected_calibration_error(probs, y_true, cfg.n_bins),
            "min_class_recall": float(np.nanmin(recall)),
        }

        # Bootstrap replicates, vectorised over resamples.
        reps: dict[str, list[np.ndarray]] = {m: [] for m in (*point, "precision", "recall")}
        rng = ctx.rng(self.id)
        drawn, chunks = bootstrap_counts(y_true, y_pred, conf, k, cfg.n_bins, cfg.n_resamples, rng,
                                         rows_up_to=ROWS_UP_TO)
        for cm, counts, acc_sum, conf_sum in chunks:
            rec = recall_from_counts(cm)
            reps["accuracy"].append(accuracy_from_counts(cm))
            reps["balanced_accuracy"].append(balanced_accuracy_from_counts(cm))
            reps["macro_f1"].append(macro_f1_from_counts(cm))
            reps["ece"].append(ece_from_bins(counts, acc_sum, conf_sum))
            with np.errstate(all="ignore"):
                reps["min_class_recall"].append(np.nanmin(np.where(np.isnan(rec), np.inf, rec), axis=1))
            reps["recall"].append(rec)
            reps["precision"].append(precision_from_counts(cm))

        def interval(samples: list[np.ndarray], column: int | None = None) -> tuple[float | None, float | None]:
            if not samples:
                return None, None
            arr = np.concatenate(samples)
            if column is not None:
                arr = arr[:, column]
            return percentile_interval(np.where(np.isinf(arr), np.nan, arr), cfg.ci_level)

        ci_text = (f"{cfg.ci_level:.0%} percentile bootstrap interval ({cfg.n_resamples} resamples of the {n} "
                   "evaluation samples)" if cfg.n_resamples else "no interval (n_resamples = 0)")
        methods = {
            "accuracy": "sklearn.metrics.accuracy_score",
            "balanced_accuracy": "sklearn.metrics.balanced_accuracy_score (mean recall over classes present)",
            "macro_f1": "sklearn.metrics.f1_score(average='macro')",
            "ece": (f"expected calibration error of top-1 confidence, {cfg.n_bins} equal-width bins (binned ECE is "
                    "biased upward, more so on resamples: its percentile interval can lie above the point estimate)"),
            "min_class_recall": "lowest per-class recall (sklearn.metrics.recall_score)",
        }
        level = cfg.ci_level if cfg.n_resamples else None
        per_class_ci = (f"{cfg.ci_level:.0%} percentile bootstrap, {cfg.n_resamples} resamples"
                        if cfg.n_resamples else "no interval")
        metrics = []
        for name, value in point.items():
            lo, hi = interval(reps[name])
            metrics.append(Metric(name=name, value=value, ci_low=lo, ci_high=hi, ci_level=level, n=n,
                                  method=f"{methods[name]}; {ci_text}", higher_is_better=name != "ece"))
        support = np.bincount(y_true, minlength=k)
        predicted = np.bincount(y_pred, minlength=k)
        metrics += baseline_metrics(y_true, y_pred, names, point, cfg.n_permutations, rng)
        baseline, p_value = metrics[-5].value, metrics[-2].value
        p_text = "undefined" if p_value is None else f"{p_value:.2g}"
        for c, cname in enumerate(names):
            for mname, values, count, ref in (("precision", precision, predicted, "precision_score"),
                                              ("recall", recall, support, "recall_score")):
                v = float(values[c])
                lo, hi = interval(reps[mname], c)
                metrics.append(Metric(name=mname, group=cname, value=None if np.isnan(v) else v, ci_low=lo,
                                      ci_high=hi, ci_level=level, n=int(count[c]),
                                      method=f"sklearn.metrics.{ref} for class {cname} (one-vs-rest); {per_class_ci}",
                                      higher_is_better=True))

        cm_full = confusion_counts(y_true, y_pred, k)
        counts, acc_sum, conf_sum = binned_sums(bins, [correct, conf], cfg.n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            bin_acc = np.where(counts > 0, acc_sum / np.maximum(counts, 1), np.nan)
            bin_conf = np.where(counts > 0, conf_sum / np.maximum(counts, 1), np.nan)
        evidence = [
            Figure(kind="confusion_matrix", title="Confusion matrix",
                   data={"labels": names, "matrix": cm_full.tolist()},
                   caption=f"Counts on {n} evaluation samples; rows are the true class, columns the predicted class."),
            Figure(kind="reliability_diagram", title="Reliability diagram",
                   data={"bin_edges": np.linspace(0, 1, cfg.n_bins + 1).round(6).tolist(),
                         "accuracy": [None if np.isnan(a) else float(a) for a in bin_acc],
                         "confidence": [None if np.isnan(c) else float(c) for c in bin_conf],
                         "count": counts.astype(int).tolist()},
                   caption="Accuracy against mean top-1 confidence per bin; a calibrated model lies on the diagonal."),
            Table(title="Per-class precision and recall",
                  columns=["class", "support", "predicted", "precision", "recall"],
                  rows=[[cname, int(support[c]), int(predicted[c]),
                         None if np.isnan(precision[c]) else round(float(precision[c]), 6),
                         None if np.isnan(recall[c]) else round(float(recall[c]), 6)] for c, cname in enumerate(names)]),
        ]
        limitations = [
            "Measured on the evaluation set as given; it says nothing of data unlike it (see the OOD and shift checks).",
            "ECE depends on the binning; equal-width bins with few samples per bin are noisy.",
        ]
        small = [names[c] for c in range(k) if 0 < support[c] < 30]
        if small:
            limitations.append(f"Classes with fewer than 30 samples have wide intervals: {', '.join(small[:10])}.")
        absent = [names[c] for c in range(k) if support[c] == 0]
        if absent:
            limitations.append(f"Classes absent from the evaluation set (recall undefined): {', '.join(absent[:10])}.")
        acc = point["accuracy"]
        lo, hi = metrics[0].ci_low, metrics[0].ci_high
        ci = f" (95% CI {lo:.3f}–{hi:.3f})" if lo is not None else ""
        summary = (f"Accuracy {acc:.3f}{ci} on {n} samples against a majority-class baseline of {baseline:.3f} "
                   f"(trivial-rule test p = {p_text}); balanced accuracy {point['balanced_accuracy']:.3f}, "
                   f"macro-F1 {point['macro_f1']:.3f}, ECE {point['ece']:.3f}.")
        return CheckOutput(
            summary=summary, metrics=metrics, evidence=evidence, dataset="eval", n_samples=n, limitations=limitations,
            method=("Predictions are the argmax of the model's logits, computed once in batches. Point estimates use "
                    f"scikit-learn on all {n} samples; intervals resample the samples with replacement "
                    f"{cfg.n_resamples} times (seeded; {drawn}) and take percentiles. ECE bins the top-1 confidence into "
                    f"{cfg.n_bins} equal-width bins."),
        )
