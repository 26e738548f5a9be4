"""How many CPU threads an audit computes with, set once for torch and the BLAS behind numpy.

Left alone, torch starts one intra-op thread per logical CPU of the machine plus an inter-op pool of
the same size, and OpenBLAS (numpy, SciPy, scikit-learn) another pool of that size: on a machine whose
cores are shared (a CI runner, a container with a CPU quota, Ray workers side by side) those threads
oversubscribe the cores and spin against each other. A full audit on a shared 2-core machine took 696 s
with torch's defaults and 181 s with one thread (issue 17).

The rule (``threads`` in the config, ``--threads N`` on the command line):

* **Default**: the cores available to this process — ``os.sched_getaffinity`` (a ``taskset`` or a
  container's cpuset), capped by a cgroup CPU quota (``cpu.max``) — or ``OMP_NUM_THREADS`` when the
  environment sets a smaller number (a CI job, a Ray worker, a batch scheduler that set it knew better).
* **Never more than the cores available**: a larger request is capped and the provenance says so.
* torch's **intra-op** pool and the **BLAS** pools (through threadpoolctl, when installed) each get
  ``threads``: the audit calls them one after the other from one Python thread, never at the same time,
  so at most ``threads`` threads compute at once. torch's **inter-op** pool gets 1: the audit runs no
  inter-op parallel work (no ``torch.jit.fork``), so a larger pool only adds idle threads. torch lets the
  inter-op size be set once per process, before any parallel work; when that has already happened the
  size in force is recorded, with a note.

What was set is recorded in ``results.json`` (``provenance.execution.threads``) and the report's
provenance.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from audit.results import ThreadSettings

#: Where a cgroup v2 CPU quota is read (``"max 100000"`` when there is none).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cores_available() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _env_threads() -> int | None:
    """``OMP_NUM_THREADS`` when it is a positive integer."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def resolve_threads(requested: int | None, *, cores: int | None = None) -> tuple[int, str]:
    """The thread count to use and where it came from, by the module's rule."""
    cores = cores_available() if cores is None else cores
    if requested is not None:
        if requested > cores:
            return cores, f"threads {requested} capped at the {cores} cores available to the process"
        return requested, "threads (config or --threads)"
    env = _env_threads()
    if env is not None and env < cores:
        return env, f"OMP_NUM_THREADS={env} (fewer than the {cores} cores available)"
    return cores, f"the {cores} cores available to the process (CPU affinity and quota)"


def apply_threads(requested: int | None) -> ThreadSettings:
    """Set torch's and the BLAS libraries' thread pools by the module's rule and say what is in force.

    ``requested`` is the config's ``threads`` (``None``: the default). Safe to call more than once per
    process; torch's inter-op pool keeps its first size (recorded with a note).
    """
    cores = cores_available()
    threads, source = resolve_threads(requested, cores=cores)
    torch.set_num_threads(threads)
    notes = []
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # torch allows it once per process, before any parallel work
            notes.append(f"torch's inter-op pool was already started with {torch.get_num_interop_threads()} threads "
                         "in this process and cannot be resized (the audit runs no inter-op work)")
    blas: dict[str, int] = {}
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        notes.append("threadpoolctl is not installed: the BLAS behind numpy keeps its own thread count")
    else:
        threadpool_limits(limits=threads)
        for pool in threadpool_info():
            blas[f"{pool['internal_api']} ({pool['prefix']})"] = int(pool["num_threads"])
    return ThreadSettings(requested=requested, threads=threads, cores_available=cores, source=source,
                          torch_intra_op=torch.get_num_threads(), torch_inter_op=torch.get_num_interop_threads(),
                          blas=blas, notes=notes)


def describe_threads(settings: ThreadSettings) -> str:
    """One sentence for the report's method text."""
    pools = "".join(f", {name} {n}" for name, n in settings.blas.items())
    notes = "".join(f" Note: {n}." for n in settings.notes)
    return (f"{settings.threads} CPU thread(s), from {settings.source}: torch intra-op {settings.torch_intra_op}, "
            f"inter-op {settings.torch_inter_op}{pools}.{notes}")
