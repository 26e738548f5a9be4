"""audit.fairness.gaps on known answers: counts, rates and gaps worked out by hand, resampling on cases
whose every replicate is known, and the noise floor on a known null."""

from __future__ import annotations

import numpy as np
import pytest

from audit.fairness import gaps as G


def test_group_counts_known_confusion_per_group() -> None:
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    p = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    g = np.array(["b", "b", "b", "a", "a", "a", "c", "c"])
    labels, counts = G.group_counts(y, p, g)
    assert list(labels) == ["a", "b", "c"]
    # columns tn, fp, fn, tp
    assert counts.tolist() == [[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 0]]


def test_rates_known_values_and_nan_where_undefined() -> None:
    counts = np.array([[6, 2, 1, 3],   # 12 rows: selection 5/12, TPR 3/4, FPR 2/8, PPV 3/5
                       [4, 0, 0, 0]])  # no positives, nothing selected: TPR and PPV undefined, FPR 0
    r = G.rates_from_counts(counts)
    np.testing.assert_allclose(r["selection_rate"], [5 / 12, 0.0])
    np.testing.assert_allclose(r["tpr"], [0.75, np.nan])
    np.testing.assert_allclose(r["fpr"], [0.25, 0.0])
    np.testing.assert_allclose(r["ppv"], [0.6, np.nan])
    empty = G.rates_from_counts(np.zeros((1, 4)))
    assert all(np.isnan(v).all() for v in empty.values())


def test_gaps_known_values() -> None:
    rates = {"selection_rate": np.array([0.2, 0.5, 0.4]), "tpr": np.array([0.9, 0.6, np.nan]),
             "fpr": np.array([0.1, 0.5, 0.3]), "ppv": np.array([0.8, 0.7, 0.75])}
    gaps = G.gaps_from_rates(rates)
    assert gaps["demographic_parity_difference"] == pytest.approx(0.3)
    assert gaps["demographic_parity_ratio"] == pytest.approx(0.4)
    assert gaps["equal_opportunity_difference"] == pytest.approx(0.3)  # the NaN group is ignored
    assert gaps["equalized_odds_difference"] == pytest.approx(0.4)  # max(TPR gap 0.3, FPR gap 0.4)
    assert gaps["predictive_parity_difference"] == pytest.approx(0.1)
    rates["tpr"] = np.array([0.9, 0.1, np.nan])
    assert G.gaps_from_rates(rates)["equalized_odds_difference"] == pytest.approx(0.8)  # now the TPR gap
    # every group's TPR undefined: equalized odds falls back to the FPR gap, equal opportunity is NaN
    rates["tpr"] = np.array([np.nan, np.nan, np.nan])
    gaps = G.gaps_from_rates(rates)
    assert np.isnan(gaps["equal_opportunity_difference"]) and gaps["equalized_odds_difference"] == pytest.approx(0.4)
    # nobody selected anywhere: the ratio is undefined, not 0 or 1
    none = G.gaps_from_rates({**rates, "selection_rate": np.array([0.0, 0.0])})
    assert np.isnan(none["demographic_parity_ratio"]) and none["demographic_parity_difference"] == 0.0
    # batched over resamples: each resample's gaps over its own groups (the last axis)
    first = {"selection_rate": [0.2, 0.8], "tpr": [0.5, 0.6], "fpr": [0.1, 0.3], "ppv": [0.5, 0.5]}
    other = {"selection_rate": [0.0, 0.0], "tpr": [0.5, 0.6], "fpr": [0.2, 0.6], "ppv": [0.5, 0.5]}
    batched = G.gaps_from_rates({k: np.array([first[k], other[k]]) for k in first})
    np.testing.assert_allclose(batched["demographic_parity_difference"], [0.6, 0.0])
    np.testing.assert_allclose(batched["demographic_parity_ratio"], [0.25, np.nan])
    np.testing.assert_allclose(batched["equalized_odds_difference"], [0.2, 0.4])


def test_gaps_from_counts_compose_rates_and_gaps() -> None:
    counts = np.array([[6, 2, 1, 3], [1, 3, 2, 6]])
    gaps = G.gaps_from_counts(counts)
    assert gaps["demographic_parity_difference"] == pytest.approx(9 / 12 - 5 / 12)
    assert gaps["equalized_odds_difference"] == pytest.approx(max(abs(0.75 - 0.75), abs(0.25 - 0.75)))
    assert set(gaps) == set(G.GAPS)


def test_bootstrap_gaps_on_deterministic_groups_and_known_spread() -> None:
    # group a: everyone selected, group b: nobody. Every resample keeps that: DP difference 1, ratio 0.
    counts = np.array([[0, 5, 0, 5], [5, 0, 5, 0]])
    boot = G.bootstrap_gaps(counts, 200, np.random.default_rng(0))
    assert boot["demographic_parity_difference"].shape == (200,)
    assert (boot["demographic_parity_difference"] == 1.0).all() and (boot["demographic_parity_ratio"] == 0.0).all()
    # two groups whose selection rates are 50/100 and fixed at 0: the gap is group a's resampled rate,
    # with the binomial spread sqrt(0.25 / 100) = 0.05
    counts = np.array([[50, 0, 0, 50], [100, 0, 0, 0]])
    boot = G.bootstrap_gaps(counts, 4000, np.random.default_rng(1))["demographic_parity_difference"]
    assert boot.mean() == pytest.approx(0.5, abs=0.005) and boot.std() == pytest.approx(0.05, rel=0.08)


def test_permutation_gaps_known_nulls() -> None:
    # everyone selected: shuffling labels cannot open a gap
    counts = np.array([[0, 10, 0, 10], [0, 4, 0, 6]])
    null = G.permutation_gaps(counts, 100, np.random.default_rng(0))
    assert (null["demographic_parity_difference"] == 0.0).all() and (null["demographic_parity_ratio"] == 1.0).all()
    # two groups of 4 rows, 4 selected in all (counts: tn, fp, fn, tp with y = 0 everywhere): under the null
    # group a's selections k are hypergeometric(8, 4, 4); the gap is |k/4 - (4-k)/4| = |k - 2| / 2
    counts = np.array([[0, 4, 0, 0], [4, 0, 0, 0]])
    null = G.permutation_gaps(counts, 20000, np.random.default_rng(1))["demographic_parity_difference"]
    from math import comb

    pk = np.array([comb(4, k) * comb(4, 4 - k) / comb(8, 4) for k in range(5)])
    expected = {0.0: pk[2], 0.5: pk[1] + pk[3], 1.0: pk[0] + pk[4]}
    for value, prob in expected.items():
        assert float(np.mean(np.isclose(null, value))) == pytest.approx(prob, abs=0.01)


def test_noise_floor_known_null() -> None:
    null = np.r_[np.arange(100) / 100, np.nan]
    p, q = G.noise_floor(null, 0.9, "demographic_parity_difference")
    assert p == pytest.approx(11 / 101) and q == pytest.approx(np.quantile(np.arange(100) / 100, 0.95))
    # a ratio is worse when smaller: the p-value counts replicates at or below it, the floor is the 5% quantile
    p, q = G.noise_floor(null, 0.1, "demographic_parity_ratio")
    assert p == pytest.approx(12 / 101) and q == pytest.approx(np.quantile(np.arange(100) / 100, 0.05))
    p, q = G.noise_floor(null, 0.9, "equalized_odds_difference", level=0.5)
    assert q == pytest.approx(np.quantile(np.arange(100) / 100, 0.5))
    assert G.noise_floor(np.array([np.nan]), 0.3, "demographic_parity_difference") == (None, None)
