"""Regressions between two audits (``deepaudit diff base.json new.json``): a pure function of two results.

A regression is: a check that disappeared; a status that got worse (pass → measured → skipped → warn
→ fail → error: ``measured`` lost its judgement and ``skipped`` its evidence, so both rank above pass); a metric that moved in its bad
direction by more than its tolerance (``higher_is_better`` decides the direction; metrics without
it are not judged) or that became undefined; a threshold that changed, was loosened or removed
(any change in a threshold makes the runs incomparable on that metric, so it is listed).

What is not a regression, and is listed as such (``reports.changes`` has the rules):

- **not comparable**: a metric obtained on another number of samples or by another method because
  its check ran differently (``reports.changes.setup_differs``: another config, other samples, other
  methods — e.g. a model that exposes features gets Mahalanobis fitted on half the evaluation set; a
  variant whose gradient methods cannot run is sanity-checked on other methods), a metric no longer
  reported while its check still ran, and a status that got worse only through such metrics.
  ``strict`` makes these regressions. When the check ran the same way, an ``n`` or method text that
  changed with the model's answers does not excuse a regression.
- **within noise**: a change beyond the tolerance that is not significant given the two values'
  intervals.
- **timing not judged**: latency, throughput and energy per inference, measured on this machine
  under its load, unless ``include_timing`` (then with the relative tolerance).

Tolerances by kind: absolute (``tolerance``) for rates, relative (``rel_tolerance``) for costs
(size, parameters, FLOPs) and timings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from audit.results import AuditResult, CheckResult, Metric, ThresholdOutcome
from reports.changes import metric_kind, metric_not_comparable, within_noise, worse_by

#: Severity order for "got worse" (skipped means the evidence is gone, so it ranks above pass).
_RANK = {"pass": 0, "measured": 1, "skipped": 2, "warn": 3, "fail": 4, "error": 5}

Kind = Literal["check_missing", "status", "metric", "metric_missing", "threshold"]
NoteKind = Literal["not_comparable", "within_noise", "timing_not_judged"]


@dataclass(frozen=True)
class Regression:
    """One way the new audit is worse than the base."""

    check: str
    kind: Kind
    item: str
    base: str
    new: str
    detail: str


@dataclass(frozen=True)
class Note:
    """A change that is not judged a regression, and why."""

    check: str
    kind: NoteKind
    item: str
    base: str
    new: str
    detail: str


@dataclass(frozen=True)
class DiffReport:
    """What ``diff_results`` found: the regressions a gate fails on, and the changes it did not judge."""

    regressions: list[Regression] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def of_kind(self, kind: NoteKind) -> list[Note]:
        return [n for n in self.notes if n.kind == kind]


def _metric_key(m: Metric) -> tuple[str, str | None]:
    return (m.name, m.group)


def _label(m: Metric) -> str:
    return m.name + (f" [{m.group}]" if m.group else "")


def _bounds(t: ThresholdOutcome) -> str:
    parts = [f"min {t.min:g}" if t.min is not None else "", f"max {t.max:g}" if t.max is not None else ""]
    return " ".join(p for p in parts if p) + f" ({t.level})"


def _fmt(v: float | None) -> str:
    return "undefined" if v is None else f"{v:.4g}"


@dataclass(frozen=True)
class _Options:
    tolerance: float
    rel_tolerance: float
    include_timing: bool
    strict: bool


def _metric_change(check: str, bm: Metric, nm: Metric, higher: bool, opt: _Options,
                   why: str | None) -> Regression | Note | None:
    """The regression or note for one metric present in both audits with both values defined."""
    kind = metric_kind(bm)
    worse = worse_by(bm, nm, higher)
    relative = kind != "rate"
    limit = opt.rel_tolerance if relative else opt.tolerance
    args = (check, _label(bm), _fmt(bm.value), _fmt(nm.value))
    if worse <= limit:
        return None
    moved = f"{'fell' if higher else 'rose'} by " + (f"{worse:.1%}" if relative and worse != float("inf") else
                                                     f"{abs(nm.value - bm.value):.4g}")  # type: ignore[operator]
    tolerance = f"tolerance {limit:g}" + (" relative" if relative else "")
    if kind == "timing" and not opt.include_timing:
        return Note(*args[:1], "timing_not_judged", *args[1:], f"{moved} ({tolerance}); timing is judged only with --include-timing")
    if why is not None:
        if opt.strict:
            return Regression(*args[:1], "metric", *args[1:], f"{moved}, and not comparable: {why}")
        return Note(*args[:1], "not_comparable", *args[1:], f"{moved}, but not comparable: {why}")
    noise = within_noise(bm, nm)
    if noise is not None:
        return Note(*args[:1], "within_noise", *args[1:], f"{moved} ({tolerance}): {noise}")
    return Regression(*args[:1], "metric", *args[1:], f"{moved} ({tolerance})")


def _metric_items(base: CheckResult, new: CheckResult, opt: _Options) -> tuple[list[Regression | Note], set[str]]:
    """Each metric's regression or note, and the names of the metrics that are not comparable."""
    out: list[Regression | Note] = []
    missing: list[Metric] = []
    incomparable: set[str] = set()
    new_metrics = {_metric_key(m): m for m in new.metrics}
    base_names = {m.name for m in base.metrics}
    incomparable |= {m.name for m in new.metrics if m.name not in base_names}
    for bm in base.metrics:
        nm = new_metrics.get(_metric_key(bm))
        why = metric_not_comparable(base, new, bm, nm) if nm is not None else None
        if why is not None:
            incomparable.add(bm.name)
        if bm.higher_is_better is None and not any(t.metric == bm.name for t in base.thresholds):
            continue  # direction unknown: not judged
        if nm is None:  # another method ran (e.g. no features for Mahalanobis): evidence lost, listed
            incomparable.add(bm.name)
            if opt.strict:
                out.append(Regression(base.id, "metric_missing", _label(bm), _fmt(bm.value), "absent",
                                      "metric no longer reported"))
            else:
                missing.append(bm)
            continue
        if bm.value is None:
            continue
        if nm.value is None:
            if why is not None and not opt.strict:  # not measured this time, by another method ("not measured: …")
                out.append(Note(base.id, "not_comparable", _label(bm), _fmt(bm.value), "undefined",
                                f"metric became undefined, not comparable: {why}"))
            else:
                out.append(Regression(base.id, "metric", _label(bm), _fmt(bm.value), "undefined", "metric became undefined"))
            continue
        higher = bm.higher_is_better
        if higher is None:  # direction from the threshold: a min bound means higher is better
            t = next(t for t in base.thresholds if t.metric == bm.name)
            higher = t.min is not None
        item = _metric_change(base.id, bm, nm, higher, opt, why)
        if item is not None:
            out.append(item)
    if missing:  # one line per check: a score that did not run takes out a metric per OOD set
        names = sorted({_label(m) for m in missing})
        item = names[0] if len(names) == 1 else f"{len(names)} metrics"
        shown = ", ".join(names[:4]) + (f", … ({len(names) - 4} more)" if len(names) > 4 else "")
        out.append(Note(base.id, "not_comparable", item, "reported", "absent",
                        f"no longer reported (the check's limitations say why): {shown}"))
    return out, incomparable


