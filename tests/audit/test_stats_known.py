"""audit.stats on known answers: every helper the checks' intervals and tests rest on, checked against
counts and quantiles worked out by hand or by a plain loop."""

from __future__ import annotations

import numpy as np
import pytest

from audit import stats


def test_bootstrap_index_chunks_cover_every_resample_within_the_memory_bound() -> None:
    rng = np.random.default_rng(0)
    chunks = list(stats.bootstrap_index_chunks(10, 25, rng, max_elements=100))
    assert [c.shape for c in chunks] == [(10, 10), (10, 10), (5, 10)]
    every = np.concatenate(chunks)
    assert every.min() == 0 and every.max() == 9 and every.dtype.kind == "i"
    # a row count beyond the bound still makes progress, one resample at a time
    assert [c.shape for c in stats.bootstrap_index_chunks(1000, 3, rng, max_elements=10)] == [(1, 1000)] * 3
    # the default bound takes everything at once when it fits, and an exact multiple leaves no empty chunk
    assert [c.shape for c in stats.bootstrap_index_chunks(50, 7, rng)] == [(7, 50)]
    assert [c.shape for c in stats.bootstrap_index_chunks(10, 20, rng, max_elements=100)] == [(10, 10), (10, 10)]
    # the same seed gives the same resamples
    a = np.concatenate(list(stats.bootstrap_index_chunks(10, 25, np.random.default_rng(3), max_elements=100)))
    b = np.concatenate(list(stats.bootstrap_index_chunks(10, 25, np.random.default_rng(3), max_elements=100)))
    assert np.array_equal(a, b)
    # one row: the bound is max_elements rows per chunk
    assert [c.shape for c in stats.bootstrap_index_chunks(1, 15, rng, max_elements=10)] == [(10, 1), (5, 1)]
    # the default bound is 4,000,000 indices per chunk: 97,561 rows (41 × 97,561 = 4,000,001) give 40 per chunk
    assert next(stats.bootstrap_index_chunks(97561, 50, rng)).shape == (40, 97561)
    # an empty set: the bound is computed without dividing by zero, and every resample is empty
    assert [c.shape for c in stats.bootstrap_index_chunks(0, 2, rng, max_elements=100)] == [(2, 0)]


def test_percentile_interval_known_quantiles() -> None:
    samples = np.arange(101, dtype=float)  # quantile q of 0..100 is 100 q
    assert stats.percentile_interval(samples) == pytest.approx((2.5, 97.5))
    assert stats.percentile_interval(samples, level=0.9) == pytest.approx((5.0, 95.0))
    with_nan = np.r_[samples, np.nan, np.inf]
    assert stats.percentile_interval(with_nan) == pytest.approx((2.5, 97.5))  # undefined replicates left out
    assert stats.percentile_interval(np.array([np.nan, np.nan])) == (None, None)
    low, high = stats.percentile_interval(np.array([3.0]))
    assert (low, high) == (3.0, 3.0) and type(low) is float


def test_confusion_counts_known_matrices() -> None:
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert np.array_equal(stats.confusion_counts(y, p, 3), expected)
    assert np.array_equal(stats.confusion_counts(y, p, 4)[:3, :3], expected)  # a class never seen: zeros
    idx = np.array([[0, 1, 2, 3, 4, 5], [5, 5, 5, 0, 0, 1]])
    cms = stats.confusion_counts(y, p, 3, idx)
    assert cms.shape == (2, 3, 3)
    assert np.array_equal(cms[0], expected)
    assert np.array_equal(cms[1], np.array([[2, 1, 0], [0, 0, 0], [0, 0, 3]]))
    # the last resample never hits the last cell (true 2, predicted 2): the matrices keep their shape
    cms = stats.confusion_counts(y, p, 3, np.array([[3, 5, 0, 0, 0, 0], [0, 1, 2, 4, 4, 4]]))
    assert np.array_equal(cms[1], np.array([[1, 1, 0], [0, 1, 0], [3, 0, 0]]))


def test_binned_sums_known_counts_and_sums() -> None:
    bins = np.array([0, 2, 2, 1, 0])
    conf = np.array([0.9, 0.6, 0.8, 0.5, 0.7])
    hit = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    counts, s_conf, s_hit = stats.binned_sums(bins, [conf, hit], 4)
    np.testing.assert_allclose(counts, [2, 1, 2, 0])
    np.testing.assert_allclose(s_conf, [1.6, 0.5, 1.4, 0.0])
    np.testing.assert_allclose(s_hit, [1.0, 1.0, 1.0, 0.0])
    assert counts.dtype == np.float64
    idx = np.array([[0, 0, 0, 0, 0], [1, 2, 3, 4, 0]])
    counts_b, s_conf_b, s_hit_b = stats.binned_sums(bins, [conf, hit], 4, idx)
    np.testing.assert_allclose(counts_b, [[5, 0, 0, 0], [2, 1, 2, 0]])
    np.testing.assert_allclose(s_conf_b, [[4.5, 0, 0, 0], [1.6, 0.5, 1.4, 0]])
    np.testing.assert_allclose(s_hit_b, [[5.0, 0, 0, 0], [1.0, 1.0, 1.0, 0]])
    assert counts_b.dtype == np.float64


