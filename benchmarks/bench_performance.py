"""Benchmark: the performance check's bootstrap against the usual scikit-learn loop, in one run.

The reference is what people write by hand: for each resample, index the predictions and call
``accuracy_score``, ``balanced_accuracy_score`` and ``f1_score(average="macro")``. deepaudit draws
the same resample indices and computes all three (plus per-class precision/recall and ECE)
from per-resample confusion matrices with one ``np.bincount``. Both paths must agree on every
replicate; the script checks that before it prints the ratio.

    python benchmarks/bench_performance.py --n 20000 --classes 10 --resamples 1000

With ``--sizes`` it also times the check's whole resampling (``n_resamples`` bootstrap resamples of every
interval and ``n_permutations`` shuffles of the chance test, the ``standard`` budget's 1000 and 2000) at
those numbers of rows, two ways: every draw per row (as below ``performance.ROWS_UP_TO`` rows) and the
count-based draws used above it (counts per cell, shuffled confusion tables), with the CPU time, the peak
memory (tracemalloc) and the intervals of accuracy, balanced accuracy and ECE side by side.

    python benchmarks/bench_performance.py --sizes 100000 500000 --classes 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit.checks.performance import (  # noqa: E402
    accuracy_from_counts,
    balanced_accuracy_from_counts,
    bootstrap_counts,
    chance_balanced_accuracy_test,
    ece_from_bins,
    macro_f1_from_counts,
)
from audit.stats import bootstrap_index_chunks, confusion_counts  # noqa: E402


def reference(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.empty((len(idx), 3))
    for b, rows in enumerate(idx):
        yt, yp = y[rows], pred[rows]
        out[b] = accuracy_score(yt, yp), balanced_accuracy_score(yt, yp), f1_score(yt, yp, average="macro")
    return out


def ours(y: np.ndarray, pred: np.ndarray, k: int, idx: np.ndarray) -> np.ndarray:
    parts = []
    for start in range(0, len(idx), 200):
        cm = confusion_counts(y, pred, k, idx[start : start + 200])
        parts.append(np.stack([accuracy_from_counts(cm), balanced_accuracy_from_counts(cm), macro_f1_from_counts(cm)], 1))
    return np.concatenate(parts)


def resampling(n: int, k: int, resamples: int, permutations: int, rows_up_to: int, seed: int) -> dict:
    """The performance check's bootstrap and chance test on ``n`` generated predictions: CPU s, peak MiB,
    the intervals of accuracy, balanced accuracy and ECE, and the chance p-value."""
    import tracemalloc

    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y] * (rng.random(n) < 0.7)[:, None]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pred, conf = probs.argmax(1), probs.max(1)
    tracemalloc.start()
    t0 = time.process_time()
    draw = np.random.default_rng(seed + 1)
    how, chunks = bootstrap_counts(y, pred, conf, k, 15, resamples, draw, rows_up_to=rows_up_to)
    reps = [np.stack([accuracy_from_counts(cm), balanced_accuracy_from_counts(cm), ece_from_bins(c, a, f)], 1)
            for cm, c, a, f in chunks]
    t_boot = time.process_time() - t0
    t0 = time.process_time()
    p = chance_balanced_accuracy_test(y, pred, permutations, draw, rows_up_to=rows_up_to)
    t_perm = time.process_time() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    ci = np.quantile(np.concatenate(reps), [0.025, 0.975], axis=0)
    return {"how": how.split(":")[0][:60], "boot": t_boot, "perm": t_perm, "peak": peak, "ci": ci, "p": p}


def at_sizes(sizes: list[int], k: int, resamples: int, permutations: int, seed: int) -> None:
    print(f"\nthe performance check's resampling ({resamples} bootstrap resamples, {permutations} shuffles), "
          f"{k} classes; CPU s and peak MiB (tracemalloc)")
    print(f"{'rows':>9} {'draws':<16}{'bootstrap s':>12}{'shuffles s':>11}{'peak MiB':>10}   "
          "95% intervals: accuracy | balanced accuracy | ECE")
    for n in sizes:
        for label, rows_up_to in (("every row", 10**12), ("counts", 0)):
            r = resampling(n, k, resamples, permutations, rows_up_to, seed)
            ci = " | ".join(f"[{r['ci'][0, j]:.4f}, {r['ci'][1, j]:.4f}]" for j in range(3))
            print(f"{n:>9,} {label:<16}{r['boot']:>12.2f}{r['perm']:>11.2f}{r['peak']:>10.0f}   {ci}   p={r['p']:.4f}",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="evaluation samples")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="Rows at which to time the whole resampling.")
    parser.add_argument("--permutations", type=int, default=2000, help="Shuffles of the chance test (with --sizes).")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    y = rng.integers(0, args.classes, args.n)
    pred = np.where(rng.random(args.n) < 0.8, y, rng.integers(0, args.classes, args.n))
    idx = np.concatenate(list(bootstrap_index_chunks(args.n, args.resamples, np.random.default_rng(1))))

    t0 = time.perf_counter()
    ref = reference(y, pred, idx)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    mine = ours(y, pred, args.classes, idx)
    t_ours = time.perf_counter() - t0
    np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=1e-12)

    print(f"bootstrap of accuracy, balanced accuracy, macro-F1: n={args.n}, classes={args.classes}, "
          f"resamples={args.resamples} (replicates agree to 1e-12)")
    print(f"  scikit-learn loop : {t_ref:8.3f} s")
    print(f"  deepaudit (counts): {t_ours:8.3f} s")
    print(f"  speed-up          : {t_ref / t_ours:8.1f}x")
    if args.sizes:
        at_sizes(args.sizes, args.classes, args.resamples, args.permutations, args.seed)


if __name__ == "__main__":
    main()
