"""The runner: from a validated config to an :class:`~audit.results.AuditResult`.

It owns the cross-cutting work once: seeding, device, loading and validating model and data,
timing each check, turning a crash into ``error`` and a non-applicable check into ``skipped``,
and judging metrics against thresholds. It never renders and never writes files.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import random
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit.budget import DEFAULT_BATCH, batch_size_for, budget_keys
from audit.config import AuditConfig, DataSpec, ThresholdSpec, validate_check_config
from audit.context import AuditContext, ProgressFactory
from audit.data import AuditDataset, file_sha256, load_dataset
from audit.energy import AuditTracker
from audit.errors import InputError, SkipCheck
from audit.identity import model_info
from audit.probe import probe_model
from audit.registry import Check, CheckOutput, get_check, list_checks
from audit.threads import apply_threads, describe_threads
from audit.results import (
    STATUS_ORDER,
    AuditResult,
    CheckResult,
    Execution,
    FileRecord,
    Metric,
    NotJudged,
    Provenance,
    WITHIN_NOISE,
    ThresholdOutcome,
    ThreadSettings,
    effective_level,
    is_judged,
    summarise,
    with_probe,
)
from models.adapter import ModelAdapter, TokenizedTextAdapter
from models.errors import ModelInputError
from models.loaders import load_model, read_sidecar

TOOL_NAME = "deepaudit"
LIBRARIES = ("torch", "numpy", "scikit-learn", "transformers", "captum", "shap", "fairlearn",
             "adversarial-robustness-toolbox", "onnxruntime", "pydantic")


def tool_version() -> str:
    try:
        return metadata.version(TOOL_NAME)
    except metadata.PackageNotFoundError:
        return "0.1.0+checkout"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def load_inputs(cfg: AuditConfig) -> tuple[ModelAdapter, dict[str, AuditDataset]]:
    """Load the model and every data set, and check that they fit together.

    Raises
    ------
    InputError
        With one line naming the problem, for every mismatch the runner can detect before any
        check runs: unreadable files, shapes, labels, classes.
    """
    spec = cfg.model
    try:
        adapter = load_model(
            spec.path, format=spec.format, model_class=spec.model_class, init_args=spec.init_args,
            allow_pickle=spec.allow_pickle, device=cfg.device, input_kind=spec.input_kind,
            class_names=spec.class_names, mean=spec.preprocessing.mean, std=spec.preprocessing.std,
            input_range=spec.preprocessing.input_range,
        )
    except ModelInputError as exc:
        raise InputError(str(exc)) from None
    model_names = adapter.class_names or None
    datasets: dict[str, AuditDataset] = {}
    for role in ("eval", "reference", "ood"):
        dspec: DataSpec | None = getattr(cfg.data, role)
        if dspec is not None:
            datasets[role] = load_dataset(dspec, role, class_names=model_names, seed=cfg.seed,
                                          batch_size=cfg.batch_size or DEFAULT_BATCH)
    ev = datasets["eval"]
    if isinstance(adapter, TokenizedTextAdapter) and not isinstance(ev.inputs, list):
        adapter = adapter.inner  # the data holds token ids: audit the model on ids, without its tokenizer
    if adapter.input_kind is None:
        if ev.input_kind is None:
            raise InputError("cannot tell the input kind from the data; set model.input_kind (image, tabular, text, sequence).")
        adapter.input_kind = ev.input_kind
    if adapter.input_kind == "text" and not isinstance(ev.inputs, list):
        raise InputError("the model takes text but data.eval has no text; set data.eval.text_column.")
    if not isinstance(ev.inputs, list) and not np.issubdtype(ev.inputs.dtype, np.floating):
        adapter.differentiable = False  # integer token ids: no input gradients
    _dry_run(adapter, ev)
    if not model_names and ev.class_names:
        if len(ev.class_names) != adapter.n_classes:
            raise InputError(
                f"data.eval has {len(ev.class_names)} classes {ev.class_names[:10]} but the model outputs "
                f"{adapter.n_classes} logits; set model.class_names."
            )
        adapter.class_names = list(ev.class_names)
    for role, ds in datasets.items():
        if ds.target is not None and ds.target.size and int(ds.target.max()) >= adapter.n_classes:
            bad = sorted({int(v) for v in ds.target[ds.target >= adapter.n_classes]})[:10]
            raise InputError(
                f"data.{role}: labels {bad} are outside the model's {adapter.n_classes} classes (0..{adapter.n_classes - 1}); "
                "fix the target column or check that this is the right model."
            )
    return adapter, datasets


def _dry_run(adapter: ModelAdapter, ds: AuditDataset) -> None:
    """Run two samples through the model, so a shape mismatch is a clear input error."""
    sample = ds.inputs[:2]
    shape = f"{len(sample)} texts" if isinstance(sample, list) else f"inputs of shape {tuple(sample.shape)}"
    try:
        with torch.no_grad():
            out = adapter.logits(adapter.to_batch(sample))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"the model cannot take data.eval ({shape}, kind {adapter.input_kind}): {first}. "
            "Check that the data matches the model's expected input shape."
        ) from None
    if out.dim() != 2 or out.shape[0] != len(sample):
        raise InputError(f"the model returned shape {tuple(out.shape)} for {shape}; it must return logits (batch, classes).")
    if adapter.class_names and out.shape[1] != len(adapter.class_names):
        raise InputError(
            f"the model outputs {out.shape[1]} logits but {len(adapter.class_names)} class names are given; fix model.class_names."
        )


def enabled_checks(cfg: AuditConfig) -> list[str]:
    """Check ids to run, in registry order: the selected ones (``select``, ``--checks``) when there is a
    selection — selecting a check runs it whatever its ``enabled`` says —, else every enabled check."""
    if cfg.select is not None:
        return [check_id for check_id in list_checks() if check_id in cfg.select]
    out = []
    for check_id in list_checks():
        section = cfg.checks.get(check_id)
        cls = get_check(check_id)
        enabled = section.get("enabled", True) if section is not None else cls.default_enabled
        if enabled:
            out.append(check_id)
    return out


def _within(spec: ThresholdSpec, value: float) -> bool:
    return bool((spec.min is None or value >= spec.min) and (spec.max is None or value <= spec.max))


def judge(output: CheckOutput, thresholds: dict[str, ThresholdSpec], defaults: dict[str, ThresholdSpec]
          ) -> tuple[str, list[ThresholdOutcome]]:
    """Status from the thresholds: missing a ``fail`` threshold fails, a ``warn`` one warns.

    ``thresholds`` come from the config and override the check's built-in ``defaults`` of the same
    metric name. A default whose metric this run did not report at all (e.g. the text-only
    ``flip_rate`` on an image model) does not apply and is left out; a config threshold on such a metric
    is not judged. A threshold on a metric reported per group (class, subgroup, attack) is judged on
    the worst group in the bound's direction (:func:`judge_threshold`).

    A threshold that cannot be judged (metric undefined — value ``None`` or NaN: too few samples, no
    groups large enough, a component that did not run — or not reported) is not passed and carries a
    note. One from the config warns (whether it blocks the gate is for
    :func:`audit.results.summarise`); a built-in default does not: what the tool could not measure is
    not a risk of the model, and the note says it was not judged.

    A ``fail`` threshold missed only by estimates the check found not significant
    (``CheckOutput.noise_tests``: e.g. a fairness gap inside its permutation null) is judged and missed
    at ``warn`` level, its ``detail`` saying so ("within noise").

    The status is ``measured`` when no threshold was judged and nothing else warns: the check's
    numbers are evidence, not a pass.
    """
    emitted = {m.name for m in output.metrics}
    merged = {k: (v, "default") for k, v in defaults.items() if k in emitted}
    merged.update({k: (v, "config") for k, v in thresholds.items()})
    outcomes = []
    for name, (spec, source) in merged.items():
        outcome = judge_threshold(name, spec, source, output.metrics, output.undecided_groups)
        if not outcome.passed and is_judged(outcome) and spec.level == "fail":
            beyond = [t for t in output.noise_tests.get(name, []) if not _within(spec, t.value)]
            if beyond and not any(t.significant for t in beyond):
                noise = (f"{WITHIN_NOISE}, not significant (a fail threshold, reported as a warning): "
                         + "; ".join(t.text for t in beyond[:3]))
                outcome = outcome.model_copy(update={
                    "level": "warn", "detail": noise + (f"; {outcome.detail}" if outcome.detail else "")})
        outcomes.append(outcome)
    status: str = output.status_floor
    for t in outcomes:
        level = effective_level(t)
        if level is not None and STATUS_ORDER[level] > STATUS_ORDER[status]:
            status = level
    if status == "pass" and not any(is_judged(t) for t in outcomes):
        status = "measured"
    return status, outcomes


def _undefined(value: float | None) -> bool:
    return value is None or bool(np.isnan(value))


def judge_threshold(name: str, spec: ThresholdSpec, source: str, metrics: list[Metric],
                    undecided: dict[str, str] | None = None) -> ThresholdOutcome:
    """Judge one threshold against the metrics of a check.

    A headline metric (``group`` None) of that name is judged directly. A metric reported only per
    group is judged on its worst group: the one furthest below ``min`` / above ``max`` (for a
    ``min`` bound the lowest value, for a ``max`` bound the highest). Groups whose value is undefined,
    and groups the check marks as shown but not deciding (``undecided``, e.g. too small), are left out
    and named in ``detail``; when no group is left the threshold is not judged.
    """
    base = {"metric": name, "min": spec.min, "max": spec.max, "level": spec.level, "source": source}
    undecided = undecided or {}
    found = [m for m in metrics if m.name == name]
    small = [str(m.group) for m in found if m.group is not None and m.group in undecided]
    found = [m for m in found if m.group is None or m.group not in undecided]
    if not found and small:
        return ThresholdOutcome(**base, observed=None, passed=False,
                                note=f"only groups that do not decide ({undecided[small[0]]}): {', '.join(small[:5])}")
    if not found:
        return ThresholdOutcome(**base, observed=None, passed=False, note="the check did not report this metric")
    headline = next((m for m in found if m.group is None), None)
    group = detail = None
    if headline is not None:
        observed = headline.value
        if _undefined(observed):
            return ThresholdOutcome(**base, observed=None, passed=False,
                                    note="undefined for this data (too few samples or groups, or a component that did "
                                         "not run: see the metric)")
    else:
        defined = [m for m in found if not _undefined(m.value)]
        left_out = [str(m.group) for m in found if _undefined(m.value)]
        if not defined:
            return ThresholdOutcome(**base, observed=None, passed=False,
                                    note=f"undefined for every one of its {len(found)} groups")

        def badness(m: Metric) -> float:
            v = float(m.value)  # type: ignore[arg-type]
            return max(spec.min - v if spec.min is not None else -np.inf, v - spec.max if spec.max is not None else -np.inf)

        worst = max(defined, key=badness)
        observed, group = worst.value, worst.group
        direction = ("lowest" if spec.max is None else "highest" if spec.min is None else "furthest out of bounds")
        detail = f"worst of {len(defined)} groups ({direction} value): {group}"
        if small:
            detail += f"; {len(small)} group(s) shown but not deciding ({undecided[small[0]]}): {', '.join(small[:5])}"
        if left_out:
            detail += f"; {len(left_out)} undefined group(s) left out: {', '.join(left_out[:5])}" + (
                ", …" if len(left_out) > 5 else "")
    return ThresholdOutcome(**base, observed=observed, passed=_within(spec, observed), group=group, detail=detail)


def not_run_outcomes(thresholds: dict[str, ThresholdSpec], reason: str) -> list[ThresholdOutcome]:
    """Outcomes of the config thresholds of a check that did not produce metrics (skipped or crashed)."""
    return [ThresholdOutcome(metric=name, min=spec.min, max=spec.max, level=spec.level, observed=None, passed=False,
                             source="config", note=reason) for name, spec in thresholds.items()]


def unrun_thresholds(cfg: AuditConfig, ran: set[str]) -> list[NotJudged]:
    """Thresholds the config sets on checks that do not run at all: disabled, off by default, or not selected
    (``select``, ``--checks``). Those of checks not selected are marked ``deselected``: left out by intent,
    they are listed but never block the gate or warn."""
    out = []
    for check_id, section in cfg.checks.items():
        if check_id in ran or not section or not section.get("thresholds"):
            continue
        deselected = cfg.select is not None and check_id not in cfg.select
        explicitly = section.get("enabled", True) is False
        reason = (f"not selected (select / --checks: {', '.join(cfg.select or [])})" if deselected else
                  "the check is disabled (enabled: false)" if explicitly else
                  f"the check did not run (off by default: set checks.{check_id}.enabled: true)")
        for metric, spec in (section.get("thresholds") or {}).items():
            level = spec.get("level", "fail") if isinstance(spec, dict) else "fail"
            bounds = {k: spec.get(k) for k in ("min", "max")} if isinstance(spec, dict) else {}
            out.append(NotJudged(check=check_id, metric=metric, level=level, source="config", reason=reason,
                                 blocking=False, deselected=deselected, **bounds))
    return out


def run_check(check: Check, ctx: AuditContext) -> CheckResult:
    """Run one check; a crash becomes ``error``, a non-applicable check ``skipped``."""
    cls = type(check)
    config = check.config.model_dump(mode="json")
    base = {"id": cls.id, "category": cls.category, "title": cls.title, "config": config,
            "sample_budget": {k: config[k] for k in budget_keys(cls.id) if k in config},
            "notes": check.config.deprecation_notes(cls.id)}
    start = time.perf_counter()
    try:
        output = check.run(ctx)
    except SkipCheck as exc:
        return CheckResult(**base, status="skipped", summary=f"Skipped: {exc}", skip_reason=str(exc),
                           thresholds=not_run_outcomes(check.config.thresholds, f"the check was skipped: {exc}"),
                           duration_s=time.perf_counter() - start)
    except InputError:
        raise  # bad input found by a check (a config value, a column): the audit cannot run, exit 2
    except Exception as exc:  # noqa: BLE001 - the runner's job: one crash never aborts the audit
        message = f"{type(exc).__name__}: {exc}".strip()
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return CheckResult(**base, status="error", summary=f"The check crashed: {message}",
                           error=f"{message} (at {Path(where.filename).name}:{where.lineno})",
                           thresholds=not_run_outcomes(check.config.thresholds, "the check crashed"),
                           duration_s=time.perf_counter() - start)
    duration = time.perf_counter() - start
    status, outcomes = judge(output, check.config.thresholds, getattr(cls, "default_thresholds", {}))
    return CheckResult(**base, status=status, summary=output.summary, dataset=output.dataset,
                       n_samples=output.n_samples, metrics=output.metrics, thresholds=outcomes,
                       evidence=output.evidence, method=output.method, limitations=output.limitations,
                       duration_s=duration)


def run_checks(cfg: AuditConfig, ctx: AuditContext, checks: list[Check], *, tracker: AuditTracker | None = None,
               on_start: Any = None, on_check: Any = None) -> list[CheckResult]:
    """Run ``checks`` one after the other on ``ctx``, each from the audit seed (so a check's random draws do not
    depend on the checks before it, on this executor or on a Ray worker), its energy measured by ``tracker``.

    ``on_start(check_id, index, total)`` is called as each check starts, ``on_check(result)`` as it ends."""
    results = []
    for index, check in enumerate(checks, start=1):
        if on_start is not None:
            on_start(check.id, index, len(checks))
        seed_everything(cfg.seed)
        if tracker is None:
            result = run_check(check, ctx)
        else:
            failures = len(tracker.errors)
            with tracker.task(check.id) as record:
                result = run_check(check, ctx)
            if record:
                result = result.model_copy(update={"energy": record[0]})
            else:  # a missing reading is said, never shown as nothing used
                why = tracker.errors[-1] if len(tracker.errors) > failures or not tracker.available else (
                    "CodeCarbon returned no reading for it")
                result = result.model_copy(update={"limitations": [
                    *result.limitations, f"The energy of this check was not measured: {why}."]})
        results.append(result)
        if on_check is not None:
            on_check(result)
    return results


def local_execution(threads: ThreadSettings) -> Execution:
    """The provenance of checks run one after the other in this process."""
    return Execution(executor="local", threads=threads, method=(
        "Checks ran one after the other in one process (executor local), each starting from the audit seed. "
        + describe_threads(threads)))


def _hardware(device: torch.device) -> dict[str, str]:
    hw = {"machine": platform.machine(), "cpu": _cpu_name(), "cpu_count": str(os.cpu_count() or 1)}
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
        hw["cuda"] = str(torch.version.cuda)
    return hw


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _libraries() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


def run_audit(cfg: AuditConfig, *, progress: ProgressFactory | None = None,
              on_check: Any = None, on_start: Any = None) -> AuditResult:
    """Load the model and data of ``cfg``, run every enabled check and return the result.

    Parameters
    ----------
    cfg : AuditConfig
        A validated config (``audit.config.load_config``).
    progress : callable, optional
        Progress factory for long loops (see ``AuditContext``).
    on_check : callable, optional
        Called with each ``CheckResult`` as it completes.
    on_start : callable, optional
        Called with ``(check_id, index, total)`` (index from 1) as each check starts.

    Raises
    ------
    InputError
        Bad input: nothing has been written.
    """
    checks = build_checks(cfg)
    if cfg.executor == "ray":
        from audit.executor import check_executor

        check_executor(cfg)  # not installed, or no cluster at its address: exit 2 before any work
    apply_threads(cfg.threads)  # before the model is loaded: torch's inter-op pool can be sized only until then
    adapter, datasets = load_inputs(cfg)
    return audit_adapter(cfg, adapter, datasets, checks=checks, progress=progress, on_check=on_check,
                         on_start=on_start, executor=cfg.executor)


def build_checks(cfg: AuditConfig) -> list[Check]:
    """The enabled checks of ``cfg`` with their validated configs (config errors surface here)."""
    return [get_check(cid)(validate_check_config(cid, cfg.checks.get(cid) or {}, budget=cfg.budget))
            for cid in enabled_checks(cfg)]


def probed_context(cfg: AuditConfig, adapter: ModelAdapter, datasets: dict[str, AuditDataset], checks: list[Check],
                   *, progress: ProgressFactory | None = None, variant: bool = False) -> AuditContext:
    """The context the checks read: every check's preflight passed, the model probed (``audit.probe``)
    and its evaluation logits cached.

    Raises
    ------
    InputError
        A config value the model or data refutes; non-finite logits (unless ``model.allow_nonfinite``);
        output width that changes between batches.
    """
    model_path = Path(cfg.model.path)
    meta = read_sidecar(model_path) if not variant and model_path.is_file() else None  # not for variants
    ctx = AuditContext(adapter, dict(datasets), seed=cfg.seed, progress=progress,
                       batch_size=batch_size_for(cfg.batch_size, datasets["eval"].inputs),
                       country_iso_code=cfg.energy.country_iso_code, model_meta=meta)
    for check in checks:  # config values only the model or data can refute: exit 2 before any work
        check.preflight(ctx)
    ctx.probe = probe_model(ctx, allow_nonfinite=cfg.model.allow_nonfinite)
    return ctx


def _identity(cfg: AuditConfig, model_file: FileRecord | None) -> tuple[str | None, str | None, str | None]:
    """``(name, version, owner)`` of the audited model: the config's for the model it names and for a variant
    built from it (``<name> [<spec>]``, as ``deepaudit compare`` labels it); none for another model file."""
    spec = cfg.model
    if model_file is None or model_file.path == str(spec.path):
        return spec.name, spec.version, spec.owner
    base = f"{spec.path} ["
    if model_file.path.startswith(base) and model_file.path.endswith("]"):
        return (f"{spec.name} [{model_file.path[len(base):-1]}]" if spec.name else None), spec.version, spec.owner
    return None, None, None


def audit_adapter(cfg: AuditConfig, adapter: ModelAdapter, datasets: dict[str, AuditDataset], *,
                  checks: list[Check] | None = None, progress: ProgressFactory | None = None, on_check: Any = None,
                  model_file: FileRecord | None = None, model_facts: dict[str, Any] | None = None,
                  ctx: AuditContext | None = None, on_start: Any = None, executor: str = "local") -> AuditResult:
    """Run the checks on an already loaded adapter (``deepaudit compare`` audits variants this way).

    ``model_file`` and ``model_facts`` describe the model in the provenance block when it is not
    the file named in ``cfg`` (e.g. a variant built in memory). ``ctx`` is a context from
    :func:`probed_context` when the caller probed the model already (compare probes every model first).
    ``executor="ray"`` runs the checks on Ray workers that build the model from ``cfg``
    (``audit.executor``): only for the model ``cfg`` names, as :func:`run_audit` does.
    """
    started = _now()
    threads = apply_threads(cfg.threads)
    seed_everything(cfg.seed)
    checks = build_checks(cfg) if checks is None else checks
    if ctx is None:
        ctx = probed_context(cfg, adapter, datasets, checks, progress=progress, variant=model_file is not None)
    if executor == "ray":
        from audit.executor import run_checks_on_ray

        results, footprint, energy_errors, execution = run_checks_on_ray(cfg, ctx, checks, on_start=on_start,
                                                                         on_check=on_check)
    else:
        tracker = AuditTracker(cfg.energy.country_iso_code) if cfg.energy.track else None
        try:
            results = run_checks(cfg, ctx, checks, tracker=tracker, on_start=on_start, on_check=on_check)
        finally:
            footprint = tracker.close() if tracker is not None else None
        energy_errors = list(tracker.errors) if tracker is not None else []
        execution = local_execution(threads)
    config_dump = cfg.model_dump(mode="json", by_alias=True)
    config_sha = hashlib.sha256(json.dumps(config_dump, sort_keys=True).encode()).hexdigest()
    if model_file is None:
        model_file = FileRecord(role="model", path=str(cfg.model.path), sha256=file_sha256(Path(cfg.model.path)),
                                format=adapter.format)
    files = [model_file]
    files += [FileRecord(role=f"data.{role}", path=ds.path, sha256=ds.sha256, format=ds.format, n_samples=len(ds))
              for role, ds in datasets.items()]
    facts = adapter.describe()
    module = adapter.torch_model
    if module is not None:
        facts["n_parameters"] = int(sum(p.numel() for p in module.parameters()))
    facts.update(model_facts or {})
    info = model_info(_identity(cfg, model_file), adapter, datasets["eval"].inputs,
                      module=module,
                      n_parameters=facts.get("n_parameters"), meta=ctx.model_meta, path=model_file.path)
    finished = _now()
    report_id = hashlib.sha256(f"{config_sha}{files[0].sha256}{started}".encode()).hexdigest()[:16]
    provenance = Provenance(
        report_id=report_id, tool_version=tool_version(), started_at=started, finished_at=finished,
        seed=cfg.seed, device=str(adapter.device), hardware=_hardware(adapter.device),
        python=platform.python_version(), platform=platform.platform(terse=True), libraries=_libraries(),
        files=files, config=config_dump, config_sha256=config_sha, model=facts, model_info=info,
        execution=execution, budget=cfg.budget, batch_size=ctx.batch_size,
    )
    summary = summarise(results, on_not_judged=cfg.on_not_judged,
                        unrun=unrun_thresholds(cfg, {c.id for c in checks}))
    return AuditResult(provenance=provenance, checks=results, summary=with_probe(summary, ctx.probe),
                       attestations={k: a.model_dump(exclude_none=True) for k, a in cfg.attestations.items()},
                       footprint=footprint, energy_errors=energy_errors,
                       probe=ctx.probe)