def _histograms(pos: np.ndarray, neg: np.ndarray, n_resamples: int, rng: np.random.Generator,
                **kwargs: int) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(stats.bootstrap_score_histogram_chunks(pos, neg, n_resamples, rng, **kwargs))
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def test_bootstrap_score_histograms_known_layout_and_distribution() -> None:
    pos = np.array([0.9, 0.9, 0.4])
    neg = np.array([0.1, 0.4, 0.2, 0.2])
    h_pos, h_neg = _histograms(pos, neg, 4000, np.random.default_rng(0))
    # distinct scores ascending: 0.1, 0.2, 0.4, 0.9
    assert h_pos.shape == h_neg.shape == (4000, 4)
    assert (h_pos.sum(1) == 3).all() and (h_neg.sum(1) == 4).all()
    assert (h_pos[:, :2] == 0).all() and (h_neg[:, 3] == 0).all()
    # each resample draws rows with replacement: expected counts n × share of each score
    np.testing.assert_allclose(h_pos.mean(0), [0, 0, 1, 2], atol=0.06)
    np.testing.assert_allclose(h_neg.mean(0), [1, 2, 1, 0], atol=0.06)
    # a multinomial variance, not a fixed histogram: Var = n p (1 - p)
    np.testing.assert_allclose(h_neg.var(0), [4 * 0.25 * 0.75, 4 * 0.5 * 0.5, 4 * 0.25 * 0.75, 0], atol=0.08)
    again = _histograms(pos, neg, 4000, np.random.default_rng(0))
    assert np.array_equal(again[0], h_pos) and np.array_equal(again[1], h_neg)
    # the top score only among negatives, the lowest only among positives: both histograms keep every column
    h_pos, h_neg = _histograms(np.array([0.1, 0.2]), np.array([0.2, 0.9]), 3, np.random.default_rng(0))
    assert h_pos.shape == h_neg.shape == (3, 3) and (h_pos[:, 2] == 0).all() and (h_neg[:, 0] == 0).all()


def test_multinomial_resamples_of_nothing_and_known_moments() -> None:
    rng = np.random.default_rng(0)
    zero = stats.multinomial_resamples(np.array([0, 0, 0]), 5, rng)
    assert zero.shape == (5, 3) and not zero.any() and zero.dtype == np.int64
    draws = stats.multinomial_resamples(np.array([3, 1]), 20000, rng)
    assert draws.shape == (20000, 2) and (draws.sum(1) == 4).all()
    assert draws[:, 0].mean() == pytest.approx(3.0, abs=0.03)
    assert draws[:, 0].var() == pytest.approx(4 * 0.75 * 0.25, rel=0.05)


def test_permuted_group_counts_two_groups_is_hypergeometric() -> None:
    """Two groups of 5 and 3 rows, 4 positives in all: group 0's positives are hypergeometric(4, 4, 5)."""
    counts = np.array([[2, 3], [2, 1]])  # columns: negatives, positives
    draws = stats.permuted_group_counts(counts, 20000, np.random.default_rng(0))
    assert draws.shape == (20000, 2, 2) and draws.dtype == np.int64
    assert (draws.sum(2) == [5, 3]).all() and (draws.sum(1) == [4, 4]).all()
    pos0 = draws[:, 0, 1]
    from math import comb

    pmf = np.array([comb(4, k) * comb(4, 5 - k) / comb(8, 5) for k in range(5)])
    np.testing.assert_allclose(np.bincount(pos0, minlength=5) / 20000, pmf, atol=0.01)
    single = stats.permuted_group_counts(np.array([[4, 6]]), 3, np.random.default_rng(0))
    assert (single == [[4, 6]]).all()  # one group: nothing to shuffle
    # counts that arrive as floats (a pandas sum) are counts all the same
    as_float = stats.permuted_group_counts(counts.astype(float), 50, np.random.default_rng(5))
    assert np.array_equal(as_float, stats.permuted_group_counts(counts, 50, np.random.default_rng(5)))


