"""Count-based resampling in audit.stats: the same distributions as resampling or shuffling rows,
in memory that does not grow with the rows."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from audit.fairness.gaps import bootstrap_gaps, gaps_from_counts, group_counts, noise_floor, permutation_gaps
from audit.stats import multinomial_resamples, permutation_p_value, permuted_group_counts


def test_permuted_counts_keep_the_margins_and_match_shuffled_rows() -> None:
    rng = np.random.default_rng(0)
    counts = np.array([[30, 5, 10, 15], [20, 25, 3, 2], [7, 0, 9, 4]])
    draws = permuted_group_counts(counts, 4000, rng)
    assert draws.shape == (4000, 3, 4) and (draws >= 0).all()
    assert (draws.sum(2) == counts.sum(1)).all()  # group sizes fixed
    assert (draws.sum(1) == counts.sum(0)).all()  # category totals fixed
    # The same distribution as shuffling the rows' group labels: compare means and variances.
    groups = np.repeat(np.arange(3), counts.sum(1))
    cats = np.concatenate([np.repeat(np.arange(4), c) for c in counts.sum(0, keepdims=True)])
    shuffled = np.stack([np.bincount(rng.permutation(groups) * 4 + cats, minlength=12).reshape(3, 4)
                         for _ in range(4000)])
    assert draws.mean(0) == pytest.approx(shuffled.mean(0), abs=0.25)
    assert draws.var(0) == pytest.approx(shuffled.var(0), rel=0.15, abs=0.3)
    # Exact hypergeometric mean: group share × category total.
    expected = counts.sum(1)[:, None] * counts.sum(0)[None] / counts.sum()
    assert draws.mean(0) == pytest.approx(expected, abs=0.25)


def test_multinomial_resamples_match_resampled_rows() -> None:
    rng = np.random.default_rng(1)
    counts = np.array([50, 10, 25, 15])
    draws = multinomial_resamples(counts, 5000, rng)
    rows = np.repeat(np.arange(4), counts)
    idx = rows[rng.integers(0, len(rows), (5000, len(rows)))]
    by_rows = np.stack([(idx == k).sum(1) for k in range(4)], 1)
    assert (draws.sum(1) == counts.sum()).all()
    assert draws.mean(0) == pytest.approx(by_rows.mean(0), abs=0.3)
    assert draws.var(0) == pytest.approx(by_rows.var(0), rel=0.1)


def test_permutation_p_value_known_answers() -> None:
    null = np.array([0.1, 0.2, 0.3, np.nan, 0.4])
    assert permutation_p_value(null, 0.35) == pytest.approx(2 / 5)  # (1 + one at least as large) / (1 + 4)
    assert permutation_p_value(null, 0.3) == pytest.approx(3 / 5)  # ties count
    assert permutation_p_value(null, 0.15, greater=False) == pytest.approx(2 / 5)
    assert permutation_p_value(null, np.nan) is None
    assert permutation_p_value(np.array([np.nan]), 0.1) is None


def test_gaps_from_counts_equal_the_row_formulas() -> None:
    rng = np.random.default_rng(2)
    y, p, g = rng.integers(0, 2, 300), rng.integers(0, 2, 300), rng.choice(["a", "b", "c"], 300)
    labels, counts = group_counts(y, p, g)
    gaps = gaps_from_counts(counts)
    sel = [p[g == x].mean() for x in labels]
    tpr = [p[(g == x) & (y == 1)].mean() for x in labels]
    fpr = [p[(g == x) & (y == 0)].mean() for x in labels]
    assert gaps["demographic_parity_difference"] == pytest.approx(max(sel) - min(sel))
    assert gaps["demographic_parity_ratio"] == pytest.approx(min(sel) / max(sel))
    assert gaps["equalized_odds_difference"] == pytest.approx(max(max(tpr) - min(tpr), max(fpr) - min(fpr)))


def test_noise_floor_separates_random_groups_from_a_real_gap() -> None:
    rng = np.random.default_rng(3)
    n = 400
    y = rng.integers(0, 2, n)
    p = rng.integers(0, 2, n)
    random_groups = rng.choice(["a", "b"], n)
    _, counts = group_counts(y, p, random_groups)
    obs = float(gaps_from_counts(counts)["demographic_parity_difference"])
    pv, q95 = noise_floor(permutation_gaps(counts, 2000, rng)["demographic_parity_difference"], obs,
                          "demographic_parity_difference")
    assert pv > 0.05 and obs < q95
    # A true selection-rate gap of 0.3 between the groups.
    g = np.repeat(["a", "b"], n // 2)
    p2 = (rng.random(n) < np.where(g == "a", 0.65, 0.35)).astype(int)
    _, counts2 = group_counts(y, p2, g)
    obs2 = float(gaps_from_counts(counts2)["demographic_parity_difference"])
    pv2, q2 = noise_floor(permutation_gaps(counts2, 2000, rng)["demographic_parity_difference"], obs2,
                          "demographic_parity_difference")
    assert pv2 < 0.001 and obs2 > q2
    # The ratio: smaller is worse, so its floor is the null's 5th percentile.
    ratio = float(gaps_from_counts(counts2)["demographic_parity_ratio"])
    pr, q5 = noise_floor(permutation_gaps(counts2, 2000, rng)["demographic_parity_ratio"], ratio, "demographic_parity_ratio")
    assert pr < 0.001 and ratio < q5


def test_bootstrap_gaps_match_a_row_bootstrap() -> None:
    rng = np.random.default_rng(4)
    n = 500
    y, g = rng.integers(0, 2, n), rng.choice(["a", "b"], n)
    p = (rng.random(n) < np.where(g == "a", 0.6, 0.45)).astype(int)
    _, counts = group_counts(y, p, g)
    reps = bootstrap_gaps(counts, 3000, rng)["demographic_parity_difference"]
    by_rows = []
    for _ in range(3000):
        sel = [p[np.flatnonzero(g == x)[rng.integers(0, (g == x).sum(), (g == x).sum())]].mean() for x in ("a", "b")]
        by_rows.append(max(sel) - min(sel))
    assert np.quantile(reps, [0.025, 0.5, 0.975]) == pytest.approx(np.quantile(by_rows, [0.025, 0.5, 0.975]), abs=0.012)


def test_resampling_memory_does_not_grow_with_rows() -> None:
    """Issue 17: the old bootstrap built a (1000 × group size) index array per group: 2.3 GB peak at
    200k rows. On counts, a 200k-row bootstrap and permutation test stay within a few MB."""
    rng = np.random.default_rng(5)
    n = 200_000
    y, p, g = rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 2, n)
    _, counts = group_counts(y, p, g)
    tracemalloc.start()
    try:
        bootstrap_gaps(counts, 1000, rng)
        permutation_gaps(counts, 1000, rng)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_permutation_p_values_are_calibrated_under_the_null() -> None:
    """On groups assigned at random the p-value of the DP gap is (near) uniform: p < 0.05 about 5% of the time, so
    a random attribute fails a significance-gated threshold at the rate the level states, not always."""
    rng = np.random.default_rng(6)
    ps = []
    for _ in range(400):
        n = 300
        y, p, g = rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 3, n)
        _, counts = group_counts(y, p, g)
        obs = float(gaps_from_counts(counts)["demographic_parity_difference"])
        ps.append(noise_floor(permutation_gaps(counts, 400, rng)["demographic_parity_difference"], obs,
                              "demographic_parity_difference")[0])
    ps = np.array(ps)
    assert 0.02 <= (ps < 0.05).mean() <= 0.09
    assert 0.4 <= np.median(ps) <= 0.6


def _histograms_at_once(pos: np.ndarray, neg: np.ndarray, n_resamples: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The stratified score-histogram bootstrap as it was before chunking: every resample at once, O(resamples × n)."""
    values, inverse = np.unique(np.r_[pos, neg], return_inverse=True)
    u, n_pos, n_neg = len(values), len(pos), len(neg)
    offsets = (np.arange(n_resamples) * u)[:, None]
    h_pos = np.bincount((inverse[:n_pos][rng.integers(0, n_pos, (n_resamples, n_pos))] + offsets).ravel(),
                        minlength=n_resamples * u).reshape(n_resamples, u)
    h_neg = np.bincount((inverse[n_pos:][rng.integers(0, n_neg, (n_resamples, n_neg))] + offsets).ravel(),
                        minlength=n_resamples * u).reshape(n_resamples, u)
    return h_pos, h_neg


