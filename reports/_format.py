"""Formatting shared by every output format: numbers, intervals, thresholds, the verdict.

Every renderer (HTML, JUnit, Markdown) formats through these functions so one number reads the
same everywhere. They return plain text; escaping is the job of each renderer.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml

from audit.results import (
    AuditResult,
    CheckResult,
    Metric,
    NotJudged,
    ThresholdOutcome,
    effective_level,
    is_judged,
    within_noise,
)

#: C0 and C1 control characters except tab and line feed (NUL, ESC that starts terminal sequences,
#: backspace, ...), DEL, and the bidirectional overrides and isolates that make text display in
#: another order than it reads ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

#: Shown for a missing value (``None``).
MISSING = "—"
#: Order the statuses are listed in (most severe last, as in ``audit.results.STATUS_ORDER``).
STATUSES = ("pass", "measured", "warn", "fail", "error", "skipped")
#: What a status word means, for legends and tooltips.
STATUS_MEANING = {
    "pass": "judged against at least one bound, and every judged metric met it",
    "measured": "measured, not judged: no threshold (from the config or a built-in default) applies to its metrics",
    "warn": "a warn-level bound was missed, a bound could not be judged, or the check flags a concern",
    "fail": "a fail-level bound was missed",
    "error": "the check crashed; its evidence is missing",
    "skipped": "does not apply to this model or data (reason given)",
    "not_judged": "a fail-level bound set in the config could not be judged, or nothing was judged",
}
#: Confidence level the reports assume when a metric does not say otherwise.
DEFAULT_CI_LEVEL = 0.95


def clean_text(text: object) -> str:
    """``str(text)`` without control characters; tab and line feed are kept, carriage returns become line feeds.

    Data, class names and exception text can carry NUL, ESC (terminal escape sequences) or
    bidirectional overrides; none of them belongs in a report.
    """
    return _CONTROL.sub("", str(text).replace("\r\n", "\n").replace("\r", "\n"))


def fmt_num(value: Any) -> str:
    """Format a number the same way in every report.

    Parameters
    ----------
    value : Any
        ``None``, a bool, an int or a float (anything else is returned as ``str(value)``).

    Returns
    -------
    str
        ``"—"`` for ``None``; ``"yes"``/``"no"`` for bools; ints as ints; floats with four
        decimals (``0.9123``); whole numbers and values from 1,000 up with grouped digits
        (``13,706``, ``1,234.5``, ``110,510``); four significant digits in exponent form when
        tiny or astronomically large (``1.235e-05``); ``"NaN"``, ``"∞"`` and ``"−∞"`` for
        non-finite floats.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        magnitude = abs(value)
        if magnitude >= 1e15 or (value != 0 and magnitude < 1e-3):
            return f"{value:.4g}"
        if magnitude >= 1000 or (magnitude > 1 and value.is_integer()):
            # Counts and large quantities (parameters, samples/s) read better as grouped digits.
            return f"{value:,.0f}" if value.is_integer() or magnitude >= 1e5 else f"{value:,.1f}"
        return f"{value:.4f}"
    return str(value)


def fmt_cell(value: Any) -> str:
    """Format one cell of an evidence table: numbers via :func:`fmt_num`, containers as JSON."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return fmt_num(value)
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def fmt_value(metric: Metric) -> str:
    """A metric's value with its unit, e.g. ``"12.5000 J"``."""
    text = fmt_num(metric.value)
    if metric.unit and metric.value is not None:
        text = f"{text} {metric.unit}"
    return text


def fmt_ci(metric: Metric) -> str:
    """A metric's interval as ``"[low, high]"``, with its level when it is not 95 %.

    Returns ``"—"`` when the metric has no interval.
    """
    if metric.ci_low is None and metric.ci_high is None:
        return MISSING
    text = f"[{fmt_num(metric.ci_low)}, {fmt_num(metric.ci_high)}]"
    if metric.ci_level is not None and not math.isclose(metric.ci_level, DEFAULT_CI_LEVEL):
        text += f" ({metric.ci_level:.0%})"
    return text


def fmt_metric(metric: Metric) -> str:
    """One-line summary of a metric: ``"accuracy (group a) 0.9100 [0.8800, 0.9300] n=500"``."""
    name = metric.name if metric.group is None else f"{metric.name} ({metric.group})"
    text = f"{name} {fmt_value(metric)}"
    if metric.ci_low is not None or metric.ci_high is not None:
        text += f" {fmt_ci(metric)}"
    return f"{text} n={metric.n}"