def _status_change(base: CheckResult, new: CheckResult, incomparable: set[str], opt: _Options) -> Regression | Note | None:
    if _RANK[new.status] <= _RANK[base.status]:
        return None
    detail = f"status got worse: {base.status} → {new.status}"
    missed = {t.metric for t in new.thresholds if not t.passed}
    # Worse only through metrics that cannot be compared (another n, another method): not a regression
    # of the model, unless strict. A skip, an error or a lost judgement always is.
    if (new.status in ("warn", "fail") and base.status in ("pass", "measured", "warn") and missed
            and missed <= incomparable and not opt.strict):
        return Note(base.id, "not_comparable", "status", base.status, new.status,
                    f"{detail}, only through metrics not comparable: {', '.join(sorted(missed))}")
    return Regression(base.id, "status", "status", base.status, new.status, detail)


def _threshold_changes(base: CheckResult, new: CheckResult) -> list[Regression]:
    out = []
    new_thresholds = {t.metric: t for t in new.thresholds}
    for bt in base.thresholds:
        nt = new_thresholds.get(bt.metric)
        if nt is None:
            out.append(Regression(base.id, "threshold", bt.metric, _bounds(bt), "removed", "threshold removed"))
        elif (nt.min, nt.max, nt.level) != (bt.min, bt.max, bt.level):
            out.append(Regression(base.id, "threshold", bt.metric, _bounds(bt), _bounds(nt), "threshold changed"))
    return out


