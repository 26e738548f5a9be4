"""Benchmark: scale-out efficiency of ``executor: ray`` on a local Ray cluster, 1 worker against N.

Audits the demo's digits LeNet-5 (trained once into ``--cache``) with several checks, three ways, in one
run: the local executor (one process), and ``executor: ray`` on a local cluster with 1 CPU (one worker) and
with ``--workers`` CPUs (that many workers). The cluster is started before the audit and timed apart (a
long-lived cluster, ``--ray-address``, pays it once); the audit's time on it includes starting the worker
processes and loading the model in each. Every worker computes with one thread, and so does the local
run, so all three give the same numbers — the script checks that before it prints a ratio. It prints the
wall time of each (with the cluster's start-up, which a long audit amortises), the speed-up and efficiency
of N workers over one, and the bound the checks' own durations set (the longest check is the least an audit
can take with any number of workers; checks are not split into shards).

    OMP_NUM_THREADS=1 python benchmarks/bench_ray.py --workers 2
    python benchmarks/bench_ray.py --checks performance,corruption,adversarial,explanations,ood,privacy
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit.demo import demo_config  # noqa: E402
from audit.runner import run_audit  # noqa: E402

DEFAULT_CHECKS = ("performance,corruption,adversarial,explanations,ood,privacy,privacy.extraction,"
                  "poisoning.backdoor_simulation")

#: What the multi-GPU paragraph of the output says (the numbers are the ones measured above it).
MULTI_GPU = """\
On a multi-GPU cluster: start Ray on every node (`ray start --head` on one, `ray start --address HEAD:6379` on
the others), install deepaudit with the CUDA build of torch on each node and put the model and data on a path
every node can read (a shared filesystem, or the same copy at the same path), then run
`deepaudit audit --config audit.yaml --executor ray --ray-address auto --device cuda`. Each worker reserves
one GPU (`ray.gpus_per_task`, default 1 with a cuda device) and `ray.cpus_per_task` CPUs (raise it to the node's
cores per GPU so data loading and the CPU-side parts of the attacks keep up). The unit of work is a whole
check, so an audit uses at most as many GPUs as it has checks, and it cannot finish faster than its longest
check (Neural Cleanse or the explanations on a large image model); `deepaudit compare` runs one model per
worker. Each worker loads the model once and then runs checks back to back, so the start-up measured here
(cluster and worker processes, model load) is paid once per worker, not per check."""


def _numbers(result) -> list:  # noqa: ANN001
    return [(c.id, c.status, [m.model_dump() for m in c.metrics]) for c in result.checks]


def _audit(cfg) -> tuple[float, object]:  # noqa: ANN001
    start = time.perf_counter()
    result = run_audit(cfg)
    return time.perf_counter() - start, result


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
        cache = args.cache or Path(tmp) / "cache"
        sets = [f"select=[{','.join(checks)}]", "energy.track=false", "threads=1",
                f"checks.explanations.max_samples={args.n_explain}"]
        start = time.perf_counter()
        base = demo_config(Path(tmp) / "out", name="digits", device="cpu", seed=args.seed, cache_dir=cache, sets=sets)
        print(f"digits LeNet-5 ready in {time.perf_counter() - start:.1f} s; checks: {', '.join(checks)}; "
              f"{os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f} at the start")

        import ray

        t_local, local = _audit(base)
        runs = {"local (1 process, 1 thread)": (t_local, local)}
        for workers in (1, args.workers):
            start = time.perf_counter()
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
            print(f"local Ray cluster with {workers} CPU(s) started in {time.perf_counter() - start:.1f} s")
            try:
                runs[f"ray, {workers} worker(s)"] = _audit(base.model_copy(update={"executor": "ray"}))
            finally:
                ray.shutdown()
        for label, (_, result) in runs.items():
            if _numbers(result) != _numbers(local):
                raise SystemExit(f"{label}: the numbers differ from the local executor's; no ratio printed.")
        print("all three runs gave the same statuses and metrics\n")

        durations = {c.id: c.duration_s for c in local.checks}
        print(f"{'check':<32}{'local s':>10}")
        for cid, d in durations.items():
            print(f"{cid:<32}{d:>10.1f}")
        print()
        for label, (t, result) in runs.items():
            print(f"{label:<32}{t:>8.1f} s   {result.provenance.execution.method[:90]}…")
        t1, tn = runs["ray, 1 worker(s)"][0], runs[f"ray, {args.workers} worker(s)"][0]
        speedup = t1 / tn
        total, longest = sum(durations.values()), max(durations.values())
        bound = total / max(longest, total / args.workers)
        print(f"\nspeed-up of {args.workers} workers over 1: {speedup:.2f}x, efficiency {speedup / args.workers:.0%} "
              f"(the checks' own durations allow at most {bound:.2f}x: the longest, {max(durations, key=durations.get)}, "
              f"takes {longest:.1f} of {total:.1f} s)")
        print(f"Ray over local with one worker: {t1 - t_local:+.1f} s (worker process start, model load, shipping)")
        print(f"load average at the end {os.getloadavg()[0]:.1f}\n")
        print(MULTI_GPU)


if __name__ == "__main__":
    main()
