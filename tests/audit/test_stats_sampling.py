"""audit.stats.stratified_rows: a cap drawn before the work, in proportion to the labels."""

from __future__ import annotations

import numpy as np

from audit.stats import stratified_rows


def test_stratified_rows_keep_the_label_shares_and_are_seeded() -> None:
    y = np.repeat([0, 1, 2, 3], [500, 300, 150, 50])
    rows = stratified_rows(y, 100, np.random.default_rng(0))
    assert len(rows) == len(set(rows)) == 100 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(np.bincount(y[rows]), [50, 30, 15, 5])
    np.testing.assert_array_equal(rows, stratified_rows(y, 100, np.random.default_rng(0)))
    assert not np.array_equal(rows, stratified_rows(y, 100, np.random.default_rng(1)))


def test_stratified_rows_round_to_the_limit_and_keep_small_classes() -> None:
    y = np.repeat([0, 1, 2], [990, 7, 3])
    rows = stratified_rows(y, 21, np.random.default_rng(0))
    counts = np.bincount(y[rows], minlength=3)
    assert counts.sum() == 21 and counts[1] >= 2 and counts[2] >= 2  # proportional shares would give 0 to both
    assert len(stratified_rows(np.repeat([0, 1, 2], [4, 4, 3]), 10, np.random.default_rng(0))) == 10
    np.testing.assert_array_equal(stratified_rows(y[:50], 50, np.random.default_rng(0)), np.arange(50))