def _check_changes(base: CheckResult, new: CheckResult, opt: _Options) -> list[Regression | Note]:
    items, incomparable = _metric_items(base, new, opt)
    status = _status_change(base, new, incomparable, opt)
    return ([status] if status is not None else []) + items + _threshold_changes(base, new)


def diff_results(base: AuditResult, new: AuditResult, tolerance: float = 0.01, *, rel_tolerance: float = 0.1,
                 include_timing: bool = False, strict: bool = False) -> DiffReport:
    """Every regression of ``new`` against ``base``, in the base's check order, and the changes not judged.

    Parameters
    ----------
    base, new : AuditResult
        The reference audit (e.g. the last release) and the candidate.
    tolerance : float
        Largest change of a rate (unitless metric: accuracy, AUROC, a gap) in its bad direction that
        is not a regression, absolute. Must be >= 0.
    rel_tolerance : float
        The same for costs (size, parameters, FLOPs) and timings, as a fraction of the base value.
        Must be >= 0.
    include_timing : bool
        Judge latency, throughput and energy per inference too (off: listed as not judged).
    strict : bool
        Count changes in metrics that are not comparable (other n, other method) as regressions.

    Returns
    -------
    DiffReport
        ``regressions`` is empty when nothing got worse.
    """
    for name, value in (("tolerance", tolerance), ("rel_tolerance", rel_tolerance)):
        if not value >= 0:
            raise ValueError(f"The {name!r} parameter of diff_results must be a float >= 0. Got {value!r} instead.")
    opt = _Options(tolerance, rel_tolerance, include_timing, strict)
    new_checks = {c.id: c for c in new.checks}
    report = DiffReport()
    for bc in base.checks:
        nc = new_checks.get(bc.id)
        items: list[Regression | Note]
        if nc is None:
            items = [Regression(bc.id, "check_missing", "check", bc.status, "absent", "check disappeared")]
        else:
            items = _check_changes(bc, nc, opt)
        for item in items:
            (report.regressions if isinstance(item, Regression) else report.notes).append(item)
    return report


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    rows = [header] + rows
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


_NOTE_TITLES = {"not_comparable": "Not comparable (obtained on other samples or by another method; not judged)",
                "within_noise": "Within noise (beyond the tolerance, not beyond the two values' intervals)",
                "timing_not_judged": "Timing not judged (this machine's load; --include-timing to judge it)"}


def render_diff_table(report: DiffReport) -> str:
    """Plain-text tables for a terminal or CI log: the regressions, then each kind of change not judged."""
    lines = ["No regressions."] if not report.regressions else _table(
        ("check", "kind", "item", "base", "new", "detail"),
        [(r.check, r.kind, r.item, r.base, r.new, r.detail) for r in report.regressions])
    for kind, title in _NOTE_TITLES.items():
        notes = report.of_kind(kind)  # type: ignore[arg-type]
        if notes:
            lines += ["", f"{title}: {len(notes)}"]
            lines += _table(("check", "item", "base", "new", "detail"),
                            [(n.check, n.item, n.base, n.new, n.detail) for n in notes])
    return "\n".join(lines)
