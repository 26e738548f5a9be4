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


# ------------------------------------------------------------------ ART's black-box attack and the per-attack table
def test_black_box_attack_equals_art_on_the_same_inputs(overfit) -> None:
    """Our plumbing (cached probabilities, split, seed) gives ART's own scores when ART queries the model itself."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import PyTorchClassifier

    from audit.checks.privacy import black_box_attack

    model, x_tr, y_tr, x_te, y_te = overfit
    with torch.no_grad():
        p_in = torch.softmax(model(torch.from_numpy(x_tr)), 1).numpy()
        p_out = torch.softmax(model(torch.from_numpy(x_te)), 1).numpy()
    train = np.arange(30)
    ours_in, ours_out = black_box_attack(p_in, y_tr, p_out, y_te, train, train, n_classes=2, model="lr", seed=3)
    clf = PyTorchClassifier(nn.Sequential(model, nn.Softmax(dim=1)), loss=nn.CrossEntropyLoss(), input_shape=(10,),
                            nb_classes=2, device_type="cpu")
    np.random.seed(3)
    art = MembershipInferenceBlackBox(clf, input_type="prediction", attack_model_type="lr")
    art.fit(x_tr[:30], y_tr[:30], x_te[:30], y_te[:30])
    np.testing.assert_allclose(ours_in, art.infer(x_tr[30:], y_tr[30:], probabilities=True).ravel(), atol=1e-4)
    np.testing.assert_allclose(ours_out, art.infer(x_te[30:], y_te[30:], probabilities=True).ravel(), atol=1e-4)


def test_every_attack_reported_with_interval_and_sizes(overfit) -> None:
    out = MembershipInference(PrivacyConfig(n_resamples=100)).run(ctx_of(*overfit))
    aucs = {m.group: m for m in out.metrics if m.name == "attack_auc"}
    advs = {m.group: m for m in out.metrics if m.name == "attack_advantage"}
    assert set(aucs) == set(advs) == {"loss_threshold", "art_black_box", "art_rule_based"}
    for m in [*aucs.values(), *advs.values()]:
        assert m.ci_low <= m.value <= m.ci_high and m.ci_level == 0.95
    assert aucs["loss_threshold"].n == 120 and aucs["art_black_box"].n == 60  # held-out half
    assert aucs["art_black_box"].value > 0.7  # the memorising MLP leaks to a trained attacker too
    m = {x.name: x for x in out.metrics if x.group is None}
    # the rule's AUROC and advantage are one number seen two ways: AUROC = 0.5 + (TPR - FPR) / 2
    assert aucs["art_rule_based"].value == pytest.approx(0.5 + m["gap_attack_advantage"].value / 2)
    assert advs["loss_threshold"].value == pytest.approx(m["membership_advantage"].value)
    assert m["strongest_attack_auc"].value == pytest.approx(max(a.value for a in aucs.values()))
    strongest = [row for row in out.evidence[0].rows if row[-1] == "yes"]
    assert len(strongest) == 1 and strongest[0][1] == pytest.approx(m["strongest_attack_auc"].value, abs=1e-4)


def test_identical_member_and_nonmember_distributions_give_auc_half() -> None:
    """Neither set was trained on: no attack can do better than chance (0.5 inside every interval)."""
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = rng.normal(size=(600, 6)).astype(np.float32)
    with torch.no_grad():
        y = (model(torch.from_numpy(x)).argmax(1).numpy() + (rng.random(600) < 0.3)) % 3  # 70% correct everywhere
    out = MembershipInference(PrivacyConfig(n_resamples=200)).run(ctx_of(model, x[:300], y[:300], x[300:], y[300:]))
    for metric in out.metrics:
        if metric.name == "attack_auc":
            assert metric.ci_low <= 0.5 <= metric.ci_high, metric
            assert abs(metric.value - 0.5) < 0.1, metric


def test_bootstrap_advantage_known_answers() -> None:
    from audit.checks.privacy import bootstrap_advantage

    rng = np.random.default_rng(0)
    separated = bootstrap_advantage(np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0]), 50, rng)
    assert np.all(separated == 1.0)
    same = bootstrap_advantage(np.zeros(20), np.zeros(20), 50, rng)
    assert np.all(same == 0.0)
    a, b = rng.normal(1, 1, 200), rng.normal(0, 1, 200)
    assert np.median(bootstrap_advantage(a, b, 300, rng)) == pytest.approx(membership_advantage(a, b), abs=0.05)


def test_black_box_attack_needs_enough_samples(overfit) -> None:
    model, x_tr, y_tr, x_te, y_te = overfit
    out = MembershipInference(PrivacyConfig(n_resamples=0)).run(ctx_of(model, x_tr[:15], y_tr[:15], x_te[:15], y_te[:15]))
    assert "art_black_box" not in {m.group for m in out.metrics}
    assert any("black-box attack was not run" in line for line in out.limitations)