def fmt_duration(seconds: float) -> str:
    """A check's duration, e.g. ``"1.23 s"``."""
    return f"{seconds:.2f} s"


def fmt_bound(threshold: ThresholdOutcome | NotJudged) -> str:
    """The bound a threshold sets: ``"≥ 0.9000"``, ``"≤ 0.0500"`` or ``"0.1000 … 0.2000"``."""
    if threshold.min is not None and threshold.max is not None:
        return f"{fmt_num(threshold.min)} … {fmt_num(threshold.max)}"
    if threshold.min is not None:
        return f"≥ {fmt_num(threshold.min)}"
    if threshold.max is not None:
        return f"≤ {fmt_num(threshold.max)}"
    return "no bound"


def source_word(source: str) -> str:
    """``"config"`` or ``"built-in default"``: where a bound came from."""
    return "config" if source == "config" else "built-in default"


def _metric_label(threshold: ThresholdOutcome) -> str:
    return threshold.metric if threshold.group is None else f"{threshold.metric} [worst group: {threshold.group}]"


def describe_threshold(threshold: ThresholdOutcome) -> str:
    """Plain sentence for a threshold, e.g.
    ``"accuracy = 0.8100, required ≥ 0.9000 (fail level, config): missed"``; a per-group metric names
    its worst group."""
    outcome = "met" if threshold.passed else (
        "missed, " + (threshold.detail or "") if within_noise(threshold) else
        "not judged: " + threshold.note if threshold.note else "missed")
    return (f"{_metric_label(threshold)} = {fmt_num(threshold.observed)}, required {fmt_bound(threshold)} "
            f"({threshold.level} level, {source_word(threshold.source)}): {outcome}")


def judgement(threshold: ThresholdOutcome) -> str:
    """What was required and what was found, e.g. ``"accuracy 0.9650 < required 0.9900 (config)"``,
    ``"ece 0.0310 meets required ≤ 0.1000 (built-in default)"`` or
    ``"accuracy required ≥ 0.9000 (config): not judged — the check was skipped: ..."``."""
    name, src = _metric_label(threshold), source_word(threshold.source)
    if not is_judged(threshold):
        return f"{name} required {fmt_bound(threshold)} ({src}): not judged — {threshold.note}"
    value = threshold.observed
    if threshold.passed:
        return f"{name} {fmt_num(value)} meets required {fmt_bound(threshold)} ({src})"
    noise = f", {threshold.detail}" if within_noise(threshold) else ""
    if threshold.min is not None and value is not None and value < threshold.min:
        return f"{name} {fmt_num(value)} < required {fmt_num(threshold.min)} ({src}){noise}"
    return f"{name} {fmt_num(value)} > required {fmt_num(threshold.max)} ({src}){noise}"


def leveled_judgement(threshold: ThresholdOutcome) -> str:
    """:func:`judgement` led by the level of a missed threshold, so every miss says metric, observed value,
    bound and level: ``"FAIL accuracy 0.9650 < required 0.9900 (config)"``, ``"WARN ece 0.1500 > required
    0.1000 (config)"`` (a ``fail`` bound missed only within noise is a ``WARN``); met and not judged as they are."""
    level = effective_level(threshold) if is_judged(threshold) else None
    return f"{status_word(level)} {judgement(threshold)}" if level else judgement(threshold)


def describe_not_judged(item: NotJudged) -> str:
    """One line for a threshold that could not be judged: check, metric, bound, source and reason."""
    return (f"{item.check}: {item.metric} required {fmt_bound(item)} ({item.level} level, {source_word(item.source)}): "
            f"not judged — {item.reason}")


def judged_against(check: CheckResult) -> str:
    """What a check was judged against, in a few words: the judged bounds, or why it was not judged."""
    judged = [t for t in check.thresholds if is_judged(t)]
    if judged:
        return "; ".join(f"{_metric_label(t)} {fmt_bound(t)} ({source_word(t.source)})" for t in judged)
    if check.status in ("skipped", "error"):
        return "not judged (the check did not run)"
    return "not judged: no threshold applies to its metrics"


