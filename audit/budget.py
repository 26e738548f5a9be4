"""The sample budget: one preset (``budget: quick | standard | thorough``) for how much work every
expensive check does, and one vocabulary for it.

Every check calls the rows it draws from a data set ``max_samples`` (``max_train_samples`` and
``max_fit_samples`` for rows of ``data.reference`` it trains or fits on); resamples, permutations,
steps, queries and epochs keep their own names. :data:`PRESETS` gives, for each budget, the value of
every such key; a key the config sets for a check always wins over the preset. ``standard`` is the
default and reproduces the checks' own defaults. Every preset value is a fixed number, not a share of
the data, so an audit's cost stops growing with the number of rows except in the checks that must see
every row (performance, drift, the per-group metrics of fairness and the logits every check shares).

A check's ``Config.renamed`` lists its old key names, which still work and leave a one-line deprecation
note on the check's result (``CheckResult.notes``) and on the terminal.
"""

from __future__ import annotations

import math
from typing import Any, Literal

Budget = Literal["quick", "standard", "thorough"]
BUDGETS: tuple[str, ...] = ("quick", "standard", "thorough")

#: check id -> key -> (quick, standard, thorough). ``standard`` equals the check's own default (a test
#: keeps them equal), so an audit without ``budget`` runs as before.
PRESETS: dict[str, dict[str, tuple[Any, Any, Any]]] = {
    "performance": {"n_resamples": (200, 1000, 5000), "n_permutations": (500, 2000, 10_000)},
    "fairness.group_metrics": {"n_resamples": (200, 1000, 5000), "n_permutations": (200, 1000, 5000),
                               "max_fit_samples": (5000, 20_000, 100_000), "adversarial_epochs": (5, 20, 50)},
    "fairness.counterfactual_text": {"max_samples": (500, 2000, 10_000), "n_resamples": (200, 1000, 5000)},
    "adversarial": {"max_samples": (64, 256, 1024), "steps": (5, 10, 40), "black_box_queries": (50, 200, 1000),
                    "hsj_max_samples": (8, 32, 128), "hsj_iterations": (5, 10, 40)},
    "corruption": {"max_samples": (100, 500, 2000), "n_resamples": (100, 500, 2000)},
    "ood": {"max_samples": (2000, 10_000, 50_000), "max_fit_samples": (1000, 5000, 20_000), "n_synthetic": (100, 500, 2000), "n_resamples": (50, 200, 1000)},
    "explanations": {"max_samples": (4, 12, 48), "n_steps": (16, 32, 64), "n_shap_samples": (16, 64, 256),
                     "n_kernel_samples": (64, 256, 1024), "n_lime_samples": (64, 256, 1024)},
    "explanations.attention": {"max_samples": (4, 8, 32)},
    "poisoning.backdoor_simulation": {"max_samples": (300, 1000, 5000), "max_train_samples": (500, 2000, 10_000),
                                      "epochs": (2, 5, 10),
                                      "max_parameters": (2_000_000, 5_000_000, 200_000_000)},
    "poisoning.backdoor_scan": {"max_samples": (100, 300, 1000), "steps": (100, 300, 1000),
                                "max_train_samples": (500, 2000, 10_000), "top_k": (16, 32, 64),
                                "search_rounds": (1, 2, 3), "search_steps": (10, 20, 40),
                                "max_parameters": (5_000_000, 30_000_000, 200_000_000)},
    "privacy": {"max_samples": (500, 2000, 10_000), "n_resamples": (100, 500, 2000)},
    "privacy.extraction": {"max_samples": (300, 1000, 5000), "budgets": ([100, 500], [100, 500, 1000],
                                                                          [100, 500, 1000, 5000]),
                           "epochs": (10, 30, 60)},
    "efficiency": {"n_repeats": (5, 20, 50), "max_seconds": (3.0, 10.0, 30.0)},
}

