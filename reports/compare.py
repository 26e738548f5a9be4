"""The side-by-side report of ``deepaudit compare``: every metric of every check as a row, one
column per model, deltas against the base marked better or worse (in words, not only colour)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.results import CheckResult, ComparisonResult, Metric
from reports._format import clean_text
from reports.changes import metric_kind, metric_not_comparable

from . import write_reports
from .html import environment
from .outputs import StagedSet


@dataclass(frozen=True)
class CompareRow:
    """One metric across every model of a comparison."""

    check: str
    metric: str
    group: str | None
    unit: str | None
    higher_is_better: bool | None
    values: list[float | None]
    deltas: list[float | None]  # against the base; None for the base itself
    #: "better", "worse", "same", "not comparable" (another n or method: reports.changes), or ""
    #: (unknown direction, or a value missing).
    verdicts: list[str]
    #: Why a value is not comparable with the base's, where it is not (else None).
    notes: list[str | None]


#: A timing or cost within this fraction of the base's is "same": this machine's load moves latency more.
TIMING_MARGIN = 0.05


def _verdict(base: Metric, new: Metric, delta: float, tolerance: float, why: str | None) -> str:
    if abs(delta) <= tolerance:
        return "same"
    if why is not None:  # e.g. the sanity check ran over other methods: "better" would be a different question
        return "not comparable"
    if metric_kind(base) != "rate" and base.value and abs(delta / base.value) <= TIMING_MARGIN:
        return "same"
    if base.higher_is_better is None:
        return ""
    return "better" if (delta > 0) == base.higher_is_better else "worse"


def comparison_rows(comparison: ComparisonResult, *, include_groups: bool = False,
                    tolerance: float = 1e-9) -> list[CompareRow]:
    """Line up every metric (headline metrics; per-group ones if asked) of every check.

    A change is judged "better" or "worse" by the metric's direction only when the two values were
    obtained the same way (``reports.changes.metric_not_comparable``); otherwise it is "not comparable",
    with the reason in ``notes``. What each check cost to run (its energy) is not a property of the
    model and is not a row: each model's own report has it.
    """
    results = [e.result for e in comparison.entries]
    keys: list[tuple[str, str, str | None]] = []
    seen: set[tuple[str, str, str | None]] = set()
    found: dict[tuple[int, str, str, str | None], tuple[Metric, CheckResult]] = {}
    for i, res in enumerate(results):
        for check in res.checks:
            for m in check.metrics:
                if m.group is not None and not include_groups:
                    continue
                key = (check.id, m.name, m.group)
                found[(i, *key)] = (m, check)
                if key not in seen:
                    seen.add(key)
                    keys.append(key)
    rows = []
    for key in keys:
        pairs = [found.get((i, *key)) for i in range(len(results))]
        metrics = [None if p is None else p[0] for p in pairs]
        template = next(m for m in metrics if m is not None)
        base = pairs[0]
        deltas: list[float | None] = [None]
        verdicts, notes = [""], [None]
        for pair in pairs[1:]:
            why = None if pair is None or base is None else metric_not_comparable(base[1], pair[1], base[0], pair[0])
            notes.append(why)
            if pair is None or base is None or pair[0].value is None or base[0].value is None:
                deltas.append(None)
                verdicts.append("not comparable" if why else "")
                continue
            d = pair[0].value - base[0].value
            deltas.append(d)
            verdicts.append(_verdict(base[0], pair[0], d, tolerance, why))
            if verdicts[-1] != "not comparable":
                notes[-1] = None
        rows.append(CompareRow(*key, template.unit, template.higher_is_better,
                               [None if m is None else m.value for m in metrics], deltas, verdicts, notes))
    return rows


def _cell(value: float | None, delta: float | None, verdict: str, first: bool) -> str:
    if value is None:
        return "—" + (" (not comparable)" if verdict == "not comparable" else "")
    text = f"{value:.4g}"
    if first or delta is None:
        return text
    if verdict == "same":
        return f"{text} (=)"
    return f"{text} ({delta:+.3g}{' ' + verdict if verdict else ''})"  # verdict: better, worse, not comparable or ""


def render_compare_table(comparison: ComparisonResult, rows: list[CompareRow] | None = None) -> str:
    """A plain-text table for a terminal or CI log: check, metric (whole, never truncated), the base's
    value and each model's value with its change and verdict. A row per headline metric, grouped by check."""
    rows = rows if rows is not None else comparison_rows(comparison)
    header = ["check", "metric", *(" ".join(clean_text(e.label).split()) for e in comparison.entries)]
    body, last = [], None
    for r in rows:
        cells = [_cell(v, r.deltas[i], r.verdicts[i], i == 0) for i, v in enumerate(r.values)]
        body.append([r.check if r.check != last else "", r.metric + (f" ({r.unit})" if r.unit else ""), *cells])
        last = r.check
    table = [header, *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n_nc = sum(v == "not comparable" for r in rows for v in r.verdicts)
    if n_nc:
        lines.append(f"{n_nc} value(s) not comparable with the base (another number of samples or method): "
                     "compare.html says why for each.")
    return "\n".join(lines)


#: (check, metric, what it is) of the costs a compressed variant is meant to save.
COSTS = (("efficiency", "model_size_mb", "size on disk"), ("efficiency", "latency_p50_ms", "median latency"),
         ("efficiency", "energy_per_1000_wh", "energy per 1,000 inferences"))
#: A cost ratio within this of 1 is no clear saving (timing noise); a quality change below
#: QUALITY_MARGIN (absolute) is not mentioned in the sentences (the table still shows it).
SAVING_MARGIN = 0.05
QUALITY_MARGIN = 0.005
#: (check, metric, what it is) of what the saving may cost.
QUALITIES = (("performance", "accuracy", "accuracy"), ("performance", "ece", "calibration error (ECE)"),
             ("adversarial", "robust_accuracy", "robust accuracy"),
             ("fairness.group_metrics", "equalized_odds_difference", "equalized odds difference"),
             ("corruption", "mce", "mean corruption error"))


def tradeoffs(comparison: ComparisonResult, rows: list[CompareRow] | None = None) -> list[dict[str, Any]]:
    """For each model after the base, plain sentences on what it saves and what it costs.

    A cost metric that is not lower than the base is said to give no saving on this device, so a
    report never implies that an int8 or pruned variant is faster or smaller when it is not.
    """
    rows = rows if rows is not None else comparison_rows(comparison)
    by_key = {(r.check, r.metric): r for r in rows if r.group is None}
    device = comparison.entries[0].result.provenance.device if comparison.entries else "this device"
    out = []
    for i, entry in enumerate(comparison.entries[1:], start=1):
        savings, costs = [], []
        for check, metric, what in COSTS:
            r = by_key.get((check, metric))
            if r is None or r.values[0] in (None, 0) or r.values[i] is None:
                continue
            ratio = r.values[i] / r.values[0]
            if ratio < 1 - SAVING_MARGIN:
                savings.append(f"{what} {ratio:.2f}× the base ({1 - ratio:.0%} less)")
            elif ratio <= 1 + SAVING_MARGIN:
                costs.append(f"{what} {ratio:.2f}× the base: within {SAVING_MARGIN:.0%}, no clear saving on {device}")
            else:
                costs.append(f"{what} {ratio:.2f}× the base: no saving on {device}")
        for check, metric, what in QUALITIES:
            r = by_key.get((check, metric))
            if r is None or r.deltas[i] is None or abs(r.deltas[i]) < QUALITY_MARGIN:
                continue
            if r.verdicts[i] == "worse":
                costs.append(f"{what} {r.values[0]:.3f} → {r.values[i]:.3f} (worse)")
            elif r.verdicts[i] == "better":
                savings.append(f"{what} {r.values[0]:.3f} → {r.values[i]:.3f} (better)")
        out.append({"label": entry.label, "savings": savings, "costs": costs})
    return out


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "model"


def render_compare_html(comparison: ComparisonResult) -> str:
    rows = comparison_rows(comparison)
    template = environment().get_template("compare.html.j2")
    return template.render(comparison=comparison, rows=rows, entries=comparison.entries,
                            folders=[_safe(e.label) for e in comparison.entries], tradeoffs=tradeoffs(comparison, rows))


def write_comparison(comparison: ComparisonResult, out_dir: Path) -> dict[str, Path]:
    """``compare.json`` and ``compare.html`` in ``out_dir``, plus each model's own reports in a subfolder."""
    out_dir = Path(out_dir)
    html = render_compare_html(comparison)
    written = {"json": out_dir / "compare.json", "html": out_dir / "compare.html"}
    with StagedSet(out_dir) as staged:  # every file of the comparison lands at once
        for entry in comparison.entries:
            write_reports(entry.result, out_dir / _safe(entry.label), staged=staged)
        staged.write_text(written["json"], comparison.to_json())
        staged.write_text(written["html"], html)
        staged.publish()
    return written
