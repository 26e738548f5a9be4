"""Attributions against closed forms, faithfulness curves on known cases, and the check end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit import explain as E
from audit.checks.explanations import Explanations, ExplanationsConfig
from audit.context import AuditContext
from audit.data import AuditDataset
from models.adapter import TorchAdapter


def linear(w: list[list[float]]) -> nn.Module:
    m = nn.Linear(len(w[0]), len(w), bias=True)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(w))
        m.bias.zero_()
    return m.eval()


X = torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]])
W = [[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]]


def test_integrated_gradients_closed_form_and_completeness() -> None:
    model = linear(W)
    base = torch.zeros(1, 3)
    target = torch.tensor([0, 1])
    attr, delta = E.integrated_gradients(model, X, target, base, n_steps=8)
    expected = (X - base) * torch.tensor(W)[target]  # linear model: IG = (x - b) * w
    torch.testing.assert_close(attr, expected)
    assert float(delta.abs().max()) < 1e-5
    torch.testing.assert_close(attr.sum(1), model(X).gather(1, target[:, None]).squeeze(1) - model(base)[0, target])


def test_shap_gradient_explainer_on_linear_model_is_w_times_centred_input() -> None:
    model = linear(W)
    # Expected gradients sample background rows; with identical rows the expectation is exact.
    background = torch.tensor([[0.3, -0.2, 0.1]]).repeat(20, 1)
    target = torch.tensor([0, 1])
    values = E.shap_gradient(model, X, target, background, n_samples=64)
    expected = (X - background.mean(0)) * torch.tensor(W)[target]
    torch.testing.assert_close(values, expected, atol=1e-4, rtol=1e-4)
    # SHAP's efficiency property: values sum to f(x) - E[f(background)].
    fx = model(X).gather(1, target[:, None]).squeeze(1)
    torch.testing.assert_close(values.sum(1), fx - model(background).mean(0)[target], atol=1e-4, rtol=1e-4)


def test_deletion_and_insertion_curves_known_case() -> None:
    # Two classes; class 0's logit is 4*x0 + 0*x1. Deleting x0 first drops the probability at once.
    model = linear([[4.0, 0.0], [0.0, 0.0]])
    x = torch.tensor([[1.0, 1.0]])
    target = torch.tensor([0])
    good = torch.tensor([[1.0, 0.0]])  # x0 is the important one
    bad = torch.tensor([[0.0, 1.0]])
    d_good, i_good = E.deletion_insertion(model, x, target, good, torch.zeros(1, 2), n_steps=2)
    d_bad, i_bad = E.deletion_insertion(model, x, target, bad, torch.zeros(1, 2), n_steps=2)
    p1, p0 = 1 / (1 + np.exp(-4)), 0.5
    np.testing.assert_allclose(d_good[:, 0], [p1, p0, p0], rtol=1e-6)
    np.testing.assert_allclose(d_bad[:, 0], [p1, p1, p0], rtol=1e-6)
    assert d_good.mean() < d_bad.mean() and i_good.mean() > i_bad.mean()


def test_rank_agreement_and_randomisation() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert E.rank_agreement(a, a * 10) == pytest.approx(1.0)
    assert E.rank_agreement(a, -a) == pytest.approx(-1.0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    clone = E.randomized_copy(model, seed=1)
    for p, q in zip(model.parameters(), clone.parameters()):
        assert not torch.equal(p, q)


def test_check_on_digits_mlp() -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(x[:1000])), torch.from_numpy(y[:1000])).backward()
        opt.step()
    adapter = TorchAdapter(model.eval(), input_kind="tabular", device=torch.device("cpu"), input_range=(0.0, 1.0))
    ds = AuditDataset(name="eval", inputs=x[1000:1200], target=y[1000:1200], class_names=None, sensitive_features=None,
                      feature_names=[f"px{i}" for i in range(64)], input_kind="tabular", path="mem", format="npz", sha256="0")
    ctx = AuditContext(adapter, {"eval": ds}, seed=0, batch_size=128)
    out = Explanations(ExplanationsConfig(n_explain=6, n_steps=8, n_shap_samples=16, n_perturb=2)).run(ctx)
    head = {m.name: m.value for m in out.metrics if m.group is None}
    assert head["ig_completeness_error"] < 0.05
    ranking = out.evidence[0]
    assert [r[0] for r in ranking.rows] == [1, 2, 3, 4]
    methods = {r[1] for r in ranking.rows}
    assert methods == {"integrated_gradients", "saliency", "gradient_shap", "shap"}
    assert any(f.kind == "bar" for f in out.evidence if f.type == "figure")  # global importance for tabular
    # The trained model's explanations are faithful: restoring the top features recovers the prediction.
    assert head["faithfulness_gap"] > 0.1