NOTHING_JUDGED = ("nothing was judged: no check had a threshold (from the config or a built-in default) that "
                  "could be judged")


def missed_lines(result: AuditResult, levels: tuple[str, ...] = ("fail", "warn")) -> list[str]:
    """One line per missed (judged) threshold whose level is in ``levels``, in check order: level, check, metric,
    observed value, bound and source — ``"WARN corruption: relative_mce 0.2500 > required 0.2000 (built-in
    default)"``; a ``fail`` bound missed only within noise is a ``WARN``."""
    return [f"{status_word(level)} {c.id}: {judgement(t)}" for c in result.checks for t in c.thresholds
            if is_judged(t) and not t.passed and (level := effective_level(t)) in levels]


def gate_lines(result: AuditResult) -> list[str]:
    """One line per reason the audit did not pass: each missed ``fail`` threshold, each ``fail``
    threshold from the config that could not be judged, nothing judged at all, each crashed check.
    What ``deepaudit audit --quiet`` prints to stderr."""
    lines = missed_lines(result, levels=("fail",))
    summary = result.summary
    lines += [f"NOT JUDGED {describe_not_judged(u)}" for u in summary.not_judged if u.blocking]
    if not summary.judged and summary.on_not_judged == "fail":
        lines.append(f"NOT JUDGED: {NOTHING_JUDGED} (set thresholds, or on_not_judged: warn to accept that).")
        # Often because the checks asked for were skipped: their reasons hold the fix (e.g. --sensitive COLUMN).
        lines += [f"SKIPPED {c.id}: {c.skip_reason or c.summary.removeprefix('Skipped: ')}"
                  for c in result.checks if c.status == "skipped"]
    lines += [f"ERROR {c.id}: {c.error or c.summary}" for c in result.checks if c.status == "error"]
    return lines


def threshold_outcome(threshold: ThresholdOutcome) -> str:
    """``"met"``, ``"missed"``, ``"missed, within noise"`` (not significant: a warning) or ``"not judged"``
    (an undefined or unreported metric, a check that did not run)."""
    if threshold.passed:
        return "met"
    if within_noise(threshold):
        return "missed, within noise"
    return "not judged" if threshold.note else "missed"


def missed_thresholds(check: CheckResult, level: str | None = None) -> list[ThresholdOutcome]:
    """Thresholds of ``check`` that were not met, optionally only those of one ``level``."""
    return [t for t in check.thresholds if not t.passed and (level is None or t.level == level)]


def top_risks(result: AuditResult, limit: int = 5) -> list[dict[str, str]]:
    """The most severe findings, for page one: each ``{"status", "check", "anchor", "text"}``.

    Order: the model probe's findings (non-determinism, excluded rows), checks that errored (their evidence is missing); missed ``fail`` thresholds, ``fail``
    thresholds from the config that could not be judged while they block the gate, and an audit
    where nothing was judged; missed ``warn`` thresholds and other thresholds that could not be
    judged; then warning checks without a missed threshold (e.g. gradient masking suspected, small
    groups) with their summary. A check that is only skipped or measured is never a risk.
    """
    ranked: list[tuple[int, int, dict[str, str]]] = []
    summary = result.summary
    blocking = {(u.check, u.metric) for u in summary.not_judged if u.blocking}
    if result.probe is not None:  # a non-deterministic model's every number is suspect: first
        ranked += [(0, 0, {"check": "Model probe", "anchor": "probe-warning", "status": "warn", "text": f})
                   for f in result.probe.findings]
    for i, check in enumerate(result.checks, start=1):
        where = {"check": check.title, "anchor": anchor(i, check.id)}
        if check.status == "error":
            ranked.append((0, i, {**where, "status": "error",
                                  "text": "the check crashed, so this risk is not evidenced: " + (check.error or check.summary)}))
            continue
        missed = missed_thresholds(check)
        for t in missed:
            if effective_level(t) is None:
                continue  # a built-in default the tool could not judge: not a risk of the model
            if is_judged(t):
                rank, status = (1, "fail") if effective_level(t) == "fail" else (2, "warn")
            else:
                rank, status = (1, "not_judged") if (check.id, t.metric) in blocking else (2, "warn")
            ranked.append((rank, i, {**where, "status": status, "text": describe_threshold(t)}))
        if check.status == "warn" and not missed:
            ranked.append((3, i, {**where, "status": "warn", "text": check.summary}))
    ran = {c.id for c in result.checks}
    for u in summary.not_judged:
        if u.check not in ran and not u.deselected:  # a check left out by --checks is no risk
            ranked.append((1 if u.blocking else 2, len(result.checks) + 1,
                           {"check": u.check, "anchor": "overview", "status": "not_judged" if u.blocking else "warn",
                            "text": describe_not_judged(u)}))
    if not summary.judged:
        ranked.append((1, 0, {"check": "the audit", "anchor": "overview",
                              "status": "not_judged" if summary.on_not_judged == "fail" else "warn",
                              "text": f"{NOTHING_JUDGED}; every number below is measured, not judged"}))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in ranked[:limit]]


