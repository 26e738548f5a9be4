"""Scale-out on Ray (``executor: ray``): independent checks, and in ``compare`` the models, run as Ray
work on a local or an existing cluster, with the same results as the local executor.

How the work is split, and why the results equal the local run's:

* **The driver first** loads the model and data, runs every check's preflight and the model probe
  (``audit.probe``), exactly as the local executor does: bad input exits 2 before any worker starts, and
  the probe's evaluation logits are computed once. Nothing else runs on the driver.
* **Workers build the model from the config.** Each worker is a Ray actor that loads the model and data
  from the config's paths itself (``audit.runner.load_inputs``) — no weights over the wire — and receives
  the probe's cache (the evaluation logits, rows excluded by ``model.allow_nonfinite``, the probe result;
  ``AuditContext.shipped_state``), so no worker repeats the probe. Model and data paths must be readable
  from every node of the cluster, and its nodes need deepaudit installed.
* **Checks are the unit of work**, handed to the next free worker in registry order (``ray.util.ActorPool``),
  and merged in that fixed order. Checks on one worker share its context's cache, as they do locally.
* **Seeds**: every check starts from the audit seed (``seed_everything``) and draws its own generators
  from (seed, check id) (``AuditContext.rng``), on either executor, so a check's random draws depend on
  neither the worker nor the checks that ran before it. In ``compare`` every model is audited from the same
  seed (a paired comparison), on either executor. A check is never split into shards, so there is no shard
  component. The numbers equal the local executor's when a worker computes with as many threads as the
  local process (floating-point sums split over a different number of threads can differ in the last bits).
* **Threads and CPUs**: each worker reserves ``ray.cpus_per_task`` CPUs and computes with that many torch
  and BLAS threads (``audit.threads``); a local cluster gets ``ray.num_cpus`` CPUs — by default ``threads``,
  the cores available to the process — so the audit never uses more cores than the local executor would.
  With ``device: cuda`` each worker reserves one GPU (``ray.gpus_per_task``) and Ray gives it its own.
* **Energy**: each worker measures its checks with its own CodeCarbon tracker (process mode); the audit's
  footprint is the sum over workers, labelled estimated when more than one worker ran (hardware counters
  read by concurrent workers on one machine overlap).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audit.config import AuditConfig
from audit.context import AuditContext
from audit.errors import InputError
from audit.registry import Check
from audit.results import CheckResult, EnergyRecord, Execution, ThreadSettings
from audit.threads import describe_threads, resolve_threads

#: What to install when Ray is missing.
RAY_INSTALL = "pip install 'deepaudit[ray]'"


def require_ray() -> Any:
    """The ``ray`` module; ``InputError`` (exit 2) with the install line when it is not installed."""
    try:
        import ray
    except ImportError:
        raise InputError(f"executor ray needs Ray, an optional extra that is not installed; install it with: "
                         f"{RAY_INSTALL}") from None
    return ray


#: Seconds to wait for a TCP connection to a cluster address before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


def check_executor(cfg: AuditConfig) -> None:
    """What ``executor: ray`` needs, checked before any work (exit 2): Ray installed, and an address that
    something listens at — Ray itself retries an unreachable address for minutes."""
    if cfg.executor != "ray":
        return
    require_ray()
    address = cfg.ray.address
    if not address or address == "auto":  # auto: Ray finds the local cluster's session or says there is none
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"ray.address {address!r} (--ray-address) must be auto, HOST:PORT or ray://HOST:PORT.")
    import socket

    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise InputError(f"ray.address {address!r} (--ray-address): nothing answers at {host}:{port} ({exc}); start "
                         "the cluster with 'ray start --head' or leave the address out to start a local one.") from None


def _code_root() -> str:
    """The folder the driver imports deepaudit from (this file's), so a local cluster's workers import the
    same code, also from a checkout."""
    return str(Path(__file__).resolve().parents[1])


@contextlib.contextmanager
def ray_session(cfg: AuditConfig) -> Iterator[Any]:
    """Connect to ``cfg.ray.address`` or start a local cluster; stop what this call started.

    A cluster the caller already started (``ray.is_initialized()``, e.g. a notebook's or a test's) is
    used as it is and left running.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if cfg.ray.address:
            ray.init(address=cfg.ray.address, **quiet)
        else:
            cpus = cfg.ray.num_cpus or resolve_threads(cfg.threads)[0]
            import os

            path = os.pathsep.join(p for p in (_code_root(), os.environ.get("PYTHONPATH")) if p)
            ray.init(num_cpus=cpus, runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)
    except ConnectionError as exc:
        raise InputError(f"ray.address {cfg.ray.address!r} (--ray-address): cannot connect to a Ray cluster there "
                         f"({exc}); start one with 'ray start --head' or leave the address out to start a local one."
                         ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _task_options(cfg: AuditConfig) -> dict[str, float]:
    gpus = cfg.ray.gpus_per_task
    if gpus is None:
        gpus = 1.0 if cfg.device.startswith("cuda") else 0.0
    return {"num_cpus": cfg.ray.cpus_per_task, "num_gpus": gpus}


def _worker_config(cfg: AuditConfig) -> AuditConfig:
    """The config a worker builds from: its threads are the CPUs it reserves, and a ``cuda:N`` device is
    ``cuda`` there (Ray gives each worker its own GPU)."""
    update: dict[str, Any] = {"threads": cfg.ray.cpus_per_task}
    if cfg.device.startswith("cuda:"):
        update["device"] = "cuda"
    return cfg.model_copy(update=update)


class CheckWorker:
    """A Ray actor (``ray.remote(CheckWorker)``): the model and data loaded once from the config, the
    driver's probe state received, then any number of checks run on that context."""

    def __init__(self, cfg: AuditConfig, state: dict[str, Any]) -> None:
        from audit.energy import AuditTracker
        from audit.runner import build_checks, load_inputs
        from audit.threads import apply_threads

        self.cfg = cfg
        self.threads = apply_threads(cfg.threads)
        adapter, datasets = load_inputs(cfg)
        self.ctx = AuditContext(adapter, datasets, seed=cfg.seed, batch_size=state["batch_size"],
                                country_iso_code=cfg.energy.country_iso_code)
        self.ctx.receive_state(state)
        self.checks = {c.id: c for c in build_checks(cfg)}
        self.tracker = AuditTracker(cfg.energy.country_iso_code) if cfg.energy.track else None

    def run(self, check_id: str) -> CheckResult:
        from audit.runner import run_checks

        return run_checks(self.cfg, self.ctx, [self.checks[check_id]], tracker=self.tracker)[0]

    def close(self) -> tuple[EnergyRecord | None, list[str], ThreadSettings]:
        footprint = self.tracker.close() if self.tracker is not None else None
        return footprint, list(self.tracker.errors) if self.tracker is not None else [], self.threads


def _unwrap(ray: Any, exc: BaseException) -> BaseException:
    """A worker's bad-input error as itself (exit 2, its one line), anything else as it came."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayError) and isinstance(cause, InputError):
        return cause
    return exc


def _cluster_text(ray: Any, cfg: AuditConfig) -> str:
    cpus = int(ray.cluster_resources().get("CPU", 0))
    where = f"the cluster at {cfg.ray.address}" if cfg.ray.address else "a local cluster"
    return f"{where} with {cpus} CPUs (Ray {ray.__version__})"


def _concurrency(ray: Any, cfg: AuditConfig) -> int:
    """Workers the cluster can run at once: its CPUs (and GPUs, when workers reserve them) per worker."""
    resources = ray.cluster_resources()
    workers = resources.get("CPU", 1) // cfg.ray.cpus_per_task
    gpus = _task_options(cfg)["num_gpus"]
    if gpus:
        workers = min(workers, resources.get("GPU", 0) // gpus)
    return max(1, int(workers))


def run_checks_on_ray(cfg: AuditConfig, ctx: AuditContext, checks: list[Check], *, on_start: Any = None,
                      on_check: Any = None) -> tuple[list[CheckResult], EnergyRecord | None, list[str], Execution]:
    """Run ``checks`` on Ray actors that rebuild ``ctx``'s model from ``cfg``; results in ``checks`` order.

    ``ctx`` is the driver's probed context: its :meth:`~audit.context.AuditContext.shipped_state` goes to
    every worker. ``on_start(check_id, index, total)`` is called as a check is handed to a worker,
    ``on_check(result)`` in ``checks`` order. Returns the results, the audit's footprint, energy errors and
    the execution record.
    """
    started = time.perf_counter()
    with ray_session(cfg) as ray:
        from ray.util import ActorPool

        n_workers = min(len(checks), _concurrency(ray, cfg)) or 1
        state = ray.put(ctx.shipped_state())
        worker_cfg = _worker_config(cfg)
        actor = ray.remote(CheckWorker).options(**_task_options(cfg))
        workers = [actor.remote(worker_cfg, state) for _ in range(n_workers)]
        results: list[CheckResult] = []
        try:
            def submit(worker: Any, index: int) -> Any:
                if on_start is not None:
                    on_start(checks[index].id, index + 1, len(checks))
                return worker.run.remote(checks[index].id)

            for result in ActorPool(workers).map(submit, range(len(checks))):
                results.append(result)
                if on_check is not None:
                    on_check(result)
            closed = ray.get([w.close.remote() for w in workers])
        except ray.exceptions.RayError as exc:
            raise _unwrap(ray, exc) from None
        finally:
            for w in workers:
                ray.kill(w)
        cluster = _cluster_text(ray, cfg)
    footprint = _sum_footprints([c[0] for c in closed], time.perf_counter() - started)
    errors = [e for c in closed for e in c[1]]
    threads = closed[0][2]
    method = (f"Checks ran as Ray tasks on {n_workers} worker(s) of {cluster}, each worker building the model from "
              "the config and receiving the model probe's cached evaluation logits from the driver; every check "
              "started from the audit seed and drew its generators from (seed, check), as on the local executor, "
              f"and results were merged in check order. Each worker: {describe_threads(threads)}")
    return results, footprint, errors, Execution(executor="ray", threads=threads, workers=n_workers,
                                                 cluster=cluster, method=method)


def _sum_footprints(records: list[EnergyRecord | None], duration_s: float) -> EnergyRecord | None:
    """The audit's footprint: the sum of the workers' readings; estimated when workers ran side by side."""
    parts = [r for r in records if r is not None]
    if not parts or len(parts) < len(records):
        return None  # a worker without a reading: its energy is missing, so no total (never a partial sum)
    measured = len(parts) == 1 and parts[0].provenance == "measured"
    sources = dict(parts[0].sources)
    return EnergyRecord(
        duration_s=duration_s, energy_kwh=sum(r.energy_kwh for r in parts), co2_kg=sum(r.co2_kg for r in parts),
        provenance="measured" if measured else "estimated", sources=sources,
        country_iso_code=parts[0].country_iso_code,
        method=f"Sum of the CodeCarbon offline trackers of {len(parts)} Ray worker(s) (process mode)"
               + ("" if len(parts) == 1 else "; estimated: hardware counters read by workers running side by side "
                  "overlap"))


def _audit_model_task(cfg: AuditConfig, kind: str, spec: str) -> tuple[Any, Any]:
    """One model of a comparison, built from the config and audited in a Ray worker."""
    from audit.compare import audit_model
    from audit.threads import apply_threads

    apply_threads(cfg.threads)
    return audit_model(cfg, kind, spec)


def audit_models_on_ray(cfg: AuditConfig, wanted: list[tuple[str, str]], audited: Any) -> None:
    """``compare`` on Ray: each (kind, spec) of ``wanted`` built, probed and audited by its own Ray task from
    the config (``audit.compare.audit_model``); ``audited(kind, spec, result, metadata)`` is called in
    ``wanted`` order, each result with its execution record."""
    with ray_session(cfg) as ray:
        task = ray.remote(_audit_model_task).options(**_task_options(cfg))
        worker_cfg = _worker_config(cfg)
        refs = [task.remote(worker_cfg, kind, spec) for kind, spec in wanted]
        workers = min(len(wanted), _concurrency(ray, cfg))
        cluster = _cluster_text(ray, cfg)
        try:
            for (kind, spec), ref in zip(wanted, refs):
                result, meta = ray.get(ref)
                local = result.provenance.execution
                execution = Execution(
                    executor="ray", threads=local.threads, workers=workers, cluster=cluster,
                    method=(f"This model was built from the config, probed and audited by one Ray task on {cluster}, "
                            f"{workers} model(s) at a time; inside it: {local.method}"))
                audited(kind, spec, result.model_copy(update={"provenance": result.provenance.model_copy(
                    update={"execution": execution})}), meta)
        except ray.exceptions.RayError as exc:
            for ref in refs:
                with contextlib.suppress(Exception):  # a finished task cannot be cancelled: nothing to stop
                    ray.cancel(ref, force=True)
            raise _unwrap(ray, exc) from None
