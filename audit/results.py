"""Result objects: plain, frozen, JSON-serialisable data.

Everything a report shows comes from these objects, so any report can be re-rendered from
``results.json`` alone. The JSON Schema in ``audit/schema/results.schema.json`` is generated from
these models (``python -m audit.schema``) and a test keeps the two in step.

Versioning: ``SCHEMA_VERSION`` is ``MAJOR.MINOR``. Adding an optional field or a new check bumps
MINOR; renaming or removing a field, a check id or a metric name, or adding a value to a status
enumeration (a consumer that switches on it would mis-handle the new value) bumps MAJOR.

2.0: check status ``measured`` (the check ran and reported metrics, but no threshold judged any of
them: never a pass); summary status ``not_judged`` (a ``fail`` threshold set in the config could not
be judged, or nothing at all was judged); ``Summary.judged``, ``Summary.not_judged`` and
``Summary.on_not_judged``; ``ThresholdOutcome.group`` and ``ThresholdOutcome.detail`` (a threshold on
a per-group metric is judged on the worst group). 1.3 and 1.4 (``energy_errors``, ``probe``) are
included.

2.1: ``Provenance.execution``: the thread counts the audit computed with (``audit.threads``) and the
executor that ran its checks.
2.2: ``NotJudged.deselected`` (a threshold on a check left out by ``select`` / ``--checks``: listed, never blocking).

2.3: ``Provenance.model_info`` (model name, version, owner, architecture, parameters, input spec, training data).
2.4: figure kinds ``scatter`` (labelled points, not joined) and ``text_highlights`` (words shaded by a score).
2.5: ``Provenance.budget`` (the sample budget: quick, standard or thorough), ``CheckResult.sample_budget`` (the
check's effective rows, resamples, steps and queries) and ``CheckResult.notes`` (deprecated config keys).
2.6: ``Provenance.batch_size`` (rows of one model call, configured or derived from the input size); image figures
hold images of at most 64×64 pixels (``audit.images``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = "2.6"

#: Status of one check. ``pass``: at least one metric was judged against a threshold (from the config or a
#: built-in default) and every judged metric met its bound. ``measured``: the check ran and reported
#: metrics, but no threshold judged any of them — it is evidence, not a pass. ``warn``: a ``warn``
#: threshold was missed, a threshold could not be judged, or the check flags a concern (e.g. gradient
#: masking). ``fail``: a ``fail`` threshold was missed. ``error``: the check crashed. ``skipped``: it does
#: not apply (with the reason).
Status = Literal["pass", "measured", "warn", "fail", "error", "skipped"]
#: Order of severity, used to summarise many statuses into one.
STATUS_ORDER: dict[str, int] = {"pass": 0, "measured": 1, "skipped": 2, "warn": 3, "fail": 4, "error": 5}
#: Overall status of an audit: a check status, or ``not_judged`` when the gate is blocked because a
#: ``fail`` threshold set in the config could not be judged, or because nothing at all was judged.
SummaryStatus = Literal["pass", "measured", "warn", "not_judged", "fail", "error", "skipped"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Metric(_Frozen):
    """One number, with how it was obtained and how sure we are of it."""

    name: str = Field(description="Stable metric name, e.g. 'accuracy'.")
    value: float | None = Field(description="Point estimate; null when undefined (e.g. no samples).")
    ci_low: float | None = Field(default=None, description="Lower end of the confidence interval.")
    ci_high: float | None = Field(default=None, description="Upper end of the confidence interval.")
    ci_level: float | None = Field(default=None, description="Confidence level of the interval, e.g. 0.95.")
    n: int = Field(description="Number of samples the value was computed on.")
    method: str = Field(description="How the value and its interval were obtained.")
    provenance: Literal["measured", "estimated"] = Field(
        default="measured", description="'estimated' for modelled numbers (e.g. energy from TDP)."
    )
    unit: str | None = None
    higher_is_better: bool | None = None
    group: str | None = Field(default=None, description="Subgroup or class the value refers to, if any.")


class ThresholdOutcome(_Frozen):
    """A threshold (from the config or a check's built-in default) and what the metric did against it.

    ``note`` is set exactly when the threshold could not be judged (``passed`` is then false): the
    check was skipped or did not run, or the metric is undefined or was not reported.
    """

    metric: str
    min: float | None = None
    max: float | None = None
    level: Literal["fail", "warn"] = "fail"
    observed: float | None
    passed: bool
    source: Literal["config", "default"] = Field(
        description="Where the bound came from: 'config' (set by the user) or 'default' (the check's built-in condition).")
    note: str | None = Field(default=None, description="Why the threshold could not be judged, when it could not.")
    group: str | None = Field(
        default=None, description="For a metric reported per group (class, subgroup, attack, ...): the worst group "
                                  "in the bound's direction, whose value is 'observed'.")
    detail: str | None = Field(default=None, description="How 'observed' was chosen (e.g. the worst of 4 groups), or why a "
                                                         "missed fail threshold is only a warning ('within noise, ...').")


class Table(_Frozen):
    """Tabular evidence."""

    type: Literal["table"] = "table"
    title: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str | None = None


class Figure(_Frozen):
    """Figure evidence: the data to draw it from, never pixels. ``kind`` picks the renderer."""

    type: Literal["figure"] = "figure"
    kind: Literal["reliability_diagram", "confusion_matrix", "bar", "line", "scatter", "text_highlights",
                  "image_grid"]
    title: str
    data: dict[str, Any]
    caption: str | None = None


Evidence = Annotated[Table | Figure, Field(discriminator="type")]


class EnergyRecord(_Frozen):
    """Energy and carbon of a span of the audit (a check, or the whole run), from CodeCarbon."""

    duration_s: float
    energy_kwh: float
    co2_kg: float
    provenance: Literal["measured", "estimated"]
    sources: dict[str, str] = Field(description="Per component (cpu, gpu, ram): measured by what, or estimated how.")
    country_iso_code: str
    method: str = "CodeCarbon offline tracker (no network)"


class CheckResult(_Frozen):
    """What one check found."""

    id: str = Field(description="Stable check id, e.g. 'performance'.")
    category: str
    title: str
    status: Status
    summary: str = Field(description="One plain-language sentence.")
    dataset: str | None = Field(default=None, description="Name of the data set the check ran on.")
    n_samples: int | None = None
    metrics: list[Metric] = Field(default_factory=list)
    thresholds: list[ThresholdOutcome] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    method: str = ""
    limitations: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict, description="The check's validated config (effective values: "
                                                                     "the sample budget's preset under the config's keys).")
    sample_budget: dict[str, Any] = Field(
        default_factory=dict, description="The keys of the config that the sample budget sets (audit.budget), with "
                                          "the values this check ran with: caps on rows, resamples, steps, queries.")
    notes: list[str] = Field(default_factory=list, description="Notes on the config, e.g. a deprecated key and its name now.")
    duration_s: float = 0.0
    error: str | None = Field(default=None, description="Message of the exception when status is 'error'.")
    skip_reason: str | None = None
    energy: EnergyRecord | None = Field(default=None, description="Energy the check used, when energy tracking is on.")

    def metric(self, name: str, group: str | None = None) -> Metric:
        for m in self.metrics:
            if m.name == name and m.group == group:
                return m
        raise KeyError(f"check {self.id!r} has no metric {name!r}" + (f" for group {group!r}" if group else ""))


class FileRecord(_Frozen):
    """A file (or folder) the audit read, identified by its SHA-256."""

    role: str = Field(description="'model', 'data.eval', 'data.reference', 'data.ood', 'config', ...")
    path: str
    sha256: str
    format: str | None = None
    n_samples: int | None = None


class ThreadSettings(_Frozen):
    """The CPU threads an audit computed with (``audit.threads``)."""

    requested: int | None = Field(description="The config's `threads` (--threads); null: the default rule.")
    threads: int = Field(description="Threads used: torch's intra-op pool and each BLAS pool.")
    cores_available: int = Field(description="Cores this process may run on (CPU affinity, capped by a cgroup quota).")
    source: str = Field(description="Where the number came from.")
    torch_intra_op: int = Field(description="torch.get_num_threads() after setting it.")
    torch_inter_op: int = Field(description="torch.get_num_interop_threads() after setting it.")
    blas: dict[str, int] = Field(default_factory=dict, description="Threads of each BLAS/OpenMP pool threadpoolctl found.")
    notes: list[str] = Field(default_factory=list, description="What could not be set, and why.")


class Execution(_Frozen):
    """How the checks were executed: where, and with how many threads."""

    executor: Literal["local", "ray"] = Field(default="local", description="`local`: one process; `ray`: Ray tasks.")
    threads: ThreadSettings = Field(description="Thread counts of the process that ran the checks (each worker's, with Ray).")
    workers: int = Field(default=1, description="Processes that ran checks at the same time.")
    cluster: str | None = Field(default=None, description="With Ray: the cluster (local, or its address), its CPUs and Ray's version.")
    method: str = Field(default="", description="One paragraph for the report's method text.")


class ModelInfo(_Frozen):
    """What a reader needs to know about the audited model (``audit.identity``): it heads the report, the model
    card and the JUnit suite. ``None`` where nothing states it."""

    name: str = Field(description="model.name, or the model file's name (its folder's for a generic file name "
                                  "such as model.safetensors, or a Hugging Face folder).")
    name_source: Literal["config", "file"] = Field(description="'config' when model.name set it.")
    version: str | None = Field(default=None, description="model.version.")
    owner: str | None = Field(default=None, description="model.owner.")
    architecture: str | None = Field(default=None, description="The model's class or architecture (zoo name from "
                                                               "model.json, Hugging Face architectures, TorchScript "
                                                               "original class, torch class); null for a black box.")
    n_parameters: int | None = None
    input_kind: str | None = None
    input_shape: list[int] | None = Field(default=None, description="Shape of one input sample (null for raw text).")
    input_dtype: str | None = Field(default=None, description="Stored dtype of the evaluation inputs.")
    input_range: list[float] | None = Field(default=None, description="Valid range of raw inputs (model.preprocessing."
                                                                      "input_range); null when unset.")
    training_data: str | None = Field(default=None, description="Training data source, from the model.json sidecar.")
    training_data_sha256: str | None = Field(default=None, description="SHA-256 of the training data, from model.json.")
    training_samples: int | None = Field(default=None, description="Training samples, from model.json.")


class Provenance(_Frozen):
    """Everything needed to say how, where and on what the audit ran."""

    report_id: str
    tool_version: str
    started_at: str
    finished_at: str
    seed: int
    device: str
    hardware: dict[str, str]
    python: str
    platform: str
    libraries: dict[str, str]
    files: list[FileRecord]
    config: dict[str, Any]
    config_sha256: str
    model: dict[str, Any] = Field(description="Model facts from the adapter: kind, classes, parameters.")
    model_info: ModelInfo | None = Field(default=None, description="Name, version, owner, architecture, size, input "
                                                                   "and training data of the model (null in results "
                                                                   "written before it existed).")
    execution: Execution | None = Field(default=None, description="Executor and thread counts (schema 2.1).")
    budget: str | None = Field(default=None, description="The sample budget (quick, standard or thorough; null in "
                                                         "results written before it existed, schema 2.5).")
    batch_size: int | None = Field(default=None, description="Rows of one model call: the config's batch_size, or the one "
                                                             "derived from the input size when it sets none (null in "
                                                             "results written before it was recorded, schema 2.6).")


class ProbeResult(_Frozen):
    """What the model probe found before any check ran (``audit.probe``)."""

    n_rows: int = Field(description="Evaluation rows whose logits were checked for NaN and infinity.")
    nonfinite_rows: int = Field(description="Rows with a non-finite logit.")
    nonfinite_indices: list[int] = Field(default_factory=list, description="The first of them (row numbers in the data file).")
    excluded: bool = Field(default=False, description="Whether those rows were excluded from every check (model.allow_nonfinite).")
    n_repeat: int = Field(description="Rows of the seeded batch that was run repeatedly.")
    disagreement_rate: float = Field(description="Share of those rows whose predicted class was not the same on every evaluation.")
    max_abs_diff: float | None = Field(description="Largest absolute logit difference between evaluations; null when non-finite.")
    tolerance: float = Field(description="Differences up to this are float noise.")
    deterministic: bool = Field(description="Whether every difference was within the tolerance.")
    training_mode: bool | None = Field(description="Whether a torch (sub)module was in training mode; null for non-torch models.")
    findings: list[str] = Field(default_factory=list, description="Warnings for page one; any makes the audit at least 'warn'.")
    method: str = ""


class NotJudged(_Frozen):
    """A threshold that could not be judged, and whether it blocks the gate."""

    check: str = Field(description="Check id.")
    metric: str
    min: float | None = None
    max: float | None = None
    level: Literal["fail", "warn"]
    source: Literal["config", "default"]
    reason: str = Field(description="Why it could not be judged (check skipped or disabled, metric undefined, ...).")
    blocking: bool = Field(description="True for a 'fail' threshold from the config while on_not_judged is 'fail': "
                                       "the audit then exits 1.")
    deselected: bool = Field(default=False, description="Its check was not selected (select, --checks): left out by "
                                                         "intent, listed but never blocking and never a warning.")


class Summary(_Frozen):
    status: SummaryStatus = Field(description="Overall status; 'not_judged' when the gate is blocked because a "
                                              "configured 'fail' threshold could not be judged or nothing was judged.")
    counts: dict[str, int] = Field(description="Number of checks per status.")
    exit_code: int = Field(description="0 passed (warnings allowed); 1 a 'fail' threshold was missed, a configured "
                                       "'fail' threshold could not be judged, or nothing was judged (the last two "
                                       "unless on_not_judged is 'warn'); 3 a check errored.")
    judged: list[str] = Field(default_factory=list, description="Ids of the checks with at least one judged threshold.")
    not_judged: list[NotJudged] = Field(default_factory=list, description="Thresholds that could not be judged.")
    on_not_judged: Literal["fail", "warn"] = Field(
        default="fail", description="The config's on_not_judged: whether unjudged 'fail' thresholds block the gate.")

    @property
    def nothing_judged(self) -> bool:
        return not self.judged


class AuditResult(_Frozen):
    """The whole audit, as written to ``results.json``."""

    schema_version: str = SCHEMA_VERSION
    provenance: Provenance
    checks: list[CheckResult]
    summary: Summary
    attestations: dict[str, Any] = Field(
        default_factory=dict, description="Human statements copied from the config (not evidenced by the tool)."
    )
    footprint: EnergyRecord | None = Field(default=None, description="Energy and carbon of the whole audit run.")
    energy_errors: list[str] = Field(
        default_factory=list, description="Failures of the energy tracking (energy.track on): what they left "
                                          "unmeasured is missing from the results, never zero.")
    probe: ProbeResult | None = Field(default=None, description="The model probe run before any check (null in results "
                                                                "written before it existed).")

    @model_validator(mode="before")
    @classmethod
    def _judged_of_schema_1(cls, data: Any) -> Any:
        """A results.json of schema 1.x has no ``summary.judged``: derive it from the thresholds (a threshold
        without a note was judged), so re-rendering an old audit does not claim that nothing was judged."""
        if isinstance(data, dict) and str(data.get("schema_version", SCHEMA_VERSION)).startswith("1."):
            summary = data.get("summary")
            if isinstance(summary, dict) and "judged" not in summary:
                judged = [c.get("id") for c in data.get("checks") or [] if isinstance(c, dict)
                          and any(isinstance(t, dict) and t.get("note") is None for t in c.get("thresholds") or [])]
                data = {**data, "summary": {**summary, "judged": judged}}
        return data

    def check(self, check_id: str) -> CheckResult:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(f"no check {check_id!r} in this result")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> AuditResult:
        return cls.model_validate_json(text)


#: Start of the note of a ``fail`` threshold missed only by estimates that are not significant: judged, but a warning.
WITHIN_NOISE = "within noise"


def within_noise(threshold: ThresholdOutcome) -> bool:
    """Whether a missed ``fail`` threshold was missed only within noise (not significant): judged, recorded
    at ``warn`` level, ``detail`` saying why."""
    return bool(not threshold.passed and threshold.detail and threshold.detail.startswith(WITHIN_NOISE))


def is_judged(threshold: ThresholdOutcome) -> bool:
    """Whether the threshold was judged (met or missed), as opposed to not judged (``note`` set: check
    skipped or not run, metric undefined or not reported)."""
    return threshold.note is None


def effective_level(threshold: ThresholdOutcome) -> str | None:
    """The status a threshold imposes on its check: none when met; its level when missed (a ``fail`` missed
    only within noise is already recorded at ``warn``); ``warn`` when a threshold from the config could not
    be judged; none when a built-in default could not be judged (what the tool could not measure is not
    a risk of the model; the outcome still says it was not judged)."""
    if threshold.passed:
        return None
    if not is_judged(threshold):
        return "warn" if threshold.source == "config" else None
    return threshold.level


def summarise(checks: list[CheckResult], *, on_not_judged: Literal["fail", "warn"] = "fail",
              unrun: list[NotJudged] | None = None) -> Summary:
    """Overall status and exit code (DESIGN.md, exit codes; README, "What a verdict means").

    In order: a check that errored → ``error``, exit 3; a missed ``fail`` threshold → ``fail``, exit 1;
    a ``fail`` threshold from the config that could not be judged (its check skipped or not run, its
    metric undefined or missing), or no threshold judged at all → ``not_judged``, exit 1 — unless
    ``on_not_judged`` is ``"warn"``, which turns both into a warning (exit 0); a missed ``warn`` threshold
    or a warning check → ``warn``; otherwise ``pass`` when something was judged.

    Parameters
    ----------
    checks : list of CheckResult
    on_not_judged : {"fail", "warn"}
        The config's ``on_not_judged``.
    unrun : list of NotJudged, optional
        Thresholds the config sets on checks that did not run at all (disabled).
    """
    counts = {s: 0 for s in STATUS_ORDER}
    for c in checks:
        counts[c.status] += 1
    judged = [c.id for c in checks if any(is_judged(t) for t in c.thresholds)]
    not_judged = [NotJudged(check=c.id, metric=t.metric, min=t.min, max=t.max, level=t.level, source=t.source,
                            reason=t.note or "",
                            blocking=t.level == "fail" and t.source == "config" and on_not_judged == "fail")
                  for c in checks for t in c.thresholds if not is_judged(t)]
    not_judged += [u.model_copy(update={"blocking": u.level == "fail" and u.source == "config" and on_not_judged == "fail"
                                               and not u.deselected}) for u in unrun or []]
    blocked = any(u.blocking for u in not_judged) or (not judged and on_not_judged == "fail")
    soft = any(u.level == "fail" and u.source == "config" and not u.deselected for u in not_judged) or not judged
    if counts["error"]:
        status, code = "error", 3
    elif counts["fail"]:
        status, code = "fail", 1
    elif blocked:
        status, code = "not_judged", 1
    elif counts["warn"] or (soft and judged):
        status, code = "warn", 0
    elif judged:
        status, code = "pass", 0
    elif counts["measured"]:
        status, code = "measured", 0
    else:
        status, code = "skipped", 0
    return Summary(status=status, counts=counts, exit_code=code, judged=judged, not_judged=not_judged,
                   on_not_judged=on_not_judged)


def with_probe(summary: Summary, probe: ProbeResult | None) -> Summary:
    """A probe finding (non-determinism, excluded rows) makes the audit at least ``warn``."""
    if probe is not None and probe.findings and summary.status in ("pass", "measured", "skipped"):
        return summary.model_copy(update={"status": "warn"})
    return summary


def _major(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _unreal_metric(data: dict[str, Any]) -> str | None:
    """The first metric field of the raw file that is neither a finite number nor null (a string "NaN" would
    otherwise be coerced to a float; a genuine file writes an undefined value as null)."""
    for c in data.get("checks") or []:
        for m in (c.get("metrics") or []) if isinstance(c, dict) else []:
            for key in ("value", "ci_low", "ci_high", "ci_level"):
                v = m.get(key) if isinstance(m, dict) else None
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                    return f"metric {m.get('name')!r} of check {c.get('id')!r} has {key} {v!r}, not a number or null"
    return None


def inconsistencies(result: AuditResult) -> list[str]:
    """What in a loaded result contradicts the rest of it: a check status its threshold outcomes rule out,
    or a summary other than the one :func:`summarise` computes from the checks (schema 2: exactly; 1.x,
    whose verdict rules were older: the counts and the error/fail verdicts). Empty when consistent."""
    problems = []
    schema_2 = (_major(result.schema_version) or 0) >= 2
    for c in result.checks:
        judged = [t for t in c.thresholds if is_judged(t)]
        missed = [t for t in judged if not t.passed]
        if any(t.level == "fail" for t in missed) and c.status not in ("fail", "error"):
            problems.append(f"check {c.id!r} is '{c.status}' but missed a 'fail' threshold")
        elif c.status == "pass" and missed:
            problems.append(f"check {c.id!r} is 'pass' but missed a threshold")
        elif c.status == "pass" and schema_2 and not judged:
            problems.append(f"check {c.id!r} is 'pass' but no threshold was judged")
        elif c.status == "measured" and judged:
            problems.append(f"check {c.id!r} is 'measured' but a threshold was judged")
    s = result.summary
    if schema_2:
        ids = {c.id for c in result.checks}
        expected = with_probe(summarise(result.checks, on_not_judged=s.on_not_judged,
                                        unrun=[u for u in s.not_judged if u.check not in ids]), result.probe)
        if expected != s:
            diffs = [k for k in Summary.model_fields if getattr(expected, k) != getattr(s, k)]
            problems.append(f"the summary's {', '.join(diffs)} ({_show(s, diffs)}) is not what its checks give "
                            f"({_show(expected, diffs)})")
    else:
        counts = {k: v for k, v in s.counts.items() if v}
        actual: dict[str, int] = {}
        for c in result.checks:
            actual[c.status] = actual.get(c.status, 0) + 1
        verdict = ("error", 3) if actual.get("error") else ("fail", 1) if actual.get("fail") else None
        if counts != actual:
            problems.append(f"the summary's counts {counts} are not those of its checks {actual}")
        if verdict is not None and (s.status, s.exit_code) != verdict:
            problems.append(f"the summary is '{s.status}' (exit code {s.exit_code}) but its checks give "
                            f"'{verdict[0]}' (exit code {verdict[1]})")
        elif verdict is None and s.status in ("error", "fail"):
            problems.append(f"the summary is '{s.status}' but no check is")
    return problems


def _show(summary: Summary, keys: list[str]) -> str:
    shown = {k: getattr(summary, k) for k in keys if k in ("status", "exit_code", "judged", "on_not_judged")}
    return ", ".join(f"{k} {v!r}" for k, v in shown.items()) or "differs"


def load_results(path: Path) -> AuditResult:
    """Read a results.json for re-rendering or diffing, refusing what this code cannot vouch for: a file
    written by a newer major schema, a metric value that is not a number or null, and a file that
    contradicts itself (:func:`inconsistencies`: e.g. an edited verdict).

    Raises
    ------
    audit.errors.InputError
        The file is missing, unreadable, not a results.json, newer, or inconsistent.
    """
    from audit.errors import InputError

    if not path.is_file():
        raise InputError(f"results file {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{path} is not a deepaudit results.json ({first}).") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a deepaudit results.json (not a JSON object).")
    version = str(data.get("schema_version", SCHEMA_VERSION))
    major = _major(version)
    if major is None:
        raise InputError(f"{path} is not a deepaudit results.json (schema_version {version!r}).")
    if major > _major(SCHEMA_VERSION):  # type: ignore[operator]
        raise InputError(f"{path} has schema_version {version}, written by a newer deepaudit (this one reads "
                         f"up to {SCHEMA_VERSION}); upgrade deepaudit to re-render it.")
    unreal = _unreal_metric(data)
    if unreal:
        raise InputError(f"{path} is not a valid results.json: {unreal}; the file may have been edited.")
    try:
        result = AuditResult.model_validate(data)
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{path} is not a deepaudit results.json ({first}).") from None
    problems = inconsistencies(result)
    if problems:
        raise InputError(f"{path} is inconsistent: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                         + "; the file may have been edited: re-run the audit.")
    return result


class CompareEntry(_Frozen):
    """One model of a comparison: the base, a variant built from it, or another model file."""

    label: str
    kind: Literal["base", "variant", "model"]
    spec: str | None = Field(default=None, description="Variant spec (e.g. 'pruned:0.5') or model path.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="What was done to build the variant.")
    result: AuditResult


class ComparisonResult(_Frozen):
    """``deepaudit compare``: the same audit over a base model and its variants, side by side."""

    schema_version: str = SCHEMA_VERSION
    entries: list[CompareEntry]

    @property
    def base(self) -> CompareEntry:
        return self.entries[0]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)
