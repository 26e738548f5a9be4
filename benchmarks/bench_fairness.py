"""Fairness and bootstraps at scale: time and memory, before and after, in one run.

1. The fairness gaps' stratified bootstrap on confusion counts (multinomial, deepaudit) vs drawing
   ``(resamples, group size)`` row indices (the usual way), intervals checked to agree; the
   permutation null.
2. ``fairness.group_metrics`` against fairlearn's ``MetricFrame`` on the same predictions (one frame
   per sensitive column: the reference work), and the mitigations' cost, each measured on this
   tree ("after") and on the tree of ``--before`` (a git revision, extracted to a temporary folder and
   run in a subprocess on the same generated data): the ratio to fairlearn before and after.
3. Peak memory (tracemalloc) of the bootstraps at ``--n-bootstrap`` rows, before and after: the OOD
   AUROC bootstrap (``bootstrap_auroc``, ``--ood-resamples`` resamples) and the fairness gaps'
   (``bootstrap_gaps``).

    python benchmarks/bench_fairness.py --n 200000 --resamples 1000 --n-bootstrap 500000 --before 42b0b3c
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

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


ROOT = Path(__file__).resolve().parent.parent


def fixed_adapter(logits: np.ndarray, features: np.ndarray):  # noqa: ANN201
    """A model whose logits and features are looked up by row number (the input)."""
    from models.adapter import ModelAdapter

    class Fixed(ModelAdapter):
        def __init__(self) -> None:
            self.table = torch.tensor(logits, dtype=torch.float32)
            self.feats = torch.tensor(features, dtype=torch.float32)
            self.class_names, self.device, self.input_kind = ["0", "1"], torch.device("cpu"), "tabular"

        @property
        def has_features(self) -> bool:
            return True

        def logits(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.table[inputs[:, 0].long()]

        def features(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.feats[inputs[:, 0].long()]

    return Fixed()


def fairness_context(n: int, reference: bool):  # noqa: ANN201
    """Eval (and reference) sets of ``n`` rows each: two sensitive columns, a group-dependent base rate, a score
    leaning on the group, two features (label signal, group signal)."""
    from audit.context import AuditContext
    from audit.data import AuditDataset

    rng = np.random.default_rng(0)
    total = 2 * n if reference else n
    sex, race = rng.choice(["f", "m"], total), rng.choice(["a", "b", "c"], total, p=[0.5, 0.3, 0.2])
    y = (rng.random(total) < np.where(sex == "m", 0.6, 0.4)).astype(np.int64)
    feats = np.stack([y + rng.normal(0, 0.8, total), (sex == "m") + rng.normal(0, 0.1, total)], 1)
    z = feats[:, 0] + 1.5 * feats[:, 1] - 1.2
    logits = np.stack([np.zeros(total), z], 1)

    def ds(name: str, part: slice) -> AuditDataset:
        rows = np.arange(total)[part]
        return AuditDataset(name=name, inputs=rows.astype(np.float32)[:, None], target=y[part], class_names=None,
                            sensitive_features=pd.DataFrame({"sex": sex[part], "race": race[part]}),
                            feature_names=None, input_kind="tabular", path="mem", format="npz", sha256="0")

    data = {"eval": ds("eval", slice(0, n))}
    if reference:
        data["reference"] = ds("reference", slice(n, 2 * n))
    return AuditContext(fixed_adapter(logits, feats), data, batch_size=65536)


def worker(n: int, n_bootstrap: int, ood_resamples: int, resamples: int) -> dict:
    """Everything measured on the tree this process imports: times (s) and peaks (MiB)."""
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, precision_score

    from audit.checks.fairness import FairnessConfig, GroupMetrics
    from audit.fairness.gaps import bootstrap_gaps, group_counts
    from audit.ood_scores import bootstrap_auroc

    import audit.checks.fairness as check

    out: dict = {"tree": str(Path(check.__file__).resolve().parents[2])}
    ctx = fairness_context(n, reference=False)
    ctx.probs()
    y, pred = ctx.y_true(), ctx.y_pred()
    t = time.perf_counter()
    GroupMetrics(FairnessConfig(mitigation=[], n_resamples=0, n_permutations=0)).run(ctx)
    out["check"] = time.perf_counter() - t
    t = time.perf_counter()
    GroupMetrics(FairnessConfig(mitigation=[], n_resamples=resamples, n_permutations=resamples)).run(ctx)
    out["check_resampled"] = time.perf_counter() - t
    t = time.perf_counter()
    for col in ("sex", "race"):  # the reference work: one MetricFrame of the same per-group metrics per column
        MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
                             "ppv": lambda a, b: precision_score(a, b, zero_division=np.nan),
                             "accuracy": accuracy_score, "count": lambda a, b: len(a)},
                    y_true=y, y_pred=pred, sensitive_features=ctx.dataset().sensitive_features[col])
    out["fairlearn"] = time.perf_counter() - t
    t = time.perf_counter()
    for col in ("sex", "race"):  # for scale: the same groups' confusion counts, from which every rate follows
        group_counts(y, pred, ctx.dataset().sensitive_features[col].to_numpy())
    out["counts"] = time.perf_counter() - t
    ctx = fairness_context(n, reference=True)
    ctx.probs()
    ctx.features()
    t = time.perf_counter()
    result = GroupMetrics(FairnessConfig(n_resamples=0, n_permutations=0)).run(ctx)
    out["check_mitigation"] = time.perf_counter() - t
    table = next(e for e in result.evidence if e.title == "Mitigation: before and after")
    out["mitigation_caption"] = table.caption
    out["mitigation_dp"] = {r[0]: r[2] for r in table.rows}

    rng = np.random.default_rng(1)
    ident, ood = rng.normal(1, 1, n_bootstrap), rng.normal(0, 1, 500)
    reps, out["auroc_s"], out["auroc_mib"] = measure(lambda: bootstrap_auroc(ident, ood, ood_resamples,
                                                                             np.random.default_rng(2)))
    out["auroc_interval"] = percentile_interval(reps)
    groups = rng.integers(0, 3, n_bootstrap)
    _, counts = group_counts(rng.integers(0, 2, n_bootstrap), rng.integers(0, 2, n_bootstrap), groups)
    _, out["gaps_s"], out["gaps_mib"] = measure(lambda: bootstrap_gaps(counts, resamples, np.random.default_rng(3)))
    return out


def run_tree(tree: Path, args: argparse.Namespace) -> dict:
    """:func:`worker` in a subprocess importing ``tree``'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--n", str(args.n), "--resamples",
           str(args.resamples), "--n-bootstrap", str(args.n_bootstrap), "--ood-resamples", str(args.ood_resamples)]
    done = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"worker on {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def before_and_after(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "audit", "models"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        before = run_tree(Path(tmp), args)
    after = run_tree(ROOT, args)
    assert before["tree"] != after["tree"] and after["tree"] == str(ROOT), (before["tree"], after["tree"])
    print(f"\nfairness.group_metrics at n={args.n} (2 sensitive columns), before = {args.before}, after = this tree:")
    for name, b in (("before", before), ("after", after)):
        print(f"  {name:6s} no resampling {b['check']:6.1f} s = {b['check'] / b['fairlearn']:.2f}x fairlearn's "
              f"MetricFrame ({b['fairlearn']:.1f} s, one per column, same process); with {args.resamples} bootstrap "
              f"resamples + permutations {b['check_resampled']:.1f} s; with the default mitigations on a "
              f"{args.n}-row reference set {b['check_mitigation']:.1f} s (mitigations "
              f"{b['check_mitigation'] - b['check']:.1f} s)")
    print(f"  check / fairlearn: before {before['check'] / before['fairlearn']:.2f}x, after "
          f"{after['check'] / after['fairlearn']:.2f}x; check {before['check'] / after['check']:.2f}x faster; "
          f"mitigations {(before['check_mitigation'] - before['check']) / (after['check_mitigation'] - after['check']):.1f}x "
          "faster")
    print(f"  for scale: every group's confusion counts (what the bootstrap and permutation use) {after['counts']:.3f} s")
    print(f"  mitigation table, before: {before['mitigation_caption']}")
    print(f"  mitigation table, after:  {after['mitigation_caption']}")
    print(f"  demographic parity difference per model, before {before['mitigation_dp']}")
    print(f"  demographic parity difference per model, after  {after['mitigation_dp']}")
    print(f"\nbootstrap peak memory (tracemalloc) at {args.n_bootstrap} rows:")
    for name, b in (("before", before), ("after", after)):
        print(f"  {name:6s} bootstrap_auroc ({args.ood_resamples} resamples, {args.n_bootstrap} vs 500 scores): "
              f"{b['auroc_s']:.2f} s, peak {b['auroc_mib']:.0f} MiB, interval {b['auroc_interval']}; bootstrap_gaps "
              f"({args.resamples} resamples, 3 groups): {b['gaps_s']:.3f} s, peak {b['gaps_mib']:.2f} MiB")
    assert before["auroc_interval"] == after["auroc_interval"], "chunking changed the OOD interval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--n-bootstrap", type=int, default=500_000, help="rows of the bootstraps' memory figures")
    parser.add_argument("--ood-resamples", type=int, default=200, help="the ood check's default n_resamples")
    parser.add_argument("--before", default="42b0b3c", help="git revision to compare against (default: main before "
                        "the caps of issue 17: two MetricFrames per column, uncapped mitigations, one-shot bootstrap)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.n, args.n_bootstrap, args.ood_resamples, args.resamples)))
        return
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
    before_and_after(args)


if __name__ == "__main__":
    main()
