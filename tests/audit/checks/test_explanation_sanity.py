"""The explanation check's own safeguards on models where the answer is known: the model-parameter
randomisation test (Adebayo et al. 2018) and Captum's infidelity (Yeh et al. 2019)."""

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


class ScaledSquares(nn.Module):
    """Logits ``s * (sum x², -sum x²)``: the only weight is a scale, so the *ranking* of every attribution is
    fixed by the input alone. Re-drawing the weight cannot change it: the randomisation test must fail."""

    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor([1.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = (x**2).sum(1, keepdim=True)
        return torch.cat([self.s * q, -self.s * q], 1)


def linear(w: list[list[float]]) -> nn.Module:
    m = nn.Linear(len(w[0]), len(w))
    with torch.no_grad():
        m.weight.copy_(torch.tensor(w))
        m.bias.zero_()
    return m.eval()


def run(model: nn.Module, x: np.ndarray, **cfg) -> tuple[dict, dict, object]:  # noqa: ANN003
    adapter = TorchAdapter(model.eval(), input_kind="tabular", device=torch.device("cpu"))
    y = np.zeros(len(x), dtype=np.int64)
    ds = AuditDataset(name="eval", inputs=x, target=y, class_names=None, sensitive_features=None, feature_names=None,
                      input_kind="tabular", path="mem", format="npz", sha256="0")
    cfg = {"methods": ["integrated_gradients", "saliency"], "max_samples": 6, "n_steps": 8, "n_perturb": 4,
           "curve_steps": 4, **cfg}
    out = Explanations(ExplanationsConfig(**cfg)).run(AuditContext(adapter, {"eval": ds}, seed=0, batch_size=64))
    head = {m.name: m.value for m in out.metrics if m.group is None}
    per_method = {(m.name, m.group): m.value for m in out.metrics if m.group is not None}
    return head, per_method, out


def data(n: int = 40, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_randomisation_check_fails_methods_whose_maps_survive_randomisation() -> None:
    head, per_method, out = run(ScaledSquares(), data())
    for method in ("integrated_gradients", "saliency"):
        assert per_method[("randomization_similarity", method)] == pytest.approx(1.0)
    assert head["methods_failing_sanity"] == 2 and out.status_floor == "warn"
    ranking = out.evidence[0]
    assert {r[1]: r[-1] for r in ranking.rows} == {"integrated_gradients": "FAIL", "saliency": "FAIL"}
    assert "2 method(s) failed the randomisation sanity check" in out.summary


def test_randomisation_check_passes_methods_on_a_linear_model() -> None:
    """On ±1 inputs |x - baseline| is about 1 everywhere, so IG ((x - baseline) * w) and saliency (|w|) rank
    features by |w|: re-drawn weights re-rank them, and both methods pass. On Gaussian inputs the same IG
    map is dominated by |x - baseline|, which randomisation keeps (Adebayo et al.'s finding for
    gradient x input): there it fails."""
    w = np.random.default_rng(1).normal(size=(2, 16)).tolist()
    signs = np.sign(data(n=400)).astype(np.float32)
    head, per_method, out = run(linear(w), signs)
    for method in ("integrated_gradients", "saliency"):
        assert per_method[("randomization_similarity", method)] < 0.5
    assert head["methods_failing_sanity"] == 0 and out.status_floor == "pass"
    assert {r[-1] for r in out.evidence[0].rows} == {"pass"}
    gaussian, per_gaussian, _ = run(linear(w), data())
    assert per_gaussian[("randomization_similarity", "integrated_gradients")] > 0.5
    assert per_gaussian[("randomization_similarity", "saliency")] < 0.5  # saliency does not see the input at all
    assert gaussian["methods_failing_sanity"] == 1
    # the threshold decides: at 1 nothing can fail
    head_lax, _, _ = run(ScaledSquares(), data(), randomization_threshold=1.0)
    assert head_lax["methods_failing_sanity"] == 0


def test_infidelity_in_the_check_is_zero_for_exact_and_known_for_unfaithful_attributions() -> None:
    """Saliency (|gradient|) of a linear model with positive weights is the weight row: it predicts every
    perturbation's effect exactly, infidelity 0. With weights of both signs, |w| disagrees with w where w < 0
    (class 0) or w > 0 (class 1): infidelity is E[(I·(|w| - w))²] = σ² · 4 · Σ w_j² over those positions."""
    x = data(n=40, d=4)
    cfg = {"methods": ["saliency"], "n_perturb": 256}
    _, exact, _ = run(linear([[1.0, 2.0, 0.5, 1.0], [0.5, 0.5, 1.0, 2.0]]), x, **cfg)
    assert exact[("infidelity", "saliency")] < 1e-9
    _, unfaithful, out = run(linear([[1.0, -1.0, 2.0, -2.0], [-1.0, 1.0, -2.0, 2.0]]), x, **cfg)
    rows = [r[0] for r in next(e for e in out.evidence if e.title == "Explained samples").rows]
    sigma = 0.05 * float(torch.from_numpy(x[rows]).std())
    expected = sigma**2 * 4 * (1.0 + 4.0)
    assert unfaithful[("infidelity", "saliency")] == pytest.approx(expected, rel=0.2)


def test_infidelity_known_answers() -> None:
    model = linear([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]])
    x = torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]])
    target = torch.tensor([0, 1])
    w = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]])[target]
    sigma = 0.1
    assert E.infidelity(model, x, target, w, sigma, n_perturb=64).abs().max() < 1e-10
    # attributions -w predict the opposite of every change: (I·(-w) - I·w)² = 4 (I·w)², mean 4 σ² |w|²
    got = E.infidelity(model, x, target, -w, sigma, n_perturb=4000)
    torch.testing.assert_close(got, 4 * sigma**2 * (w**2).sum(1), rtol=0.1, atol=0)
    # zero attributions miss every change: σ² |w|²; the same seed gives the same number
    zero = E.infidelity(model, x, target, torch.zeros_like(w), sigma, n_perturb=4000, seed=3)
    torch.testing.assert_close(zero, sigma**2 * (w**2).sum(1), rtol=0.1, atol=0)
    assert torch.equal(zero, E.infidelity(model, x, target, torch.zeros_like(w), sigma, n_perturb=4000, seed=3))


