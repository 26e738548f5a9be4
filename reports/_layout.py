"""Where a check's metrics go in the HTML/PDF report: its own section, or the per-group appendix.

A check's section shows its overall metrics (and its per-group ones when they are few). A check with
many per-group metrics (70 corruption/severity values, 56 fairness group rates) would repeat, row by
row with the method sentence, numbers its evidence tables already show; those rows go to the
report's appendix instead, one compact table per check with the method stated once per run of
identical methods. Nothing is dropped: every metric is in the section or in the appendix, and all of
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


def appendix_rows(metrics: list[Metric]) -> list[tuple[Metric, str | None]]:
    """The metrics ordered by name (names in order of first appearance, groups in the check's order), each
    with its method, or ``None`` where the row above has the same metric name and method.

    The appendix states a method once for the run of rows it applies to instead of on every row.
    """
    order = {name: i for i, name in enumerate(dict.fromkeys(m.name for m in metrics))}
    rows: list[tuple[Metric, str | None]] = []
    previous: tuple[str, str] | None = None
    for m in sorted(metrics, key=lambda m: order[m.name]):
        key = (m.name, m.method)
        rows.append((m, None if key == previous else m.method))
        previous = key
    return rows
