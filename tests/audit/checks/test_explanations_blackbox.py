"""Gradient-free attributions: KernelSHAP against closed forms and SHAP's efficiency, LIME against direct
calls of the lime package and known answers, seeding, sample selection, and a black-box (ONNX) model
explained end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audit import explain as E
from audit import explain_blackbox as B
from audit.checks.explanations import Explanations, ExplanationsConfig
from audit.context import AuditContext
from audit.data import AuditDataset
from models.adapter import TorchAdapter

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def linear(w: np.ndarray) -> nn.Module:
    m = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(w).float())
        m.bias.fill_(0.5)
    return m.eval()


def test_kernel_shap_on_a_linear_model_is_w_times_centred_input() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 4))
    model = linear(w)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    background = rng.normal(size=(6, 4)).astype(np.float32)
    target = np.array([0, 1, 1])
    values, expected = B.kernel_shap(model, x, target, CPU, background=background, n_samples=64, seed=0)
    # Independent features and a linear model: phi_j = w_j (x_j - E[x_j]), exactly (2**4 coalitions enumerated).
    np.testing.assert_allclose(values, w[target] * (x - background.mean(0)), atol=1e-5)
    with torch.no_grad():
        fx = model(torch.from_numpy(x)).numpy()[np.arange(3), target]
        ef = model(torch.from_numpy(background)).numpy().mean(0)[target]
    np.testing.assert_allclose(values.sum(1), fx - ef, atol=1e-5)  # efficiency: sum = f(x) - E[f(x)]
    np.testing.assert_allclose(expected, ef, atol=1e-6)


def test_kernel_shap_efficiency_on_a_small_mlp_with_sampled_coalitions() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 12)).astype(np.float32)
    background = rng.normal(size=(5, 12)).astype(np.float32)
    target = np.array([2, 0])
    values, expected = B.kernel_shap(model, x, target, CPU, background=background, n_samples=100, seed=0)
    with torch.no_grad():
        fx = model(torch.from_numpy(x)).numpy()[np.arange(2), target]
    np.testing.assert_allclose(values.sum(1), fx - expected, atol=1e-5)
    again, _ = B.kernel_shap(model, x, target, CPU, background=background, n_samples=100, seed=0)
    np.testing.assert_array_equal(values, again)  # seeded: identical


def test_lime_tabular_matches_a_direct_lime_call() -> None:
    from lime.lime_tabular import LimeTabularExplainer

    rng = np.random.default_rng(0)
    model = linear(rng.normal(size=(2, 5)))
    train = rng.normal(size=(40, 5)).astype(np.float32)
    x = train[:2]
    target = np.array([1, 0])
    ours = B.lime_tabular(model, x, target, CPU, training_data=train, n_samples=200, seed=7)
    ref = LimeTabularExplainer(train.astype(np.float64), mode="classification", discretize_continuous=True,
                               feature_selection="none", random_state=7)
    for i in range(2):
        probs = lambda rows: torch.softmax(model(torch.from_numpy(rows).float()), 1).detach().numpy()  # noqa: E731
        exp = ref.explain_instance(x[i].astype(np.float64), probs, labels=(int(target[i]),), num_features=5, num_samples=200)
        expected = np.zeros(5)
        for j, wt in exp.local_exp[int(target[i])]:
            expected[j] = wt
        np.testing.assert_allclose(ours[i], expected, rtol=1e-4, atol=1e-6)


def test_lime_image_finds_the_only_superpixel_that_matters_and_is_seeded() -> None:
    class CornerModel(nn.Module):  # class 1's logit is 8 × the mean of the top-left 2×2 superpixel
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = 8 * x[:, 0, :2, :2].mean((1, 2))
            return torch.stack([torch.zeros_like(s), s], 1)

    x = np.ones((2, 1, 8, 8), dtype=np.float32)
    a, seg = B.lime_image(CornerModel(), x, np.array([1, 1]), CPU, n_samples=64, seed=1)
    assert "2×2-pixel grid (16 superpixels)" in seg
    for i in range(2):
        assert np.abs(a[i, 0, :2, :2]).min() > 10 * np.abs(a[i, 0, 2:, 2:]).max()
    again, _ = B.lime_image(CornerModel(), x, np.array([1, 1]), CPU, n_samples=64, seed=1)
    np.testing.assert_array_equal(a, again)
    other, _ = B.lime_image(CornerModel(), x, np.array([1, 1]), CPU, n_samples=64, seed=2)
    assert not np.array_equal(a, other)
    assert B.grid_segments(4, 4, 2).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


def test_pick_samples_takes_confident_errors_then_uncertain_then_random() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.55, 0.45], [0.7, 0.3]])
    y = np.array([1, 0, 1, 1, 0, 0])  # rows 0 and 3 are errors; row 3 the more confident one
    idx, why = E.pick_samples(probs, y, 4, np.random.default_rng(0), errors_fraction=0.5, uncertain_fraction=0.25)
    assert idx[:3].tolist() == [3, 0, 4] and why[:3] == ["confident error", "confident error", "least confident"]
    assert why[3] == "random" and len(set(idx.tolist())) == 4
    with pytest.raises(ValueError, match="at most 1"):
        ExplanationsConfig(errors_fraction=0.7, uncertain_fraction=0.5)


def _digits(n_train: int = 600) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def test_onnx_black_box_gets_gradient_free_explanations(tmp_path: Path) -> None:
    from models.loaders import load_model

    x, y = _digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(x[:600])), torch.from_numpy(y[:600])).backward()
        opt.step()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model.eval(), (torch.from_numpy(x[:2]),), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    adapter = load_model(path, device="cpu")
    assert not adapter.differentiable
    ds = AuditDataset(name="eval", inputs=x[600:700], target=y[600:700], class_names=None, sensitive_features=None,
                      feature_names=[f"px{i}" for i in range(64)], input_kind="tabular", path="mem", format="npz", sha256="0")
    cfg = ExplanationsConfig(max_samples=4, n_lime_samples=64, n_kernel_samples=80, n_background=8, curve_steps=4)
    out = Explanations(cfg).run(AuditContext(adapter, {"eval": ds}, seed=0))
    assert {r[1] for r in out.evidence[0].rows} == {"lime", "kernel_shap"}
    skipped = {r[0]: r[1] for e in out.evidence if e.title == "Methods not run" for r in e.rows}
    assert set(skipped) == {"integrated_gradients", "saliency", "gradient_shap", "shap"}
    assert all("needs input gradients" in r and "onnx" in r for r in skipped.values())
    head = {m.name: m.value for m in out.metrics if m.group is None}
    assert head["shap_efficiency_error"] < 1e-4
    assert head["faithfulness_gap"] > 0.1
    assert any(f.kind == "bar" and "kernel_shap" in f.title for f in out.evidence if f.type == "figure")
    assert any("weights are not accessible" in s for s in out.limitations)


def test_shap_gradient_one_class_at_a_time_agrees_with_shap_over_all_classes() -> None:
    import shap

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    x, background, target = torch.randn(4, 5), torch.randn(10, 5), torch.tensor([0, 2, 2, 1])
    ours = E.shap_gradient(model, x, target, background, n_samples=1000, seed=1).numpy()
    ref = np.asarray(shap.GradientExplainer(model, background).shap_values(x, nsamples=1000, rseed=1))
    ref = np.moveaxis(ref, -1, 0)[target.numpy(), np.arange(4)]
    # Two Monte Carlo estimates of the same expected gradients (different draws): close, not equal.
    assert np.abs(ours - ref).mean() < 0.06 * np.abs(ref).mean()
    with torch.no_grad():  # and both keep SHAP's efficiency, up to the sampling error
        gap = model(x).gather(1, target[:, None]).squeeze(1) - model(background).mean(0)[target]
    np.testing.assert_allclose(ours.sum(1), gap.numpy(), atol=0.05)


def test_shap_log_formatting_is_skipped_only_while_the_shap_logger_drops_it() -> None:
    with B.quiet_shap():
        assert repr(np.zeros((2, 3))) == "<array (2, 3)>"  # what KernelExplainer's f-strings format, unread
    assert repr(np.zeros(2)) == "array([0., 0.])"
    log = logging.getLogger("shap")
    level = log.level
    log.setLevel(logging.INFO)
    try:
        with B.quiet_shap():  # somebody reads SHAP's log: the arrays are formatted as usual
            assert repr(np.zeros(2)) == "array([0., 0.])"
    finally:
        log.setLevel(level)
