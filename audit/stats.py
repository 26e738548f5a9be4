"""Resampling statistics shared by the checks: bootstrap confidence intervals.

The bootstrap here is vectorised: resample indices are drawn in chunks and every statistic is
computed for all resamples at once from counts (``np.bincount`` with per-resample offsets), so a
thousand resamples of a large evaluation set cost about as much as a few passes over it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np

DEFAULT_LEVEL = 0.95


def bootstrap_index_chunks(n: int, n_resamples: int, rng: np.random.Generator,
                           max_elements: int = 4_000_000) -> Iterator[np.ndarray]:
    """Yield ``(b, n)`` arrays of resample indices, ``b`` chosen to bound memory."""
    per_chunk = max(1, min(n_resamples, max_elements // max(n, 1)))
    done = 0
    while done < n_resamples:
        b = min(per_chunk, n_resamples - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def bootstrap_cell_count_chunks(cell_counts: np.ndarray, n_resamples: int, rng: np.random.Generator,
                                max_elements: int = 4_000_000) -> Iterator[np.ndarray]:
    """Bootstrap resamples of rows grouped into cells, drawn as counts per cell, in chunks.

    Drawing ``n = cell_counts.sum()`` rows with replacement and counting them per cell is one draw of
    ``Multinomial(n, cell_counts / n)``; drawn that way a resample costs ``O(cells)``, not ``O(n)``, and
    every statistic that is a function of per-cell counts has exactly the distribution of the row
    bootstrap. Yields ``(b, cells)`` int64 counts, ``b`` keeping each chunk near ``max_elements``.
    """
    counts = np.asarray(cell_counts, dtype=np.float64)
    n, m = int(counts.sum()), len(counts)
    per_chunk = max(1, min(n_resamples, max_elements // max(m, 1)))
    for start in range(0, n_resamples, per_chunk):
        yield rng.multinomial(n, counts / n, size=min(per_chunk, n_resamples - start))


def shuffled_confusion_diagonals(support: np.ndarray, predicted: np.ndarray, n_permutations: int,
                                 rng: np.random.Generator) -> np.ndarray:
    """Diagonals of the confusion matrices of labels against randomly shuffled predictions, ``(P, K)``.

    Shuffling ``predicted.sum()`` predictions (``predicted[j]`` of class ``j``) against labels with
    ``support[i]`` rows of class ``i`` gives a random contingency table with those margins: class
    ``i``'s rows take ``support[i]`` predictions without replacement from what the classes before it
    left (a multivariate hypergeometric draw, made of univariate ones). Drawn that way a shuffle
    costs ``O(K²)`` instead of ``O(n)``, with the same distribution of every function of the table.
    """
    support = np.asarray(support, dtype=np.int64)
    k = len(support)
    remaining = np.tile(np.asarray(predicted, dtype=np.int64), (n_permutations, 1))
    rest = np.zeros(n_permutations, dtype=np.int64)  # predictions of classes before i, lumped: never asked for again
    diagonal = np.zeros((n_permutations, k), dtype=np.int64)
    for i in range(k):
        if support[i]:
            left = np.full(n_permutations, support[i], dtype=np.int64)
            others = remaining[:, i:].sum(axis=1) + rest
            for j in range(i, k):
                others -= remaining[:, j]  # the pool besides class j: classes after it and the lumped rest
                draw = rng.hypergeometric(remaining[:, j], others, left)
                remaining[:, j] -= draw
                left -= draw
                if j == i:
                    diagonal[:, i] = draw
            rest -= left  # what class i's rows took from the lumped rest
        rest += remaining[:, i]
    return diagonal


def percentile_interval(samples: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float | None, float | None]:
    """Percentile interval of bootstrap replicates, ignoring undefined (NaN) replicates."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
                     idx: np.ndarray | None = None) -> np.ndarray:
    """Confusion matrices, rows = true class, columns = predicted.

    With ``idx`` of shape ``(b, n)`` returns ``(b, K, K)``: one matrix per resample.
    """
    codes = y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64)
    kk = n_classes * n_classes
    if idx is None:
        return np.bincount(codes, minlength=kk).reshape(n_classes, n_classes)
    b = idx.shape[0]
    offset = (np.arange(b, dtype=np.int64) * kk)[:, None]
    flat = np.bincount((codes[idx] + offset).ravel(), minlength=b * kk)
    return flat.reshape(b, n_classes, n_classes)


