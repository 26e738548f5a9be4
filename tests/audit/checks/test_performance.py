"""The performance check against scikit-learn on the same predictions, and known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from audit.checks.performance import (
    Performance,
    PerformanceConfig,
    accuracy_from_counts,
    balanced_accuracy_from_counts,
    confidence_bins,
    expected_calibration_error,
    macro_f1_from_counts,
)
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.stats import confusion_counts
from models.adapter import ModelAdapter


class FixedLogits(ModelAdapter):
    """Returns a fixed logits row per sample; inputs are sample indices."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = torch.tensor(table, dtype=torch.float32)
        self.class_names = [f"c{i}" for i in range(table.shape[1])]
        self.device = torch.device("cpu")
        self.input_kind = "tabular"

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.table[inputs[:, 0].long()]


def make_ctx(logits: np.ndarray, y: np.ndarray, seed: int = 0) -> AuditContext:
    n = len(y)
    ds = AuditDataset(name="eval", inputs=np.arange(n, dtype=np.float32)[:, None], target=y.astype(np.int64),
                      class_names=None, sensitive_features=None, feature_names=None, input_kind="tabular",
                      path="mem", format="npz", sha256="0")
    return AuditContext(FixedLogits(logits), {"eval": ds}, seed=seed, batch_size=7)


@pytest.fixture
def noisy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n, k = 400, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += rng.normal(1.0, 1.0, n)  # better than chance, imperfect
    return logits, y


def test_point_estimates_equal_sklearn(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    logits, y = noisy
    out = Performance(PerformanceConfig(n_resamples=200)).run(make_ctx(logits, y))
    pred = logits.argmax(1)
    m = {(x.name, x.group): x.value for x in out.metrics}
    assert m[("accuracy", None)] == pytest.approx(accuracy_score(y, pred))
    assert m[("balanced_accuracy", None)] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m[("macro_f1", None)] == pytest.approx(f1_score(y, pred, average="macro"))
    rec = recall_score(y, pred, average=None)
    prec = precision_score(y, pred, average=None)
    for c in range(4):
        assert m[("recall", f"c{c}")] == pytest.approx(rec[c])
        assert m[("precision", f"c{c}")] == pytest.approx(prec[c])
    assert m[("min_class_recall", None)] == pytest.approx(rec.min())
    cm = next(e for e in out.evidence if getattr(e, "kind", None) == "confusion_matrix")
    assert cm.data["matrix"] == confusion_matrix(y, pred, labels=range(4)).tolist()


def test_vectorised_count_metrics_equal_sklearn_on_every_resample(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    logits, y = noisy
    pred = logits.argmax(1)
    idx = np.random.default_rng(0).integers(0, len(y), size=(25, len(y)))
    cms = confusion_counts(y, pred, 4, idx)
    acc, bal, f1 = accuracy_from_counts(cms), balanced_accuracy_from_counts(cms), macro_f1_from_counts(cms)
    for b in range(25):
        yt, yp = y[idx[b]], pred[idx[b]]
        assert acc[b] == pytest.approx(accuracy_score(yt, yp))
        assert bal[b] == pytest.approx(balanced_accuracy_score(yt, yp))
        assert f1[b] == pytest.approx(f1_score(yt, yp, average="macro"))


def test_macro_f1_and_balanced_accuracy_with_absent_classes() -> None:
    # Class 2 never appears in y_true, class 3 in neither: sklearn's label sets must be matched.
    y = np.array([0, 0, 1, 1, 1, 0])
    pred = np.array([0, 2, 1, 1, 0, 0])
    cm = confusion_counts(y, pred, 4)
    assert macro_f1_from_counts(cm) == pytest.approx(f1_score(y, pred, average="macro"))
    with pytest.warns(UserWarning):
        expected = balanced_accuracy_score(y, pred)
    assert balanced_accuracy_from_counts(cm) == pytest.approx(expected)


def test_bootstrap_interval_contains_estimate_and_is_seeded(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    logits, y = noisy
    a = Performance(PerformanceConfig(n_resamples=300)).run(make_ctx(logits, y, seed=1))
    b = Performance(PerformanceConfig(n_resamples=300)).run(make_ctx(logits, y, seed=1))
    c = Performance(PerformanceConfig(n_resamples=300)).run(make_ctx(logits, y, seed=2))
    acc_a, acc_b, acc_c = (o.metrics[0] for o in (a, b, c))
    assert acc_a.ci_low < acc_a.value < acc_a.ci_high
    assert (acc_a.ci_low, acc_a.ci_high) == (acc_b.ci_low, acc_b.ci_high)
    assert (acc_a.ci_low, acc_a.ci_high) != (acc_c.ci_low, acc_c.ci_high)
    # Binomial sanity: the 95% interval width is close to 2 * 1.96 * sqrt(p(1-p)/n).
    p, n = acc_a.value, len(y)
    assert acc_a.ci_high - acc_a.ci_low == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / n), rel=0.2)


def test_ece_known_answers() -> None:
    # Perfectly calibrated: confidence 0.75 in one bin and exactly 75% correct.
    probs = np.tile([0.75, 0.25], (8, 1))
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(0.0)
    # Always confident (0.9) and always wrong: ECE = 0.9.
    assert expected_calibration_error(np.tile([0.9, 0.1], (5, 1)), np.ones(5, int), n_bins=10) == pytest.approx(0.9)
    # Two bins: half at conf 0.6 all right (gap 0.4), half at conf 0.9 half right (gap 0.4) -> 0.4.
    probs = np.array([[0.6, 0.4]] * 2 + [[0.9, 0.1]] * 2)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1]), n_bins=10) == pytest.approx(0.4)


