"""Regressions between two audits (``deepaudit diff base.json new.json``): a pure function of two results.

A regression is: a check that disappeared; a status that got worse (pass → measured → skipped → warn
→ fail → error: ``measured`` lost its judgement and ``skipped`` its evidence, so both rank above pass); a metric that moved in its bad
direction by more than the tolerance (``higher_is_better`` decides the direction; metrics without
it are not judged) or that became undefined; a threshold that changed, was loosened or removed
(any change in a threshold makes the runs incomparable on that metric, so it is listed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from audit.results import AuditResult, CheckResult, Metric, ThresholdOutcome

#: Severity order for "got worse" (skipped means the evidence is gone, so it ranks above pass).
_RANK = {"pass": 0, "measured": 1, "skipped": 2, "warn": 3, "fail": 4, "error": 5}

Kind = Literal["check_missing", "status", "metric", "metric_missing", "threshold"]


@dataclass(frozen=True)
class Regression:
    """One way the new audit is worse than the base."""

    check: str
    kind: Kind
    item: str
    base: str
    new: str
    detail: str


def _metric_key(m: Metric) -> tuple[str, str | None]:
    return (m.name, m.group)


def _label(m: Metric) -> str:
    return m.name + (f" [{m.group}]" if m.group else "")


def _bounds(t: ThresholdOutcome) -> str:
    parts = [f"min {t.min:g}" if t.min is not None else "", f"max {t.max:g}" if t.max is not None else ""]
    return " ".join(p for p in parts if p) + f" ({t.level})"


def _fmt(v: float | None) -> str:
    return "undefined" if v is None else f"{v:.4g}"


def _check_regressions(base: CheckResult, new: CheckResult, tolerance: float) -> list[Regression]:
    out: list[Regression] = []
    if _RANK[new.status] > _RANK[base.status]:
        out.append(Regression(base.id, "status", "status", base.status, new.status,
                              f"status got worse: {base.status} → {new.status}"))
    new_metrics = {_metric_key(m): m for m in new.metrics}
    for bm in base.metrics:
        nm = new_metrics.get(_metric_key(bm))
        if bm.higher_is_better is None and not any(t.metric == bm.name for t in base.thresholds):
            continue  # direction unknown: not judged
        if nm is None:
            out.append(Regression(base.id, "metric_missing", _label(bm), _fmt(bm.value), "absent",
                                  "metric no longer reported"))
            continue
        if bm.value is None:
            continue
        if nm.value is None:
            out.append(Regression(base.id, "metric", _label(bm), _fmt(bm.value), "undefined", "metric became undefined"))
            continue
        higher = bm.higher_is_better
        if higher is None:  # direction from the threshold: a min bound means higher is better
            t = next(t for t in base.thresholds if t.metric == bm.name)
            higher = t.min is not None
        delta = nm.value - bm.value
        worse = -delta if higher else delta
        if worse > tolerance:
            out.append(Regression(base.id, "metric", _label(bm), _fmt(bm.value), _fmt(nm.value),
                                  f"{'fell' if higher else 'rose'} by {abs(delta):.4g} (tolerance {tolerance:g})"))
    new_thresholds = {t.metric: t for t in new.thresholds}
    for bt in base.thresholds:
        nt = new_thresholds.get(bt.metric)
        if nt is None:
            out.append(Regression(base.id, "threshold", bt.metric, _bounds(bt), "removed", "threshold removed"))
        elif (nt.min, nt.max, nt.level) != (bt.min, bt.max, bt.level):
            out.append(Regression(base.id, "threshold", bt.metric, _bounds(bt), _bounds(nt), "threshold changed"))
    return out


def diff_results(base: AuditResult, new: AuditResult, tolerance: float = 0.01) -> list[Regression]:
    """Every regression of ``new`` against ``base``, in the base's check order.

    Parameters
    ----------
    base, new : AuditResult
        The reference audit (e.g. the last release) and the candidate.
    tolerance : float
        Largest change in a metric's bad direction that is not a regression (absolute, in the
        metric's unit). Must be >= 0.

    Returns
    -------
    list of Regression
        Empty when nothing got worse.
    """
    if not tolerance >= 0:
        raise ValueError(f"The 'tolerance' parameter of diff_results must be a float >= 0. Got {tolerance!r} instead.")
    new_checks = {c.id: c for c in new.checks}
    out: list[Regression] = []
    for bc in base.checks:
        nc = new_checks.get(bc.id)
        if nc is None:
            out.append(Regression(bc.id, "check_missing", "check", bc.status, "absent", "check disappeared"))
        else:
            out.extend(_check_regressions(bc, nc, tolerance))
    return out


def render_diff_table(regressions: list[Regression]) -> str:
    """Plain-text table for a terminal or CI log."""
    if not regressions:
        return "No regressions."
    header = ("check", "kind", "item", "base", "new", "detail")
    rows = [header] + [(r.check, r.kind, r.item, r.base, r.new, r.detail) for r in regressions]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