def binned_sums(bins: np.ndarray, values: list[np.ndarray], n_bins: int,
                idx: np.ndarray | None = None) -> list[np.ndarray]:
    """Per-bin counts and sums of ``values``; ``(n_bins,)`` or, with ``idx``, ``(b, n_bins)`` each.

    Returns ``[counts, sum(values[0]), sum(values[1]), ...]``.
    """
    if idx is None:
        out = [np.bincount(bins, minlength=n_bins).astype(np.float64)]
        out += [np.bincount(bins, weights=v, minlength=n_bins) for v in values]
        return out
    b = idx.shape[0]
    keys = (bins[idx] + (np.arange(b, dtype=np.int64) * n_bins)[:, None]).ravel()
    out = [np.bincount(keys, minlength=b * n_bins).reshape(b, n_bins).astype(np.float64)]
    out += [np.bincount(keys, weights=v[idx].ravel(), minlength=b * n_bins).reshape(b, n_bins) for v in values]
    return out


def bootstrap_score_histogram_chunks(pos_scores: np.ndarray, neg_scores: np.ndarray, n_resamples: int,
                                     rng: np.random.Generator,
                                     max_elements: int = 4_000_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified bootstrap of two score samples as histograms over their sorted distinct values, in chunks.

    Each resample draws ``len(pos_scores)`` positives and ``len(neg_scores)`` negatives with
    replacement; yields ``(pos, neg)``, each ``(b, n_distinct)`` counts per distinct score in
    ascending order for ``b`` resamples at a time — enough for AUROC, TPR and FPR at every threshold
    of every resample without sorting again. ``b`` keeps each chunk near ``max_elements`` numbers,
    so memory is ``O(max_elements)``, not ``O(n_resamples × n)``.

    The resamples, and ``rng``'s state afterwards, are the same whatever the chunk size: the
    positives of every resample are drawn before the negatives of any. When the draws need more
    than one chunk, a copy of ``rng`` replays the positives' stream chunk by chunk while ``rng``
    itself first runs through it to reach the negatives' (one extra draw of the positives' indices).
    """
    values, inverse = np.unique(np.r_[pos_scores, neg_scores], return_inverse=True)
    inverse = inverse.ravel()
    u = len(values)
    n_pos, n_neg = len(pos_scores), len(neg_scores)
    inv_pos, inv_neg = inverse[:n_pos], inverse[n_pos:]
    per_chunk = max(1, min(n_resamples, max_elements // max(n_pos, n_neg, u, 1)))

    def histograms(inv: np.ndarray, draws: np.ndarray) -> np.ndarray:
        b = draws.shape[0]
        keys = (inv[draws] + (np.arange(b, dtype=np.int64) * u)[:, None]).ravel()
        return np.bincount(keys, minlength=b * u).reshape(b, u)

    sizes = [min(per_chunk, n_resamples - start) for start in range(0, n_resamples, per_chunk)]
    if len(sizes) <= 1:
        for b in sizes:
            pos = histograms(inv_pos, rng.integers(0, n_pos, (b, n_pos)))
            yield pos, histograms(inv_neg, rng.integers(0, n_neg, (b, n_neg)))
        return
    pos_rng = copy.deepcopy(rng)
    for b in sizes:  # run rng through the positives' draws to where the negatives' start
        rng.integers(0, n_pos, (b, n_pos))
    for b in sizes:
        yield (histograms(inv_pos, pos_rng.integers(0, n_pos, (b, n_pos))),
               histograms(inv_neg, rng.integers(0, n_neg, (b, n_neg))))


def multinomial_resamples(counts: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap of a sample known by its category counts: ``(n_resamples, K)`` counts.

    Drawing ``n`` rows with replacement and counting their categories is a multinomial draw with
    the observed shares, so this is the same distribution as resampling row indices, in
    ``O(n_resamples × K)`` memory instead of ``O(n_resamples × n)``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return np.zeros((n_resamples, len(counts)), dtype=np.int64)
    return rng.multinomial(n, counts / n, size=n_resamples)


def permuted_group_counts(counts: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Category counts per group after shuffling the group labels: ``(n_resamples, G, K)``.

    ``counts`` is ``(G, K)``: rows of group ``g`` in category ``k``. Shuffling the labels keeps each
    group's size and the category totals, so each group's counts are a multivariate
    hypergeometric draw from what the previous groups left; it is drawn group by group and
    category by category with ``Generator.hypergeometric``, vectorised over the resamples, in
    ``O(n_resamples × G × K)`` memory whatever the number of rows.
    """
    counts = np.asarray(counts, dtype=np.int64)
    g_n, k_n = counts.shape
    out = np.zeros((n_resamples, g_n, k_n), dtype=np.int64)
    remaining = np.repeat(counts.sum(0)[None], n_resamples, axis=0)
    for g in range(g_n - 1):
        need = np.full(n_resamples, counts[g].sum(), dtype=np.int64)
        rest = remaining.sum(1)
        for k in range(k_n - 1):
            rest = rest - remaining[:, k]
            draw = rng.hypergeometric(remaining[:, k], rest, need)
            out[:, g, k] = draw
            need = need - draw
        out[:, g, k_n - 1] = need
        remaining = remaining - out[:, g]
    out[:, g_n - 1] = remaining
    return out


