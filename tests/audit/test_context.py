"""AuditContext: outputs for a subset of rows are computed for those rows only, and equal the whole set's."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from audit.context import AuditContext
from audit.data import AuditDataset
from models.adapter import TorchAdapter


def _ds(name: str, x: np.ndarray) -> AuditDataset:
    return AuditDataset(name=name, inputs=x, target=np.arange(len(x)) % 2, class_names=None, sensitive_features=None,
                        feature_names=None, input_kind="tabular", path="mem", format="npz", sha256="0")


def counting_context(n_ref: int = 500) -> tuple[AuditContext, list[int]]:
    """A context whose adapter records how many rows each logits/features call is given."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    adapter = TorchAdapter(model, input_kind="tabular", device=torch.device("cpu"))
    seen: list[int] = []
    for method in ("predict_logits", "predict_features"):
        inner = getattr(adapter, method)

        def counted(inputs, *args, _inner=inner, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            seen.append(len(inputs))
            return _inner(inputs, *args, **kwargs)

        setattr(adapter, method, counted)
    data = {"eval": _ds("eval", rng.normal(size=(40, 4)).astype(np.float32)),
            "reference": _ds("reference", rng.normal(size=(n_ref, 4)).astype(np.float32))}
    return AuditContext(adapter, data, batch_size=64), seen


def test_logits_and_features_for_rows_run_the_model_on_those_rows_only() -> None:
    ctx, seen = counting_context()
    rows = np.array([3, 10, 11, 400])
    logits = ctx.logits_for("reference", rows)
    feats = ctx.features_for("reference", rows)
    assert seen == [4, 4]  # never the 500 rows of the whole set
    ctx.logits_for("reference", rows)
    ctx.features_for("reference", rows)
    assert seen == [4, 4]  # cached per (data set, rows)
    full, full_feats = ctx.logits("reference"), ctx.features("reference")
    assert torch.allclose(logits, full[rows], atol=1e-6) and torch.allclose(feats, full_feats[rows], atol=1e-6)
    seen.clear()
    assert torch.equal(ctx.logits_for("reference", rows[:2]), full[rows[:2]])  # sliced from the whole set's cache
    assert seen == []


def test_privacy_computes_logits_for_its_sampled_rows_only() -> None:
    from audit.checks.privacy import MembershipInference, PrivacyConfig

    ctx, seen = counting_context()
    out = MembershipInference(PrivacyConfig(max_samples=30, n_resamples=0)).run(ctx)
    assert out.n_samples == 60 and seen == [30, 30]  # 30 members, 30 non-members: not the 500 reference rows
    assert "before any logits are computed" in out.method


def test_ood_computes_reference_features_for_its_fitting_rows_only() -> None:
    from audit.checks.ood import OODConfig, OODDetection

    ctx, seen = counting_context()
    out = OODDetection(OODConfig(max_fit_samples=50, n_synthetic=10, n_resamples=0)).run(ctx)
    assert 500 not in seen and 50 in seen  # the reference set's features for 50 rows, never all 500
    assert "fitted on 50 of the reference set's 500 samples" in out.method