#: ``batch_size`` when the config sets none, for inputs of at most ``BATCH_ELEMENTS / DEFAULT_BATCH`` (16,384)
#: numbers each — tables, token ids, raw text, images up to 3×64×64 — and the largest batch ever derived.
DEFAULT_BATCH = 256
#: Input numbers in one model call when the config sets no ``batch_size``: 2**22 float32 numbers, 16 MiB of inputs.
#: Gradient methods hold several tensors of the batch's size (Captum's copies, activations kept for the backward
#: pass), so the inputs of a batch set its memory: 256 images of 3×224×224 are 154 MB per tensor, 16 are 9.6 MB.
BATCH_ELEMENTS = 1 << 22


def default_batch_size(row_shape: tuple[int, ...] | None) -> int:
    """Rows of one model call when the config sets no ``batch_size``, for inputs of ``row_shape`` (one row's
    shape; ``None`` for raw text): the largest power of two up to :data:`DEFAULT_BATCH` whose batch holds at most
    :data:`BATCH_ELEMENTS` input numbers, at least 1. 256 for tables, text and images up to 3×64×64; 64 at
    3×128×128, 16 at 3×224×224, 4 at 3×512×512."""
    elements = math.prod(row_shape) if row_shape else 1
    fits = max(1, BATCH_ELEMENTS // max(elements, 1))
    return min(DEFAULT_BATCH, 1 << (fits.bit_length() - 1))


def batch_size_for(configured: int | None, inputs: Any) -> int:
    """The audit's ``batch_size``: the configured one, else :func:`default_batch_size` of one row of ``inputs``
    (a data set's inputs: an array or row source with a ``shape``, or a list of texts)."""
    if configured is not None:
        return int(configured)
    shape = getattr(inputs, "shape", None)
    return default_batch_size(tuple(int(d) for d in shape[1:]) if shape is not None and len(shape) > 1 else None)


def preset(check_id: str, budget: str) -> dict[str, Any]:
    """The preset values of ``budget`` for one check (empty for a check the budget does not touch)."""
    column = BUDGETS.index(budget)
    return {key: values[column] for key, values in PRESETS.get(check_id, {}).items()}


def with_budget(check_id: str, section: dict[str, Any], budget: str, renamed: dict[str, str]) -> dict[str, Any]:
    """``section`` with the preset of ``budget`` under it: a key the section sets, under its name or a
    deprecated one (``renamed``: old -> new), wins."""
    given = set(section) | {renamed[k] for k in section if k in renamed}
    return {**{k: v for k, v in preset(check_id, budget).items() if k not in given}, **section}


def rename_deprecated(renamed: dict[str, str], data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Map deprecated keys of a check config to their names now: ``(data, used)``, ``used`` the deprecated
    keys given (old -> new).

    Raises
    ------
    ValueError
        Both the old and the new name given.
    """
    used: dict[str, str] = {}
    out = dict(data)
    for old, new in renamed.items():
        if old not in out:
            continue
        if new in out:
            raise ValueError(f"'{old}' is the deprecated name of '{new}': give only '{new}'")
        out[new] = out.pop(old)
        used[old] = new
    return out, used


def deprecation_note(check_id: str, old: str, new: str) -> str:
    """The one-line note a deprecated key leaves on the check's result and the terminal."""
    return (f"checks.{check_id}.{old} is deprecated: write checks.{check_id}.{new} (same meaning; "
            "docs/config.md, Sample budget).")


def budget_keys(check_id: str) -> tuple[str, ...]:
    """The keys of one check that the sample budget sets, in preset order."""
    return tuple(PRESETS.get(check_id, {}))


def budget_table_markdown(renamed: dict[str, dict[str, str]]) -> str:
    """The preset table and the renamed keys (check id -> old -> new), for docs/config.md."""
    lines = ["| check | key | quick | standard | thorough |", "|---|---|---|---|---|"]
    for check_id, keys in PRESETS.items():
        for key, values in keys.items():
            lines.append(f"| `{check_id}` | `{key}` | " + " | ".join(f"`{v}`" for v in values) + " |")
    lines += ["", "Deprecated key names (they still work; each leaves a one-line note on the check's result and "
                  "the terminal):", "", "| check | old key | key now |", "|---|---|---|"]
    for check_id, keys in renamed.items():
        lines += [f"| `{check_id}` | `{old}` | `{new}` |" for old, new in keys.items()]
    return "\n".join(lines)
