"""The side-by-side report of ``deepaudit compare``: every metric of every check as a row, one
column per model, deltas against the base marked better or worse (in words, not only colour)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.results import ComparisonResult

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
    verdicts: list[str]  # "better", "worse", "same", "" (unknown direction or missing)


def comparison_rows(comparison: ComparisonResult, *, include_groups: bool = False,
                    tolerance: float = 1e-9) -> list[CompareRow]:
    """Line up every metric (headline metrics; per-group ones if asked) of every check."""
    results = [e.result for e in comparison.entries]
    keys: list[tuple[str, str, str | None]] = []
    meta: dict[tuple[str, str, str | None], Any] = {}
    for res in results:
        for check in res.checks:
            for m in check.metrics:
                if m.group is not None and not include_groups:
                    continue
                key = (check.id, m.name, m.group)
                if key not in meta:
                    keys.append(key)
                    meta[key] = m
            if check.energy is not None and (check.id, "energy_kwh", None) not in meta:
                keys.append((check.id, "energy_kwh", None))
                meta[(check.id, "energy_kwh", None)] = None
    rows = []
    for key in keys:
        check_id, name, group = key
        values: list[float | None] = []
        for res in results:
            value = None
            for check in res.checks:
                if check.id != check_id:
                    continue
                if name == "energy_kwh" and meta[key] is None:
                    value = check.energy.energy_kwh if check.energy else None
                else:
                    value = next((m.value for m in check.metrics if m.name == name and m.group == group), None)
            values.append(value)
        template = meta[key]
        hib = False if template is None else template.higher_is_better
        unit = "kWh" if template is None else template.unit
        base = values[0]
        deltas, verdicts = [None], [""]
        for v in values[1:]:
            if v is None or base is None:
                deltas.append(None)
                verdicts.append("")
                continue
            d = v - base
            deltas.append(d)
            if abs(d) <= tolerance or hib is None:
                verdicts.append("same" if abs(d) <= tolerance else "")
            else:
                verdicts.append("better" if (d > 0) == hib else "worse")
        rows.append(CompareRow(check_id, name, group, unit, hib, values, deltas, verdicts))
    return rows


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
