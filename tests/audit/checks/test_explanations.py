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


pytestmark = pytest.mark.usefixtures("one_thread")


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
    # Shared zeros where the input equals the baseline (blank borders) must not make unrelated maps agree.
    u = torch.tensor([[0.0] * 20 + [1.0, 2.0, 3.0, 4.0]])
    v = torch.tensor([[0.0] * 20 + [4.0, 3.0, 2.0, 1.0]])
    assert E.rank_agreement(u, v) > 0.5
    assert E.rank_agreement(u, v, mask=u != 0) == pytest.approx(-1.0)
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
    cfg = ExplanationsConfig(max_samples=6, n_steps=8, n_shap_samples=16, n_perturb=2, n_lime_samples=64,
                             n_kernel_samples=80, n_background=8)
    out = Explanations(cfg).run(ctx)
    head = {m.name: m.value for m in out.metrics if m.group is None}
    assert head["ig_completeness_error"] < 0.05
    assert head["shap_efficiency_error"] < 1e-4  # KernelSHAP: values sum to f(x) - E[f(background)]
    ranking = out.evidence[0]
    assert [r[0] for r in ranking.rows] == [1, 2, 3, 4, 5, 6]
    methods = {r[1] for r in ranking.rows}
    assert methods == {"integrated_gradients", "saliency", "gradient_shap", "shap", "lime", "kernel_shap"}
    bars = [f for f in out.evidence if f.type == "figure" and f.kind == "bar"]
    assert bars and bars[0].title == "Global importance: mean |kernel_shap| per feature"
    values = bars[0].data["values"]
    assert values == sorted(values, reverse=True)  # ranked
    # Same seed, same explanations (LIME and KernelSHAP included).
    again = Explanations(cfg).run(AuditContext(adapter, {"eval": ds}, seed=0, batch_size=128))
    assert [(m.name, m.group, m.value) for m in again.metrics] == [(m.name, m.group, m.value) for m in out.metrics]
    # The trained model's explanations are faithful: restoring the top features recovers the prediction.
    assert head["faithfulness_gap"] > 0.1


def test_check_on_image_cnn_runs_lime_over_superpixels_and_draws_heatmaps(tiny_cnn: nn.Module) -> None:
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    adapter = TorchAdapter(tiny_cnn, input_kind="image", device=torch.device("cpu"), input_range=(0.0, 1.0))
    ds = AuditDataset(name="eval", inputs=x, target=np.zeros(20, dtype=np.int64), class_names=None, sensitive_features=None,
                      feature_names=None, input_kind="image", path="mem", format="npz", sha256="0")
    cfg = ExplanationsConfig(methods=["integrated_gradients", "lime", "kernel_shap"], max_samples=3, n_steps=8,
                             n_lime_samples=32, n_perturb=2, curve_steps=4)
    out = Explanations(cfg).run(AuditContext(adapter, {"eval": ds}, seed=0))
    assert {r[1] for r in out.evidence[0].rows} == {"integrated_gradients", "lime"}
    skipped = next(e for e in out.evidence if e.title == "Methods not run")
    assert skipped.rows[0][0] == "kernel_shap" and "tabular" in skipped.rows[0][1]
    heat = next(e for e in out.evidence if e.title == "Attribution heatmaps")
    assert heat.data["titles"][:3] == ["input (confident error)", "integrated_gradients", "lime"]
    lime_map = np.asarray(heat.data["images"][2])
    assert lime_map.shape == (8, 8) and np.all(lime_map[::2, ::2] == lime_map[1::2, 1::2])  # constant on 2×2 superpixels
    assert "2×2-pixel grid (16 superpixels)" in out.method and "set to 0" in out.method


def test_max_sensitivity_known_cases() -> None:
    model = linear([[2.0, -1.0, 0.5], [0.0, 1.0, 1.0]])
    x, target = torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([0])
    # Saliency of a linear model is its weight row, whatever the input: no sensitivity at all.
    sal = E.sensitivity(lambda inp, tgt: E.saliency(model, inp, tgt, None), x, target, radius=0.1, n_perturb=4)
    assert float(sal[0]) == 0.0
    # IG from 0 is w * x: a move of at most r per feature changes it by at most r * |w|.
    ig = E.sensitivity(lambda inp, tgt: E.integrated_gradients(model, inp, tgt, torch.zeros(1, 3), 8)[0], x, target,
                       radius=0.1, n_perturb=16)
    bound = 0.1 * torch.tensor([2.0, 1.0, 0.5]).norm() / (x[0] * torch.tensor([2.0, -1.0, 0.5])).norm()
    assert 0.0 < float(ig[0]) <= float(bound) + 1e-6