def key_metrics(check: CheckResult, limit: int = 5) -> list[Metric]:
    """The metrics worth showing in a one-line overview of ``check``.

    Overall (ungrouped) metrics that a threshold refers to come first, then the other overall
    metrics, in the check's order. When a check reports only per-group metrics, its first ones
    are used.

    Parameters
    ----------
    check : CheckResult
        The check.
    limit : int
        At most this many metrics are returned.

    Returns
    -------
    list of Metric
    """
    overall = [m for m in check.metrics if m.group is None]
    if not overall:
        return list(check.metrics[:limit])
    gated = {t.metric for t in check.thresholds}
    ordered = [m for m in overall if m.name in gated] + [m for m in overall if m.name not in gated]
    return ordered[:limit]


def status_word(status: str) -> str:
    """The status as the word every report writes: ``"PASS"``, ``"FAIL"``, ``"MEASURED"``, ``"NOT JUDGED"``, ..."""
    return status.replace("_", " ").upper()


def _count(result: AuditResult, status: str) -> int:
    counts = result.summary.counts
    if status in counts:
        return int(counts[status])
    return sum(1 for c in result.checks if c.status == status)


def _of(k: int, n: int) -> str:
    if k == n:
        return "the only check" if n == 1 else f"all {n} checks"
    return f"{k} of {n} check{'' if n == 1 else 's'}"


def verdict(result: AuditResult) -> str:
    """The overall verdict as one sentence, e.g. ``"FAIL — 1 of 3 checks missed a threshold"``.

    Parameters
    ----------
    result : AuditResult
        The audit; its ``summary.status`` decides the word, the counts the rest.

    Returns
    -------
    str
        The status word, a dash, what the checks of that status did, and in brackets how many
        checks had each other notable status.
    """
    n = len(result.checks)
    summary = result.summary
    status = summary.status
    blocking = [u for u in summary.not_judged if u.blocking]
    if status == "not_judged":
        if blocking:
            k = len(blocking)
            text = (f"{k} fail threshold{'s' if k != 1 else ''} set in the config could not be judged "
                    f"({', '.join(f'{u.check}.{u.metric}' for u in blocking[:3])}{', …' if k > 3 else ''})")
        else:
            text = NOTHING_JUDGED
        return f"{status_word(status)} — {text}"
    if n == 0:
        return f"{status_word(status)} — no checks ran"
    counts = {s: _count(result, s) for s in STATUSES}
    k = counts.get(status, 0)
    was = "was" if k == 1 else "were"
    what = {
        "error": "could not be completed",
        "fail": "missed a threshold",
        "warn": "raised a warning; no fail threshold was missed",
        "pass": "passed",
        "measured": f"{was} measured; nothing was judged (on_not_judged: warn)",
        "skipped": f"{was} skipped",
    }[status]
    text = f"{_of(k, n)} {what}"
    probed = result.probe is not None and bool(result.probe.findings)
    if probed and status == "warn" and k == 0:  # the warning is the probe's alone
        text = "the model probe raised a warning; no check warned or failed"
    soft = status == "warn" and any(u.level == "fail" and u.source == "config" and not u.deselected
                                    for u in summary.not_judged)
    if soft and k == 0 and not probed:  # the warning is the unjudged fail thresholds' alone
        text = "no check warned or failed"
    extra = [f"{counts[s]} {label}" for s, label in
             (("fail", "failed"), ("warn", "warned"), ("measured", "measured, not judged"), ("skipped", "skipped"))
             if counts[s] and s != status]
    if extra:
        text += f" ({', '.join(extra)})"
    if probed and not (status == "warn" and k == 0):
        text += "; the model probe raised a warning"
    if soft:
        text += "; fail thresholds that could not be judged are warnings (on_not_judged: warn)"
    deselected = [u for u in summary.not_judged if u.deselected]
    if deselected:
        k = len({u.check for u in deselected})
        text += (f"; thresholds on {k} check{'s' if k != 1 else ''} not selected (--checks) were not judged: "
                 f"{', '.join(dict.fromkeys(u.check for u in deselected))}")
    return f"{status_word(status)} — {text}"


