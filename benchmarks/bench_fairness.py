"""Memory and time of the fairness gaps' resampling: counts (deepaudit) vs row indices (the usual way).

The stratified bootstrap of a gap is usually written by drawing ``(resamples, group size)`` row
indices per group; deepaudit draws each group's confusion counts from a multinomial (the same
distribution) and the permutation null from a multivariate hypergeometric. This script runs both
bootstraps on the same predictions, checks that their 95% intervals agree, and prints the peak
memory (tracemalloc) and time of each, then of the whole ``fairness.group_metrics`` check.

    python benchmarks/bench_fairness.py --n 200000 --resamples 1000
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd
import torch

from audit.fairness.gaps import bootstrap_gaps, group_counts, permutation_gaps
from audit.stats import percentile_interval


def row_bootstrap(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_resamples: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Demographic parity difference replicates by resampling row indices within each group."""
    rates = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        idx = rng.integers(0, len(members), size=(n_resamples, len(members)))
        rates.append(p[members][idx].mean(axis=1))
    sel = np.stack(rates, 1)
    return sel.max(1) - sel.min(1)


def measure(fn):  # noqa: ANN001, ANN201
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak / 2**20


def whole_check(n: int, resamples: int) -> tuple[float, float]:
    from audit.checks.fairness import FairnessConfig, GroupMetrics
    from audit.context import AuditContext
    from audit.data import AuditDataset
    from models.adapter import ModelAdapter

    class Fixed(ModelAdapter):
        def __init__(self, table: np.ndarray) -> None:
            self.table = torch.tensor(table, dtype=torch.float32)
            self.class_names, self.device, self.input_kind = ["0", "1"], torch.device("cpu"), "tabular"

        def logits(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.table[inputs[:, 0].long()]

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    score = np.clip(0.3 * y + 0.35 + rng.normal(0, 0.2, n), 0.01, 0.99)
    sens = pd.DataFrame({"sex": rng.choice(["f", "m"], n), "race": rng.choice(["a", "b", "c"], n)})
    ds = AuditDataset(name="eval", inputs=np.arange(n, dtype=np.float32)[:, None], target=y, class_names=None,
                      sensitive_features=sens, feature_names=None, input_kind="tabular", path="mem", format="npz",
                      sha256="0")
    ctx = AuditContext(Fixed(np.stack([np.zeros(n), np.log(score / (1 - score))], 1)), {"eval": ds}, batch_size=4096)
    ctx.probs()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    GroupMetrics(FairnessConfig(mitigation=[], n_resamples=resamples)).run(ctx)
    dt = time.perf_counter() - t
    return dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    # First, while the process's peak RSS is still that of the setup: the whole check, untraced.
    dt, peak = whole_check(args.n, args.resamples)
    print(f"fairness.group_metrics at n={args.n} (2 sensitive columns, {args.resamples} bootstrap resamples and "
          f"permutations, no mitigation): {dt:.1f} s, peak RSS +{peak:.0f} MiB")
    rng = np.random.default_rng(0)
    groups = rng.choice(["a", "b"], args.n)
    y = rng.integers(0, 2, args.n)
    p = (rng.random(args.n) < np.where(groups == "a", 0.55, 0.5)).astype(np.int64)
    by_rows, t_rows, m_rows = measure(lambda: row_bootstrap(y, p, groups, args.resamples, np.random.default_rng(1)))
    _, counts = group_counts(y, p, groups)
    by_counts, t_counts, m_counts = measure(
        lambda: bootstrap_gaps(counts, args.resamples, np.random.default_rng(1))["demographic_parity_difference"])
    _, t_perm, m_perm = measure(lambda: permutation_gaps(counts, args.resamples, np.random.default_rng(2)))
    lo_r, hi_r = percentile_interval(by_rows)
    lo_c, hi_c = percentile_interval(by_counts)
    width = hi_r - lo_r
    assert abs(lo_r - lo_c) < 0.15 * width and abs(hi_r - hi_c) < 0.15 * width, (lo_r, hi_r, lo_c, hi_c)
    print(f"n={args.n}, {args.resamples} resamples, 2 groups; DP-difference 95% interval rows [{lo_r:.4f}, {hi_r:.4f}], "
          f"counts [{lo_c:.4f}, {hi_c:.4f}]")
    print(f"bootstrap on row indices: {t_rows:.2f} s, peak {m_rows:.1f} MiB")
    print(f"bootstrap on counts:      {t_counts:.3f} s, peak {m_counts:.2f} MiB ({m_rows / max(m_counts, 1e-9):.0f}x less)")
    print(f"permutation null (counts): {t_perm:.3f} s, peak {m_perm:.2f} MiB")



if __name__ == "__main__":
    main()