def test_permutation_p_value_tolerance_and_direction() -> None:
    null = np.array([0.5, 0.5 - 1e-13, 0.2])
    assert stats.permutation_p_value(null, 0.5) == pytest.approx(3 / 4)  # 1e-12 absorbs rounding: both ties count
    assert stats.permutation_p_value(null, 0.5 + 1e-11) == pytest.approx(1 / 4)
    assert stats.permutation_p_value(null, 0.2, greater=False) == pytest.approx(2 / 4)
    assert stats.permutation_p_value(null, 0.2 - 1e-11, greater=False) == pytest.approx(1 / 4)
    # the tolerance is inclusive at its edge, both ways
    assert stats.permutation_p_value(np.array([0.5 - 1e-12]), 0.5) == pytest.approx(1.0)
    assert stats.permutation_p_value(np.array([0.5 + 1e-12]), 0.5, greater=False) == pytest.approx(1.0)
    assert stats.permutation_p_value(np.array([0.1, np.inf]), 0.05) == pytest.approx(2 / 2)  # inf is undefined
    assert stats.permutation_p_value(np.array([0.1]), np.inf) is None


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 10), (10, 10), (1, 3), (97, 256), (256, 256)])
def test_wilson_interval_equals_scipy(k: int, n: int) -> None:
    from scipy.stats import binomtest

    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = stats.wilson_interval(k, n)
    assert (low, high) == pytest.approx((ref.low, ref.high), abs=1e-6)
    assert type(low) is float and type(high) is float and 0.0 <= low <= k / n <= high + 1e-12 and high <= 1.0
    z99 = 2.5758293
    ref99 = binomtest(k, n).proportion_ci(confidence_level=0.99, method="wilson")
    assert stats.wilson_interval(k, n, z=z99) == pytest.approx((ref99.low, ref99.high), abs=1e-6)


@pytest.mark.parametrize(("k", "n"), [(0, 20), (0, 69), (0, 125), (4, 4), (10, 10)])
def test_wilson_interval_ends_exactly_at_0_and_1(k: int, n: int) -> None:
    """Known answer: no successes → the lower bound is 0 exactly, all successes → the upper is 1 exactly (the
    formula's rounding left 1.7e-18 for 0/125 and 0.9999999999999999 for 4/4, printed as such in reports)."""
    low, high = stats.wilson_interval(k, n)
    assert (low == 0.0) if k == 0 else (high == 1.0)


def test_shuffled_confusion_diagonals_have_the_hypergeometric_margins() -> None:
    """Known answer: under shuffling, the hits of class i are Hypergeom(n, predicted_i, support_i) whatever
    the other classes do; four classes, one absent from the labels, one never predicted; every table keeps
    its margins (hits never exceed support or predictions)."""
    from scipy.stats import hypergeom

    support, predicted = np.array([500, 0, 300, 200]), np.array([350, 250, 400, 0])
    diag = stats.shuffled_confusion_diagonals(support, predicted, 40_000, np.random.default_rng(0))
    n = support.sum()
    assert (diag <= np.minimum(support, predicted)).all() and (diag[:, [1, 3]] == 0).all()
    for i in (0, 2):
        dist = hypergeom(n, predicted[i], support[i])
        assert diag[:, i].mean() == pytest.approx(dist.mean(), abs=4 * dist.std() / 200)
        assert diag[:, i].var() == pytest.approx(dist.var(), rel=0.05)
    # the hits of classes 0 and 2 compete for the same predictions: negatively correlated, as row shuffles are
    rows = np.random.default_rng(1).permuted(np.broadcast_to(np.repeat(np.arange(4), predicted), (4000, n)), axis=1)
    labels = np.repeat(np.arange(4), support)
    hits = np.stack([((rows == c) & (labels == c)).sum(1) for c in (0, 2)], 1)
    assert np.corrcoef(diag[:, [0, 2]].T)[0, 1] == pytest.approx(np.corrcoef(hits.T)[0, 1], abs=0.05)


def test_bootstrap_cell_counts_are_the_row_bootstraps_multinomial() -> None:
    """Known answer: counts per cell of n rows drawn with replacement are Multinomial(n, cell share): mean
    n·p, covariance n·(diag p − p pᵀ); chunks cover every resample."""
    counts = np.array([5, 20, 75])
    chunks = list(stats.bootstrap_cell_count_chunks(counts, 30_000, np.random.default_rng(0), max_elements=9_000))
    draws = np.concatenate(chunks)
    assert [len(c) for c in chunks][:2] == [3000, 3000] and draws.shape == (30_000, 3) and (draws.sum(1) == 100).all()
    p = counts / 100
    np.testing.assert_allclose(draws.mean(0), 100 * p, atol=0.1)
    np.testing.assert_allclose(np.cov(draws.T), 100 * (np.diag(p) - np.outer(p, p)), atol=0.4)
