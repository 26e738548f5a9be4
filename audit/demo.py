"""``deepaudit demo``: the embedded default. Trains small models on data that ships inside PyPI
packages (cached), and returns the config that audits them."""

from __future__ import annotations

import os
from pathlib import Path

from audit.config import AuditConfig, validate_config
from models.train import train_digits_cnn


def default_cache_dir() -> Path:
    env = os.environ.get("DEEPAUDIT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepaudit"


def demo_config(out_dir: Path, *, device: str = "auto", seed: int = 0, cache_dir: Path | None = None) -> AuditConfig:
    """Train (or reuse) the demo models and return the audit config for them."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    weights = train_digits_cnn(cache / "demo" / f"digits-lenet5-seed{seed}", seed=seed)
    data = {
        "model": {"path": str(weights)},
        "data": {"eval": {"path": str(weights.parent / "test.npz")}},
        "device": device,
        "seed": seed,
        "output": {"dir": str(out_dir), "junit": str(Path(out_dir) / "junit.xml"),
                   "markdown": str(Path(out_dir) / "summary.md"), "card": True},
        "checks": {"performance": {"thresholds": {"accuracy": {"min": 0.9}, "ece": {"max": 0.1, "level": "warn"}}}},
        "attestations": {
            "intended_purpose": {"statement": "Demonstration only: a small CNN that reads 8x8 handwritten digits.",
                                 "owner": "deepaudit demo", "status": "stated"},
        },
    }
    return validate_config(data, "demo")
