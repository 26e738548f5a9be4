"""Benchmark: the performance check's bootstrap against the usual scikit-learn loop, in one run.

The reference is what people write by hand: for each resample, index the predictions and call
``accuracy_score``, ``balanced_accuracy_score`` and ``f1_score(average="macro")``. deepaudit draws
the same resample indices and computes all three (plus per-class precision/recall and ECE)
from per-resample confusion matrices with one ``np.bincount``. Both paths must agree on every
replicate; the script checks that before it prints the ratio.

    python benchmarks/bench_performance.py --n 20000 --classes 10 --resamples 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from audit.checks.performance import accuracy_from_counts, balanced_accuracy_from_counts, macro_f1_from_counts
from audit.stats import bootstrap_index_chunks, confusion_counts


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="evaluation samples")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
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


if __name__ == "__main__":
    main()
