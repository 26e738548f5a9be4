"""Benchmark: scale-out efficiency of ``executor: ray`` on a local Ray cluster, 1 worker against N.

Audits the demo's digits LeNet-5 (trained once into ``--cache``) with several checks, three ways, in one
run: the local executor (one process), and ``executor: ray`` on a local cluster with 1 CPU (one worker) and
with ``--workers`` CPUs (that many workers); the work is ``benchmarks/_ray_scaleout.py``, which
``bench_scale.py`` also runs after its per-check tables. All three must give the same numbers before a ratio
is printed. It prints the wall time of each (the cluster's start-up timed apart), the speed-up and efficiency
of N workers over one, and the bound the checks' own durations set (the longest check is the least an audit
can take with any number of workers; checks are not split into shards).

    OMP_NUM_THREADS=1 python benchmarks/bench_ray.py --workers 2
    python benchmarks/bench_ray.py --checks performance,corruption,adversarial,explanations,ood,privacy
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _ray_scaleout import DEFAULT_CHECKS, scale_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="Workers of the scaled-out run (CPUs of its cluster).")
    parser.add_argument("--checks", default=DEFAULT_CHECKS, help="Checks to run, comma-separated.")
    parser.add_argument("--cache", type=Path, default=None, help="Where the demo model is trained (default: a temp folder).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-explain", type=int, default=36, help="Samples the explanations check explains.")
    args = parser.parse_args()
    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        scale_out(args.workers, checks, Path(tmp), n_explain=args.n_explain, seed=args.seed, cache=args.cache)


if __name__ == "__main__":
    main()
