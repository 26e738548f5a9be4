"""Where a check's metrics go in the HTML/PDF report: its own section, or the per-group appendix.

A check's section shows its overall metrics (and its per-group ones when they are few). A check with
many per-group metrics (70 corruption/severity values, 56 fairness group rates) would repeat, row by
row with the method sentence, numbers its evidence tables already show; those rows go to the
report's appendix instead, one compact table per check. Every metrics table states each distinct
method once, numbered, under it (:func:`numbered_methods`). Nothing is dropped: every metric is in the section or in the appendix, and all of
them in ``results.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.results import CheckResult, Metric

#: A check with at most this many per-group metrics shows them in its own section.
MAX_INLINE_GROUP_METRICS = 8


@dataclass(frozen=True)
class MetricSplit:
    """A check's metrics split between its section (``inline``) and the appendix (``appendix``)."""

    inline: list[Metric]
    appendix: list[Metric]

    @property
    def names(self) -> list[str]:
        """The metric names moved to the appendix, in the check's order."""
        return list(dict.fromkeys(m.name for m in self.appendix))

    @property
    def groups(self) -> int:
        """How many distinct groups the appendix rows cover."""
        return len({m.group for m in self.appendix})


def split_metrics(check: CheckResult, max_inline: int = MAX_INLINE_GROUP_METRICS) -> MetricSplit:
    """Overall metrics stay in the section; per-group ones too unless there are more than ``max_inline``.

    Parameters
    ----------
    check : CheckResult
    max_inline : int
        Most per-group metrics shown in the section itself.

    Returns
    -------
    MetricSplit
        ``inline + appendix`` holds every metric of the check exactly once, each part in the check's order.
    """
    grouped = [m for m in check.metrics if m.group is not None]
    if len(grouped) <= max_inline:
        return MetricSplit(list(check.metrics), [])
    return MetricSplit([m for m in check.metrics if m.group is None], grouped)


def numbered_methods(metrics: list[Metric], by_name: bool = False) -> tuple[list[tuple[Metric, int]], list[str]]:
    """Each metric with the number of its method, and the distinct methods in the order of those numbers (1-based).

    A metrics table prints each method once, under it, instead of in a column on every row (56 per-group fairness
    rates share 7 method sentences). ``by_name`` orders the rows by metric name (names in order of first
    appearance, groups in the check's order), as the appendix lists them; otherwise they keep the check's order.
    """
    order = {name: i for i, name in enumerate(dict.fromkeys(m.name for m in metrics))}
    methods: dict[str, int] = {}
    rows = []
    for m in sorted(metrics, key=lambda m: order[m.name]) if by_name else metrics:
        rows.append((m, methods.setdefault(m.method, len(methods) + 1)))
    return rows, list(methods)