def model_path(result: AuditResult) -> str:
    """The audited model's path(s) from the file records, or the adapter's facts, or ``"—"``."""
    paths = [f.path for f in result.provenance.files if f.role == "model"]
    if paths:
        return ", ".join(paths)
    for key in ("path", "name", "kind"):
        value = result.provenance.model.get(key)
        if value:
            return str(value)
    return MISSING


def model_name(result: AuditResult) -> str:
    """The audited model's name (``model.name``, or from its file: ``provenance.model_info``); for a
    results.json written before model_info existed, the same default from the file path."""
    info = result.provenance.model_info
    if info is not None:
        return info.name
    from audit.identity import default_model_name

    paths = [f.path for f in result.provenance.files if f.role == "model"]
    return default_model_name(paths[0]) if paths else model_path(result)


def model_title(result: AuditResult) -> str:
    """Name and version, as a report heads with it: ``"digits-lenet 1.2.0"``."""
    info = result.provenance.model_info
    version = info.version if info is not None else None
    return f"{model_name(result)} {version}" if version else model_name(result)


def model_details(result: AuditResult) -> list[tuple[str, str]]:
    """What a reader needs to know about the model, as (label, text) rows: name, version, owner,
    architecture, parameters, input, training data, intended use, file. "not stated" where nothing says."""
    info = result.provenance.model_info
    files = [f for f in result.provenance.files if f.role == "model"]
    purpose = result.attestations.get("intended_purpose") if isinstance(result.attestations, dict) else None
    statement = purpose.get("statement") if isinstance(purpose, dict) else None
    rows = [("Name", model_name(result))]
    if info is None:
        rows.append(("Details", "not recorded (results.json written before model details existed)"))
    else:
        shape = "×".join(str(d) for d in info.input_shape) if info.input_shape else None
        rng = f"range [{fmt_num(info.input_range[0])}, {fmt_num(info.input_range[1])}]" if info.input_range else \
            "range not set (model.preprocessing.input_range)"
        parts = [info.input_kind or "kind unknown", f"shape {shape} per sample" if shape else None, info.input_dtype, rng]
        training = ", ".join(p for p in (info.training_data, f"{info.training_samples:,} samples"
                                         if info.training_samples is not None else None,
                                         f"SHA-256 {info.training_data_sha256}" if info.training_data_sha256 else None)
                             if p) or NOT_STATED
        rows += [("Version", info.version or NOT_STATED), ("Owner", info.owner or NOT_STATED),
                 ("Architecture", info.architecture or "not known (a black box: ONNX or no torch module)"),
                 ("Parameters", f"{info.n_parameters:,}" if info.n_parameters is not None else "not counted"),
                 ("Input", ", ".join(p for p in parts if p)), ("Training data", training)]
    rows.append(("Intended use", f"{statement} (attestation, not evidenced by the tool)" if statement else
                 NOT_STATED + " (attestations.intended_purpose)"))
    rows += [("File", f"{f.path} ({f.format or 'format unknown'}; SHA-256 {f.sha256})") for f in files]
    return rows


#: Shown for a fact about the model that nothing states.
NOT_STATED = "not stated"


def to_yaml(data: Any) -> str:
    """Dump ``data`` as block YAML (keys in their given order), falling back to JSON."""
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")
    except yaml.YAMLError:
        return json.dumps(data, indent=2, default=str, ensure_ascii=False)


_SLUG = re.compile(r"[^a-z0-9]+")


def anchor(index: int, check_id: str) -> str:
    """A unique, HTML-safe fragment id for the ``index``-th check."""
    slug = _SLUG.sub("-", check_id.lower()).strip("-")[:60]
    return f"check-{index}-{slug}" if slug else f"check-{index}"
