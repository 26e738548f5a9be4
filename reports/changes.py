"""How one metric changed between two audits: whether the two values can be compared at all, how
large a change must be to count (by the metric's kind) and whether it is beyond the values' noise.

Shared by ``deepaudit diff`` (regressions a CI gates on) and ``deepaudit compare`` (variants side
by side), so both call the same change "not comparable", "within noise", "better" or "worse".

Kinds of metric, from their unit and name:

- ``rate``: a unitless statistic over samples (accuracy, AUROC, a gap, an attack success rate).
  Judged with an absolute tolerance; comparable only on the same number of samples ``n``.
- ``cost``: a deterministic property of the model with a unit (parameters, size, FLOPs, stated
  training energy). Judged with a relative tolerance.
- ``timing``: measured on this machine under its current load (latency, throughput, and the energy
  and CO2 per inference measured over the timed loop, with their yearly projections). Judged with a
  relative tolerance, and only when asked (``--include-timing``): two runs of identical weights on
  a shared CI runner differ by more than any useful tolerance.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from audit.results import CheckResult, Metric

MetricKind = Literal["rate", "cost", "timing"]

#: Units of metrics measured over a timed loop on this machine.
TIMING_UNITS = frozenset({"ms/batch", "samples/s", "Wh/1000 inferences", "gCO2eq/1000 inferences",
                          "kWh/year", "kgCO2eq/year"})
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def metric_kind(m: Metric) -> MetricKind:
    """The kind of a metric, which sets how a change in it is judged (see the module docstring)."""
    if m.unit in TIMING_UNITS:
        return "timing"
    return "rate" if m.unit is None else "cost"


def _method_shape(method: str) -> str:
    """A method's text with its numbers replaced, so a timed loop of 20 or of 37 batches, or a
    duration of 1.23 s, is the same method; names of methods, scores and data sets still count."""
    return _NUMBER.sub("#", method)


def not_comparable(base: Metric, new: Metric) -> str | None:
    """How the two values of one metric were obtained differently, or None when they were not.

    Another method (its text, numbers aside: e.g. a sanity check over 4 gradient methods against
    one over 2 black-box methods), measured against estimated, or — for a ``rate`` — another number
    of samples. On its own this does not make them incomparable: a metric's ``n`` or method text can
    follow the model's own answers (the rows predicted as a class, the correct rows an attack
    starts from, the attack that turned out strongest). Use :func:`metric_not_comparable`.
    """
    if base.provenance != new.provenance:
        return f"{base.provenance} → {new.provenance}"
    if metric_kind(base) == "rate" and base.n != new.n:
        return f"n {base.n:,} → {new.n:,}"
    if _method_shape(base.method) != _method_shape(new.method):
        return f"method changed: {_where_differs(base.method, new.method)}"
    return None


def _where_differs(a: str, b: str, width: int = 50) -> str:
    """The two texts from a little before their first difference, clipped: what a reader needs to see."""
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, i - 10)

    def clip(text: str) -> str:
        part = text[start:start + width]
        return ("…" if start else "") + part + ("…" if start + width < len(text) else "")

    return f"{clip(a)!r} → {clip(b)!r}"


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def within_noise(base: Metric, new: Metric) -> str | None:
    """When both values have an interval and their difference is not significant at the 5% level,
    the reason in words; None when it is significant or there are no intervals to judge by.

    Each interval is read as a normal one (half-width = z × standard error) and the two runs as
    independent, so the test is conservative for two audits of the same samples (paired).
    """
    if None in (base.value, new.value, base.ci_low, base.ci_high, new.ci_low, new.ci_high):
        return None
    ses = []
    for m in (base, new):
        level = m.ci_level or 0.95
        ses.append((m.ci_high - m.ci_low) / (2 * _z(level)))  # type: ignore[operator]
    se = math.hypot(*ses)
    delta = new.value - base.value  # type: ignore[operator]
    limit = _z(0.95) * se
    if se > 0 and abs(delta) <= limit:
        return f"change {delta:+.4g} within ±{limit:.3g} (95%, from the two intervals)"
    return None


def worse_by(base: Metric, new: Metric, higher_is_better: bool) -> float:
    """How much ``new`` is worse than ``base`` in the metric's own scale: absolute for a rate,
    relative to the base for a cost or a timing (inf when the base is 0 and the new value worse)."""
    delta = new.value - base.value  # type: ignore[operator]
    worse = -delta if higher_is_better else delta
    if metric_kind(base) == "rate":
        return worse
    if base.value == 0:
        return math.inf if worse > 0 else 0.0
    return worse / abs(base.value)  # type: ignore[arg-type]


def setup_differs(base: CheckResult, new: CheckResult) -> str | None:
    """Why a check ran differently in the two audits, or None when it ran the same way: another
    configuration, another number of samples, or other methods — told by the metrics it reported
    (a model without features gets no Mahalanobis or k-NN scores, and the held-out half those need
    is not taken; a model without gradients is explained by other methods)."""
    if base.config != new.config:
        return "the check's configuration changed"
    if base.n_samples != new.n_samples:
        return f"the check ran on {base.n_samples} → {new.n_samples} samples"
    keys = lambda c: {(m.name, m.group) for m in c.metrics}  # noqa: E731
    only = sorted({name if group is None else f"{name} [{group}]" for name, group in keys(base) ^ keys(new)})
    if only:
        shown = ", ".join(only[:3]) + (f", … ({len(only) - 3} more)" if len(only) > 3 else "")
        return f"the check ran other methods ({len(only)} metrics in one audit only: {shown})"
    return None


def metric_not_comparable(base_check: CheckResult, new_check: CheckResult, base: Metric, new: Metric) -> str | None:
    """Why two values of one metric cannot be compared, or None when they can: obtained differently
    (:func:`not_comparable`) because the check itself ran differently (:func:`setup_differs`). A
    measured value against an estimated one is never comparable. When the check ran the same way, a
    changed ``n`` or method text follows from the model's answers, and the change is the model's."""
    why = not_comparable(base, new)
    if why is None:
        return None
    if base.provenance != new.provenance:
        return why
    setup = setup_differs(base_check, new_check)
    return None if setup is None else f"{why}; {setup}"
