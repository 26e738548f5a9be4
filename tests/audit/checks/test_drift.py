"""Drift against SciPy on the same data, and known answers for PSI and BH."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from audit.checks.drift import Drift, DriftConfig, benjamini_hochberg, population_stability_index
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import SkipCheck
from models.adapter import TorchAdapter


def ds(name: str, x: np.ndarray) -> AuditDataset:
    return AuditDataset(name=name, inputs=x.astype(np.float32), target=np.zeros(len(x), np.int64), class_names=None,
                        sensitive_features=None, feature_names=["age", "income", "group"], input_kind="tabular",
                        path="mem", format="csv", sha256="0")


def make(x_ref: np.ndarray, x_ev: np.ndarray) -> AuditContext:
    adapter = TorchAdapter(torch.nn.Linear(3, 2), input_kind="tabular", device=torch.device("cpu"))
    return AuditContext(adapter, {"eval": ds("eval", x_ev), "reference": ds("reference", x_ref)})


def data(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    return np.c_[rng.normal(40, 10, n), rng.normal(50 + shift, 5, n), rng.integers(0, 3, n)]


def test_matches_scipy_and_flags_the_shifted_feature() -> None:
    rng = np.random.default_rng(0)
    x_ref, x_ev = data(rng, 400, 0), data(rng, 300, 5)
    out = Drift(DriftConfig()).run(make(x_ref, x_ev))
    table = out.evidence[0]
    by_name = {row[0]: row for row in table.rows}
    assert by_name["income"][5] == "yes" and by_name["age"][5] == "no"
    assert by_name["age"][2] == pytest.approx(stats.ks_2samp(x_ref[:, 0], x_ev[:, 0]).pvalue, abs=1e-6)
    counts = np.array([[np.sum(x[:, 2] == v) for v in range(3)] for x in (x_ref, x_ev)])
    assert by_name["group"][1] == "chi-square"
    assert by_name["group"][2] == pytest.approx(stats.chi2_contingency(counts)[1], abs=1e-6)
    assert out.metrics[0].value == pytest.approx(1 / 3)
    assert out.status_floor == "warn"  # income PSI is a major shift


def test_psi_known_answers() -> None:
    x = np.arange(1000, dtype=float)
    assert population_stability_index(x, x.copy()) == pytest.approx(0.0, abs=1e-9)
    # Two categories 50/50 -> 80/20: (0.3 ln 1.6) + (-0.3 ln 0.4) = 0.4159
    ref = np.r_[np.zeros(50), np.ones(50)]
    cur = np.r_[np.zeros(80), np.ones(20)]
    assert population_stability_index(ref, cur) == pytest.approx(0.3 * np.log(1.6) - 0.3 * np.log(0.4), rel=1e-3)


def test_benjamini_hochberg_known_answer() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> *4/rank = 0.02, 0.02, 0.04, 0.04
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])


def test_skips_without_reference() -> None:
    adapter = TorchAdapter(torch.nn.Linear(3, 2), input_kind="tabular", device=torch.device("cpu"))
    ctx = AuditContext(adapter, {"eval": ds("eval", np.zeros((5, 3)))})
    with pytest.raises(SkipCheck, match="give data.reference"):
        Drift().run(ctx)