def test_ece_equals_loop_definition(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    logits, y = noisy
    probs = torch.softmax(torch.tensor(logits), 1).numpy()
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs((pred[mask] == y[mask]).mean() - conf[mask].mean())
    assert expected_calibration_error(probs, y, 15) == pytest.approx(ece)
    assert confidence_bins(np.array([0.0, 1 / 15, 0.5, 1.0]), 15).tolist() == [0, 0, 7, 14]


def test_perfect_classifier() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    logits = np.eye(3)[y] * 50
    out = Performance(PerformanceConfig(n_resamples=50)).run(make_ctx(logits, y))
    values = {m.name: m.value for m in out.metrics if m.group is None}
    assert values["accuracy"] == values["balanced_accuracy"] == values["macro_f1"] == 1.0
    assert values["ece"] == pytest.approx(0.0, abs=1e-9)
    assert out.metrics[0].ci_low == out.metrics[0].ci_high == 1.0


def test_logits_computed_once(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    logits, y = noisy
    ctx = make_ctx(logits, y)
    calls = []
    original = ctx.adapter.logits
    ctx.adapter.logits = lambda x: calls.append(1) or original(x)  # type: ignore[method-assign]
    Performance(PerformanceConfig(n_resamples=10)).run(ctx)
    Performance(PerformanceConfig(n_resamples=10)).run(ctx)
    assert len(calls) == int(np.ceil(len(y) / 7))  # one pass in batches of 7, shared by both runs


def test_baseline_metrics_equal_scipy_on_the_same_predictions(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    from scipy.stats import binomtest

    from audit.runner import judge

    logits, y = noisy
    out = Performance(PerformanceConfig(n_resamples=0)).run(make_ctx(logits, y))
    metrics = {m.name: m.value for m in out.metrics if m.group is None}
    majority = np.bincount(y).max() / len(y)
    correct = int((logits.argmax(1) == y).sum())
    assert metrics["baseline_accuracy"] == majority
    assert metrics["baseline_p_value"] == binomtest(correct, len(y), majority, alternative="greater").pvalue
    bal = balanced_accuracy_score(y, logits.argmax(1))
    chance = 1 / len(np.unique(y))
    assert metrics["baseline_lift"] == pytest.approx(
        max((correct / len(y) - majority) / (1 - majority), (bal - chance) / (1 - chance)), abs=1e-12)
    assert metrics["informative_p_value"] == min(1.0, 2 * min(metrics["baseline_p_value"], metrics["chance_p_value"]))
    assert judge(out, {}, Performance.default_thresholds)[0] == "pass"
    # the same labels with predictions at chance: the default condition fails the check
    chance = np.random.default_rng(1).normal(size=logits.shape)
    out = Performance(PerformanceConfig(n_resamples=0)).run(make_ctx(chance, y))
    status, outcomes = judge(out, {}, Performance.default_thresholds)
    assert status == "fail" and outcomes[0].metric == "informative_p_value" and outcomes[0].source == "default"


def test_chance_test_equals_a_brute_force_permutation_test() -> None:
    """The chance p-value is the permutation test of balanced accuracy, row by row (known answer: the same
    seeded shuffles through scikit-learn's balanced_accuracy_score give the same p-value)."""
    from audit.checks.performance import chance_balanced_accuracy_test

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 120)
    pred = np.where(rng.random(120) < 0.3, y, rng.integers(0, 3, 120))
    observed = balanced_accuracy_score(y, pred)
    shuffles = np.random.default_rng(9).permuted(np.broadcast_to(pred, (300, 120)), axis=1)
    null = np.array([balanced_accuracy_score(y, s) for s in shuffles])
    expected = (1 + int((null >= observed - 1e-12).sum())) / 301
    for max_cells in (4_000_000, 250):  # one chunk, and chunks of two shuffles: the same draws either way
        p = chance_balanced_accuracy_test(y, pred, 300, np.random.default_rng(9), max_cells=max_cells)
        assert p == pytest.approx(expected, abs=1e-12)


def test_a_rare_class_model_beats_chance_though_not_the_majority_rate() -> None:
    """A fraud/diagnosis-style model: 5% positives, 80% of them found, 10% false alarms. Its accuracy (~0.895)
    is below the majority rate (0.95), so the accuracy test alone would fail it by default; balanced accuracy
    (~0.85) is far above chance, so it beats a trivial rule and the default condition passes. A constant
    model (always the majority class) and a model guessing at the class rates both fail."""
    from audit.runner import judge

    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.05).astype(np.int64)
    pred = np.where(y == 1, rng.random(2000) < 0.8, rng.random(2000) < 0.1).astype(np.int64)
    cases = {"rare-class model": (pred, "pass"), "constant": (np.zeros_like(y), "fail"),
             "guessing": ((rng.random(2000) < 0.05).astype(np.int64), "fail")}
    seen = {}
    for name, (p, expected) in cases.items():
        logits = np.eye(2)[p] * 4.0
        out = Performance(PerformanceConfig(n_resamples=0)).run(make_ctx(logits, y))
        seen[name] = {m.name: m.value for m in out.metrics if m.group is None}
        failed = [t.metric for t in judge(out, {}, Performance.default_thresholds)[1] if not t.passed and t.level == "fail"]
        assert failed == ([] if expected == "pass" else ["informative_p_value"]), (name, seen[name])
    rare = seen["rare-class model"]
    assert rare["baseline_p_value"] > 0.5 and rare["chance_p_value"] < 0.001  # the accuracy test alone would fail it
    assert seen["constant"]["chance_p_value"] == 1.0  # a constant prediction is no better than any shuffle of it


# ----------------------------------------------------------------- resampling at any size (issue 14 item 4)

class _NoRowDraws:
    """A generator that refuses the per-row draws (row indices, shuffles of every row); the rest it passes on."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def __getattr__(self, name: str):  # noqa: ANN204
        if name in ("integers", "permuted", "permutation", "choice"):
            raise AssertionError(f"rng.{name}: a draw per row, whose cost grows with the rows")
        return getattr(self._rng, name)


def _large(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += rng.normal(0.6, 1.0, n)
    return logits, y


def test_above_rows_up_to_the_resampling_makes_no_draw_per_row() -> None:
    """The bootstrap and the permutation test of 30,000 rows draw counts per cell and confusion tables, not
    row indices: their cost stops growing with the rows."""
    from audit.checks.performance import bootstrap_counts, chance_balanced_accuracy_test

    logits, y = _large(30_000, 3)
    pred, conf = logits.argmax(1), torch.softmax(torch.from_numpy(logits), 1).numpy().max(1)
    rng = _NoRowDraws(np.random.default_rng(0))
    how, chunks = bootstrap_counts(y, pred, conf, 3, 15, 200, rng)
    assert sum(len(cm) for cm, *_ in chunks) == 200 and "counts per cell" in how
    assert chance_balanced_accuracy_test(y, pred, 500, rng) == pytest.approx(1 / 501)


def test_the_cell_bootstrap_gives_the_row_bootstraps_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same resampling distribution drawn two ways: every interval of the check agrees within the Monte
    Carlo error of 1,000 resamples (about 3e-4 here; the intervals are ~0.01 wide)."""
    from audit.checks import performance as P

    logits, y = _large(30_000, 3)
    runs = {}
    for rows_up_to in (10**9, 20_000):
        monkeypatch.setattr(P, "ROWS_UP_TO", rows_up_to)
        out = Performance(PerformanceConfig(n_resamples=1000, n_permutations=200)).run(make_ctx(logits, y))
        runs[rows_up_to] = {(m.name, m.group): m for m in out.metrics if m.ci_low is not None}
        assert ("counts per cell" in out.method) == (rows_up_to == 20_000)
    rows, cells = runs[10**9], runs[20_000]
    assert set(rows) == set(cells) and len(rows) >= 11
    for key, m in rows.items():
        assert cells[key].value == m.value
        assert cells[key].ci_low == pytest.approx(m.ci_low, abs=1.5e-3), key
        assert cells[key].ci_high == pytest.approx(m.ci_high, abs=1.5e-3), key


def test_the_confusion_table_permutation_test_gives_the_exact_hypergeometric_p_value() -> None:
    """Two classes: under shuffling, the hits of class 0 are hypergeometric and balanced accuracy grows with
    them, so the exact p-value is a hypergeometric tail (known answer); 20,000 shuffles drawn as tables land
    within 4 standard errors of it, and so do 400 shuffles of the rows."""
    from scipy.stats import hypergeom

    from audit.checks.performance import chance_balanced_accuracy_test

    rng = np.random.default_rng(3)
    n = 30_000
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.002, y, rng.integers(0, 2, n))  # barely better than chance (p ~ 0.08)
    s0, c0 = int((y == 0).sum()), int((pred == 0).sum())
    hits0 = int(((y == 0) & (pred == 0)).sum())
    exact = float(hypergeom(n, c0, s0).sf(hits0 - 1))  # P(x00 >= observed)
    assert 0.01 < exact < 0.5
    se = np.sqrt(exact * (1 - exact) / 20_000)
    tables = chance_balanced_accuracy_test(y, pred, 20_000, np.random.default_rng(2))
    assert tables == pytest.approx(exact, abs=4 * se + 1e-4)
    rows = chance_balanced_accuracy_test(y, pred, 400, np.random.default_rng(2), rows_up_to=10**9)
    assert rows == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 400) + 1e-3)