def test_infidelity_defaults_and_seed() -> None:
    model = linear([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]])
    x, target = torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]]), torch.tensor([0, 1])
    zero = torch.zeros(2, 3)
    default = E.infidelity(model, x, target, zero, 0.1)
    assert torch.equal(default, E.infidelity(model, x, target, zero, 0.1, n_perturb=8, seed=0))
    assert not torch.equal(default, E.infidelity(model, x, target, zero, 0.1, n_perturb=8, seed=1))
    assert not torch.equal(default, E.infidelity(model, x, target, zero, 0.1, n_perturb=9, seed=0))
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(default, E.infidelity(model, x, target, zero, 0.1))


class Kinks(nn.Module):
    """Gradients with kinks along the path: Captum's quadrature then depends on the number of steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([(torch.relu(x - 0.3) ** 2).sum(1), (torch.relu(0.2 - x) ** 2).sum(1)], 1)


def test_integrated_gradients_equals_captum_with_a_baseline_and_its_step_count() -> None:
    """On a non-linear model the step count and the baseline change IG: both must reach Captum."""
    from captum.attr import IntegratedGradients

    x, target = torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]]), torch.tensor([0, 1])
    base = torch.tensor([[0.5, -1.0, 0.25]])
    for n_steps in (4, 32):
        ours, delta = E.integrated_gradients(Kinks(), x, target, base, n_steps=n_steps)
        ref, ref_delta = IntegratedGradients(Kinks()).attribute(x, baselines=base, target=target, n_steps=n_steps,
                                                                return_convergence_delta=True)
        torch.testing.assert_close(ours, ref)
        torch.testing.assert_close(delta, ref_delta)
    default = E.integrated_gradients(Kinks(), x, target, base)[0]
    torch.testing.assert_close(default, E.integrated_gradients(Kinks(), x, target, base, n_steps=32)[0])
    assert not torch.allclose(default, E.integrated_gradients(Kinks(), x, target, base, n_steps=33)[0], atol=1e-6, rtol=0)


def test_randomized_copy_is_seeded_and_keeps_each_tensors_scale() -> None:
    torch.manual_seed(0)
    big = nn.Linear(200, 100)
    with torch.no_grad():
        big.weight.mul_(0.05 / big.weight.std())
        big.bias.copy_(torch.linspace(-0.01, 0.01, 100))
    tiny_bias = nn.Linear(3, 2)
    with torch.no_grad():
        tiny_bias.bias.copy_(torch.tensor([0.001, 0.003]))
    scalars = nn.ParameterList([nn.Parameter(torch.tensor(0.5)) for _ in range(2000)])
    model = nn.ModuleDict({"big": big, "tiny": tiny_bias, "scalars": scalars})
    original = {k: v.clone() for k, v in model.state_dict().items()}
    a, b = E.randomized_copy(model, seed=3), E.randomized_copy(model, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # seeded
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())  # the original is untouched
    assert all(torch.equal(p, q) for p, q in zip(E.randomized_copy(model).parameters(),
                                                 E.randomized_copy(model, seed=0).parameters()))
    assert not torch.equal(a.big.weight, E.randomized_copy(model, seed=4).big.weight)
    # each tensor is re-drawn at its own scale: N(0, std²) for tensors, N(0, 1) for scalars
    assert float(a.big.weight.std()) == pytest.approx(0.05, rel=0.05)
    assert float(a.big.bias.std()) == pytest.approx(float(big.bias.std()), rel=0.3)
    assert float(a.tiny.bias.abs().max()) < 0.02  # a 2-element tensor keeps its std (0.0014), not 1
    assert float(torch.stack(list(a.scalars)).std()) == pytest.approx(1.0, rel=0.1)


def test_rank_agreement_skips_what_has_no_ranking() -> None:
    """Samples with fewer than two positions or a constant map have no rank correlation and are skipped,
    whichever comes first; two positions are enough; with nothing left the agreement is NaN."""
    same = [4.0, 1.0, 3.0, 2.0]
    const_u = torch.tensor([[1.0, 1.0, 1.0, 1.0], same])
    const_v = torch.tensor([same, same])
    assert E.rank_agreement(const_u, const_v) == pytest.approx(1.0)  # the first sample (constant u) is skipped
    assert E.rank_agreement(const_v, const_u) == pytest.approx(1.0)  # ... and with constant v
    # a spread of exactly 1 is a ranking like any other
    assert E.rank_agreement(torch.tensor([[0.0, 1.0, 0.5]]), torch.tensor([[0.0, 1.0, 0.5]])) == pytest.approx(1.0)
    assert E.rank_agreement(torch.tensor([[0.0, 2.0, 1.0]]), torch.tensor([[1.0, 0.0, 0.5]])) == pytest.approx(-1.0)
    # two positions: ±1
    assert E.rank_agreement(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 1.0]])) == pytest.approx(-1.0)
    # one position left by the mask: skipped; nothing left: NaN
    one = torch.tensor([[True, False, False, False], [True, True, True, True]])
    assert E.rank_agreement(const_v, const_v, mask=one) == pytest.approx(1.0)
    assert np.isnan(E.rank_agreement(const_u[:1], const_v[:1]))