def permutation_p_value(null: np.ndarray, observed: float, greater: bool = True) -> float | None:
    """One-sided permutation p-value ``(1 + #{null at least as extreme}) / (1 + #null)``.

    Undefined (NaN) replicates are left out; ``None`` when the observed value or every replicate
    is undefined. Ties count as at least as extreme (a 1e-12 tolerance absorbs rounding).
    """
    finite = null[np.isfinite(null)]
    if not np.isfinite(observed) or finite.size == 0:
        return None
    extreme = finite >= observed - 1e-12 if greater else finite <= observed + 1e-12
    return float((1 + int(extreme.sum())) / (1 + finite.size))


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n; exactly 0 below k = 0 and 1 above k = n (where the
    formula leaves rounding residue such as 1.7e-18 for 0/125 or 0.9999999999999999 for 4/4)."""
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return float(low), float(high)


def stratified_rows(labels: np.ndarray, limit: int, rng: np.random.Generator, min_per_class: int = 2) -> np.ndarray:
    """Sorted indices of at most ``limit`` rows drawn without replacement, stratified by ``labels``.

    Every row when there are at most ``limit``. Otherwise each class gets its proportional share
    (largest remainders round it to ``limit`` in all) and at least ``min(min_per_class, its size)``
    rows, the extra rows taken from the classes with the largest quotas. Draw the rows before any
    expensive work on them (logits, features) so that a cap bounds that work.
    """
    y = np.asarray(labels)
    n = len(y)
    if n <= limit:
        return np.arange(n)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = limit * counts / n
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: limit - int(quota.sum())]] += 1
    floor = np.minimum(counts, min_per_class)
    while (short := np.flatnonzero(quota < floor)).size and (quota - floor).max() > 0:
        quota[short[0]] += 1
        quota[int(np.argmax(quota - floor))] -= 1
    rows = [rng.choice(np.flatnonzero(inverse == c), int(q), replace=False) for c, q in enumerate(quota) if q]
    return np.sort(np.concatenate(rows))
