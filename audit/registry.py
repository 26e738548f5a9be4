"""The check registry and the ``Check`` base class.

A check is one file in ``audit/checks/``: a class with a typed ``Config``, the metric names it
reports, and ``run(ctx)`` holding only its method. Eval mode, device, timing, error capture and
threshold evaluation belong to the runner. Check modules are imported explicitly, in the list
``audit.checks.CHECK_MODULES``, not by star-import side effects.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from audit.config import CheckConfig
from audit.errors import ConfigError
from audit.results import Evidence, Metric

if TYPE_CHECKING:
    from audit.context import AuditContext

_REGISTRY: dict[str, type[Check]] = {}
_loaded = False

#: What a check can need from the data or the model (``Check.needs``, ``Check.uses``), as ``deepaudit checks``
#: lists it. A check without one of its ``needs`` is skipped with the reason; one of its ``uses`` is used when
#: there and replaced otherwise (e.g. a black-box attack for input gradients). The keys about the model
#: (gradients, features, attention, raw_text, trainable) are the field names of ``models.adapter.Capabilities``,
#: which a check reads as ``ctx.adapter.capabilities.<key>``.
NEEDS: dict[str, str] = {
    "labels": "labels on the evaluation set (data.eval.target)",
    "reference": "a reference (training) set: data.reference (labelled, for privacy and poisoning)",
    "ood": "an out-of-distribution set: data.ood",
    "sensitive_features": "sensitive feature columns: data.eval.sensitive_features",
    "gradients": "input gradients (a differentiable torch model)",
    "features": "penultimate features (the input of the model's last Linear layer)",
    "attention": "attention maps (Transformer, ViT, Hugging Face text models)",
    "raw_text": "raw text (data.eval.text_column), not token ids",
    "trainable": "a torch model that can be fine-tuned, or a model.json recipe to retrain",
}
#: Every input kind; a check applies to those in ``Check.input_kinds``.
INPUT_KINDS: tuple[str, ...] = ("image", "tabular", "text", "sequence")


@dataclass(frozen=True)
class NoiseTest:
    """Whether one estimate of a metric stands out from its noise floor (e.g. one sensitive
    feature's fairness gap against its permutation null)."""

    value: float
    significant: bool
    text: str  #: e.g. "sex: 0.105, permutation p = 0.41, null 95th percentile 0.121"


@dataclass
class CheckOutput:
    """What ``Check.run`` returns; the runner adds id, timing, thresholds and status."""

    summary: str
    metrics: list[Metric] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    method: str = ""
    limitations: list[str] = field(default_factory=list)
    dataset: str | None = None
    n_samples: int | None = None
    #: A check may ask for at least this status (e.g. "warn" for groups too small to judge).
    status_floor: Literal["pass", "warn"] = "pass"
    #: Significance of the estimates behind a metric, by metric name. A threshold missed only by
    #: estimates that are not significant is "within noise": it warns, it does not fail.
    noise_tests: dict[str, list[NoiseTest]] = field(default_factory=dict)
    #: Groups whose per-group metrics are shown but never decide (e.g. below ``min_group_size``), with the
    #: reason: a threshold on a per-group metric is judged on the worst of the other groups.
    undecided_groups: dict[str, str] = field(default_factory=dict)


class Check(abc.ABC):
    """Base class of every check.

    Class attributes
    ----------------
    id : str
        Stable id, used in the config (``checks.<id>``), results.json and JUnit.
    category : str
        Report section: performance, fairness, explainability, robustness, ood, energy.
    title : str
        Human title.
    Config : type
        Pydantic model of the check's settings (subclass of ``CheckConfig``).
    metric_names : tuple of str
        Names of the metrics ``run`` reports; thresholds may name any of them.
    default_enabled : bool
        Whether the check runs when the config does not mention it.
    needs : tuple of str
        Keys of :data:`NEEDS` the check cannot run without (it is skipped, with the reason).
    uses : tuple of str
        Keys of :data:`NEEDS` the check uses when they are there, and does without otherwise.
    input_kinds : tuple of str
        Input kinds the check applies to; on any other it is skipped.
    """

    id: ClassVar[str]
    category: ClassVar[str]
    title: ClassVar[str]
    Config: ClassVar[type[CheckConfig]] = CheckConfig
    metric_names: ClassVar[tuple[str, ...]] = ()
    default_enabled: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = ()
    uses: ClassVar[tuple[str, ...]] = ()
    input_kinds: ClassVar[tuple[str, ...]] = INPUT_KINDS

    def __init__(self, config: CheckConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @abc.abstractmethod
    def run(self, ctx: AuditContext) -> CheckOutput:
        """Run the method on the context and return its findings."""

    def preflight(self, ctx: AuditContext) -> None:
        """Refute config values that only the loaded model or data can refute (e.g. a corruption of
        another input kind), by raising ``InputError``. The runner calls it for every enabled check
        before any check runs, so bad input exits 2 before any work. Must be cheap: no model calls."""


def register_check(check_id: str) -> Callable[[type[Check]], type[Check]]:
    """Class decorator: register a check under ``check_id``."""

    def deco(cls: type[Check]) -> type[Check]:
        if check_id in _REGISTRY and _REGISTRY[check_id] is not cls:
            raise ValueError(f"check {check_id!r} is registered twice")
        unknown = [n for n in (*cls.needs, *cls.uses) if n not in NEEDS] + [
            k for k in cls.input_kinds if k not in INPUT_KINDS]
        if unknown:
            raise ValueError(f"check {check_id!r} declares unknown needs or input kinds {unknown}; "
                             f"choose from {', '.join(NEEDS)} and {', '.join(INPUT_KINDS)}")
        cls.id = check_id
        _REGISTRY[check_id] = cls
        return cls

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        from audit.checks import CHECK_MODULES

        for mod in CHECK_MODULES:
            importlib.import_module(mod)
        _loaded = True


def list_checks() -> list[str]:
    """Ids of every registered check, in the order of ``CHECK_MODULES`` (whatever imported them first)."""
    _ensure_loaded()
    from audit.checks import CHECK_MODULES

    order = {mod: i for i, mod in enumerate(CHECK_MODULES)}
    ids = list(_REGISTRY)
    return sorted(ids, key=lambda cid: (order.get(_REGISTRY[cid].__module__, len(order)), ids.index(cid)))


def get_check(check_id: str) -> type[Check]:
    _ensure_loaded()
    try:
        return _REGISTRY[check_id]
    except KeyError:
        raise ConfigError(f"unknown check {check_id!r}; known checks: {', '.join(_REGISTRY)}.") from None


def check_config_class(check_id: str) -> type[CheckConfig]:
    return get_check(check_id).Config


def describe_checks() -> list[dict[str, Any]]:
    """Every registered check as plain data, in registry order (``deepaudit checks``, ``--json``): id, title,
    category, what it needs and uses (``NEEDS`` key → text), the input kinds it applies to, whether it runs by
    default, its metric names and its built-in thresholds (``default_thresholds``)."""
    rows = []
    for check_id in list_checks():
        cls = get_check(check_id)
        defaults = getattr(cls, "default_thresholds", {})
        rows.append({
            "id": check_id, "title": cls.title, "category": cls.category,
            "needs": {n: NEEDS[n] for n in cls.needs}, "uses": {n: NEEDS[n] for n in cls.uses},
            "input_kinds": list(cls.input_kinds), "default_enabled": cls.default_enabled,
            "metrics": list(cls.metric_names),
            "default_thresholds": [{"metric": m, "min": t.min, "max": t.max, "level": t.level}
                                   for m, t in defaults.items()],
        })
    return rows
