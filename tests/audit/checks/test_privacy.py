"""Membership inference against ART's rule-based attack and known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit.checks.privacy import MembershipInference, PrivacyConfig, membership_advantage
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import SkipCheck
from audit.runner import judge
from models.adapter import TorchAdapter


def ds(name: str, x: np.ndarray, y: np.ndarray) -> AuditDataset:
    return AuditDataset(name=name, inputs=x, target=y, class_names=None, sensitive_features=None, feature_names=None,
                        input_kind="tabular", path="mem", format="npz", sha256="0")


@pytest.fixture(scope="module")
def overfit():
    """An MLP that memorised 60 noisy training points: a textbook membership leak."""
    rng = np.random.default_rng(0)
    x_tr, x_te = rng.normal(size=(60, 10)).astype(np.float32), rng.normal(size=(60, 10)).astype(np.float32)
    y_tr, y_te = rng.integers(0, 2, 60), rng.integers(0, 2, 60)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 128), nn.ReLU(), nn.Linear(128, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(x_tr)), torch.from_numpy(y_tr)).backward()
        opt.step()
    return model.eval(), x_tr, y_tr, x_te, y_te


def ctx_of(model, x_tr, y_tr, x_te, y_te) -> AuditContext:
    adapter = TorchAdapter(model, input_kind="tabular", device=torch.device("cpu"))
    return AuditContext(adapter, {"eval": ds("eval", x_te, y_te), "reference": ds("reference", x_tr, y_tr)}, seed=0)


def test_overfit_model_leaks_and_gap_matches_art(overfit) -> None:
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased
    from art.estimators.classification import PyTorchClassifier

    model, x_tr, y_tr, x_te, y_te = overfit
    out = MembershipInference(PrivacyConfig(n_resamples=100)).run(ctx_of(*overfit))
    m = {x.name: x for x in out.metrics}
    assert m["membership_auc"].value > 0.8 and m["membership_auc"].ci_low < m["membership_auc"].value
    clf = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=(10,), nb_classes=2, device_type="cpu")
    attack = MembershipInferenceBlackBoxRuleBased(clf)
    tpr = attack.infer(x_tr, y_tr).mean()
    fpr = attack.infer(x_te, y_te).mean()
    assert m["gap_attack_advantage"].value == pytest.approx(tpr - fpr)
    status, outcomes = judge(out, {}, MembershipInference.default_thresholds)
    assert status == "warn" and outcomes[0].source == "default"


def test_membership_advantage_known_answers() -> None:
    assert membership_advantage(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == pytest.approx(1.0)
    assert membership_advantage(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == pytest.approx(0.0, abs=1e-12)


def test_skips_without_training_data(overfit) -> None:
    model, x_tr, y_tr, x_te, y_te = overfit
    adapter = TorchAdapter(model, input_kind="tabular", device=torch.device("cpu"))
    with pytest.raises(SkipCheck, match="data.reference"):
        MembershipInference().run(AuditContext(adapter, {"eval": ds("eval", x_te, y_te)}))