@pytest.mark.parametrize("max_elements", [1, 700, 5_000, 4_000_000])
def test_chunked_score_histograms_equal_the_unchunked_bootstrap(max_elements: int) -> None:
    """Same seed, same resamples, same generator state afterwards, whatever the chunk size."""
    from audit.ood_scores import bootstrap_auroc
    from audit.stats import bootstrap_score_histogram_chunks

    data = np.random.default_rng(0)
    pos, neg = data.normal(1, 1, 300).round(1), data.normal(0, 1, 70).round(1)  # ties on purpose
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    h_pos, h_neg = _histograms_at_once(pos, neg, 23, rng_a)
    chunks = list(bootstrap_score_histogram_chunks(pos, neg, 23, rng_b, max_elements=max_elements))
    assert len(chunks) == (1 if max_elements == 4_000_000 else 23 if max_elements == 1 else -(-23 // (max_elements // 300)))  # 300 positives per resample
    assert np.array_equal(np.concatenate([c[0] for c in chunks]), h_pos)
    assert np.array_equal(np.concatenate([c[1] for c in chunks]), h_neg)
    assert rng_a.random() == rng_b.random()  # later draws of the check do not move either
    below = np.cumsum(h_neg, 1) - h_neg
    before = (h_pos * (below + 0.5 * h_neg)).sum(1) / (300 * 70)
    np.testing.assert_array_equal(bootstrap_auroc(pos, neg, 23, np.random.default_rng(7)), before)


def test_bootstrap_auroc_memory_is_bounded_by_the_chunk_not_the_rows() -> None:
    """200 resamples of 100,000 in-distribution scores: drawn at once that is 200 × 100k int64 per array (160 MB; a
    615 MiB peak as measured before chunking); in chunks of 4 million numbers (32 MB per array, ~6 alive at once,
    181 MiB measured) the documented bound is 300 MiB, whatever the rows."""
    from audit.ood_scores import bootstrap_auroc

    rng = np.random.default_rng(0)
    ident, ood = rng.normal(1, 1, 100_000), rng.normal(0, 1, 500)
    tracemalloc.start()
    try:
        reps = bootstrap_auroc(ident, ood, 200, rng)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reps.shape == (200,) and 0.7 < np.median(reps) < 0.8
    assert peak < 300 * 2**20, f"peak {peak / 2**20:.1f} MiB"
