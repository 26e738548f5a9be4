"""The runner's work before any check: preflight of config values against the loaded model and data."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.config import load_config
from audit.errors import InputError
from audit.runner import run_audit


def test_preflight_refutes_a_corruption_of_another_kind_before_any_check_runs(torchscript_file: Path,
                                                                                image_npz: Path) -> None:
    """`missing_values` is a tabular corruption: on an image model the config is wrong, exit 2, and no
    check (not even performance, which runs first) has run."""
    cfg = load_config(None, {"model.path": str(torchscript_file), "data.eval.path": str(image_npz), "device": "cpu"},
                      ["energy.track=false", "checks.corruption.corruptions=[missing_values]"])
    ran: list[str] = []
    with pytest.raises(InputError, match=r"key 'checks\.corruption\.corruptions': missing_values do not apply to "
                                         r"image inputs; choose from gaussian_noise"):
        run_audit(cfg, on_check=lambda r: ran.append(r.id))
    assert ran == []