def test_check_on_exported_program_runs_shap(tmp_path, tiny_cnn: nn.Module) -> None:
    """A clean torch.export (.pt2) model: ``ExportedProgram.module()`` refuses ``train()``/``eval()``, which
    SHAP's GradientExplainer calls; the audit must explain it all the same (a crash was exit 3)."""
    from models.loaders import load_model

    x = np.random.default_rng(0).random((12, 1, 8, 8), dtype=np.float32)
    path = tmp_path / "model.pt2"
    program = torch.export.export(tiny_cnn, (torch.from_numpy(x[:4]),), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    torch.export.save(program, str(path))
    adapter = load_model(path, device="cpu", input_kind="image", input_range=(0.0, 1.0))
    ds = AuditDataset(name="eval", inputs=x, target=np.zeros(12, dtype=np.int64), class_names=None, sensitive_features=None,
                      feature_names=None, input_kind="image", path="mem", format="npz", sha256="0")
    cfg = ExplanationsConfig(methods=["shap", "integrated_gradients"], max_samples=2, n_steps=4, n_shap_samples=8,
                             n_perturb=2, curve_steps=4)
    out = Explanations(cfg).run(AuditContext(adapter, {"eval": ds}, seed=0))
    assert {r[1] for r in out.evidence[0].rows} == {"shap", "integrated_gradients"}
    # SHAP on the exported program gives the values of the eager model it was exported from.
    target = torch.zeros(2, dtype=torch.long)
    xs, bg = torch.from_numpy(x[:2]), torch.from_numpy(x[4:12])
    torch.testing.assert_close(E.shap_gradient(adapter.as_module(), xs, target, bg, n_samples=8),
                               E.shap_gradient(tiny_cnn, xs, target, bg, n_samples=8), rtol=1e-4, atol=1e-5)
    # Fine-tuning copies (poisoning, adversarial training, extraction) switch modes too; the outputs stay the exported ones.
    import copy

    twin = copy.deepcopy(adapter.as_module()).train()
    with torch.no_grad():
        torch.testing.assert_close(twin(xs), tiny_cnn(xs))
    assert twin.eval() is twin and not adapter.training_mode()


def test_exported_program_with_a_fixed_batch_is_explained(tmp_path, tiny_cnn: nn.Module) -> None:
    """torch.export's default is a static batch size: the module for Captum and SHAP (``as_module``) pads any
    batch to it like ``logits`` does (a guard error was exit 3), with the eager model's logits and gradients."""
    from models.loaders import load_model

    x = np.random.default_rng(0).random((12, 1, 8, 8), dtype=np.float32)
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(tiny_cnn, (torch.from_numpy(x[:4]),)), str(path))
    adapter = load_model(path, device="cpu", input_kind="image", input_range=(0.0, 1.0))
    assert adapter.fixed_batch_size == 4
    for n in (1, 3, 4, 7):
        xs = torch.from_numpy(x[:n]).requires_grad_(True)
        ref = torch.from_numpy(x[:n]).requires_grad_(True)
        out, eager = adapter.as_module()(xs), tiny_cnn(ref)
        torch.testing.assert_close(out, eager)
        out[:, 1].sum().backward()
        eager[:, 1].sum().backward()
        torch.testing.assert_close(xs.grad, ref.grad)
    ds = AuditDataset(name="eval", inputs=x, target=np.zeros(12, dtype=np.int64), class_names=None, sensitive_features=None,
                      feature_names=None, input_kind="image", path="mem", format="npz", sha256="0")
    cfg = ExplanationsConfig(methods=["shap", "integrated_gradients", "gradient_shap", "saliency"], max_samples=2,
                             n_steps=4, n_shap_samples=8, n_perturb=2, curve_steps=4)
    out = Explanations(cfg).run(AuditContext(adapter, {"eval": ds}, seed=0))
    assert {r[1] for r in out.evidence[0].rows} == {"shap", "integrated_gradients", "gradient_shap", "saliency"}
