"""Scale-out efficiency of ``executor: ray`` on a local Ray cluster, 1 worker against N: shared by
``bench_ray.py`` (on its own) and ``bench_scale.py`` (after its per-check tables, so one run prints both).

Audits the demo's digits LeNet-5 (trained once into ``cache``) with several checks, three ways: the local
executor (one process), and ``executor: ray`` on a local cluster with 1 CPU (one worker) and with ``workers``
CPUs (that many workers). The cluster is started before the audit and timed apart (a long-lived cluster,
``--ray-address``, pays it once); the audit's time on it includes starting the worker processes and loading the
model in each. Every worker computes with one thread, and so does the local run, so all three give the same
numbers — checked before a ratio is printed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def _numbers(result: Any) -> list:
    return [(c.id, c.status, [m.model_dump() for m in c.metrics]) for c in result.checks]


def _audit(cfg: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run_audit(cfg)
    return time.perf_counter() - start, result


def scale_out(workers: int, checks: list[str], folder: Path, *, n_explain: int, seed: int,
              cache: Path | None = None) -> dict[str, float]:
    """Run the three audits, print their times, the speed-up and efficiency of ``workers`` workers over one
    and the bound the checks' durations set; return ``{"speedup", "efficiency", "bound"}``.

    Raises
    ------
    SystemExit
        A Ray run's statuses or metrics differ from the local executor's (no ratio is printed then).
    """
    import ray

    cache = cache or folder / "cache"
    sets = [f"select=[{','.join(checks)}]", "energy.track=false", "threads=1",
            f"checks.explanations.max_samples={n_explain}"]
    start = time.perf_counter()
    base = demo_config(folder / "out", name="digits", device="cpu", seed=seed, cache_dir=cache, sets=sets)
    print(f"digits LeNet-5 ready in {time.perf_counter() - start:.1f} s; checks: {', '.join(checks)}; "
          f"{os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)

    t_local, local = _audit(base)
    runs = {"local (1 process, 1 thread)": (t_local, local)}
    for n in (1, workers):
        start = time.perf_counter()
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        print(f"local Ray cluster with {n} CPU(s) started in {time.perf_counter() - start:.1f} s", flush=True)
        try:
            runs[f"ray, {n} worker(s)"] = _audit(base.model_copy(update={"executor": "ray"}))
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
    t1, tn = runs["ray, 1 worker(s)"][0], runs[f"ray, {workers} worker(s)"][0]
    speedup = t1 / tn
    total, longest = sum(durations.values()), max(durations.values())
    bound = total / max(longest, total / workers)
    print(f"\nspeed-up of {workers} workers over 1: {speedup:.2f}x, efficiency {speedup / workers:.0%} "
          f"(the checks' own durations allow at most {bound:.2f}x: the longest, {max(durations, key=durations.get)}, "
          f"takes {longest:.1f} of {total:.1f} s)")
    print(f"Ray over local with one worker: {t1 - t_local:+.1f} s (worker process start, model load, shipping)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}\n")
    print(MULTI_GPU)
    return {"speedup": speedup, "efficiency": speedup / workers, "bound": bound}
