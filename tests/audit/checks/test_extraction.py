"""Model extraction (ART CopycatCNN): known answers on a linear victim, our fast thief training against
ART's own fit, the thief architecture, and clear skips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit.checks.extraction import ExtractionConfig, ModelExtraction, copycat_extract, make_thief
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import ConfigError, SkipCheck
from models.adapter import Normalize, TorchAdapter


def ds(name: str, x, y, kind: str = "tabular") -> AuditDataset:
    return AuditDataset(name=name, inputs=x, target=y, class_names=None, sensitive_features=None, feature_names=None,
                        input_kind=kind, path="mem", format="npz", sha256="0")


@pytest.fixture(scope="module")
def linear():
    """A linear 3-class victim on 8 Gaussian features; labels agree with it 90% of the time."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    victim = nn.Linear(8, 3).eval()
    with torch.no_grad():
        victim.weight.mul_(3)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    with torch.no_grad():
        y = victim(torch.from_numpy(x)).argmax(1).numpy()
    y = np.where(rng.random(2000) < 0.1, rng.integers(0, 3, 2000), y)
    adapter = TorchAdapter(victim, input_kind="tabular", device=torch.device("cpu"))
    ctx = AuditContext(adapter, {"eval": ds("eval", x[:600], y[:600]), "reference": ds("reference", x[600:], y[600:])})
    return adapter, ctx, x, y


def test_linear_victim_is_extracted_with_high_fidelity_at_a_large_budget(linear) -> None:
    adapter, ctx, _, _ = linear
    out = ModelExtraction(ExtractionConfig(budgets=[10, 1000], epochs=10, lr=0.05)).run(ctx)
    fid = {m.group: m for m in out.metrics if m.name == "extraction_fidelity"}
    assert fid["1000 queries"].value >= 0.95, fid
    assert fid["10 queries"].value < fid["1000 queries"].value - 0.05  # ten labels do not pin down three planes
    head = {m.name: m for m in out.metrics if m.group is None}
    assert head["extraction_fidelity"].value == fid["1000 queries"].value and head["extraction_fidelity"].n == 600
    # the thief's accuracy is measured against the labels, and the victim's on the same inputs
    assert head["thief_accuracy"].value == pytest.approx(head["victim_accuracy"].value, abs=0.05)
    assert "Linear (the model's architecture, re-initialised)" in out.evidence[0].caption
    assert out.evidence[1].data["x"] == [10, 1000]


def test_fast_fit_reaches_the_fidelity_of_arts_own_fit(linear) -> None:
    adapter, ctx, x, _ = linear
    x_eval = x[:600]

    def proba(batch: np.ndarray) -> np.ndarray:
        return torch.softmax(adapter.predict_logits(batch), 1).numpy()

    victim_pred = adapter.predict_logits(x_eval).argmax(1)
    fids = []
    for fast in (True, False):
        thief, _ = make_thief(adapter, torch.zeros(2, 8), 3, "mlp", seed=0)
        thief = copycat_extract(proba, thief, x[600:], budget=300, n_classes=3, epochs=10, lr=0.01, batch_size=32,
                                seed=0, device=torch.device("cpu"), fast_fit=fast)
        with torch.no_grad():
            fids.append(float((thief(torch.from_numpy(x_eval)).argmax(1) == victim_pred).float().mean()))
    assert fids[1] > 0.8 and abs(fids[0] - fids[1]) <= 0.04, fids


def test_thief_copies_the_architecture_not_the_weights() -> None:
    torch.manual_seed(0)
    victim = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    adapter = TorchAdapter(victim, input_kind="image", device=torch.device("cpu"),
                           preprocess=Normalize([0.5], [0.25]))
    thief, description = make_thief(adapter, torch.rand(2, 1, 8, 8), 3, "victim", seed=1)
    assert isinstance(thief[0], Normalize) and [type(m) for m in thief[1]] == [type(m) for m in victim]
    for p, q in zip(thief[1].parameters(), victim.parameters()):
        assert p.shape == q.shape and not torch.equal(p, q) and p.requires_grad
    assert "re-initialised" in description
    again, _ = make_thief(adapter, torch.rand(2, 1, 8, 8), 3, "victim", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(thief.parameters(), again.parameters()))  # seeded
    script = TorchAdapter(torch.jit.script(victim), input_kind="image", device=torch.device("cpu"))
    mlp, why = make_thief(script, torch.rand(2, 1, 8, 8), 3, "victim", seed=1)
    assert why == "MLP 64-128-3 (no copy of the model's architecture could be made)"
    assert mlp(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_quantised_variant_is_stolen_into_its_float_twins_architecture() -> None:
    from models.variants import make_variant, variant_adapter

    torch.manual_seed(0)
    victim = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    base = TorchAdapter(victim, input_kind="image", device=torch.device("cpu"))
    q = variant_adapter(make_variant(victim, "int8_eager_dynamic"), base)
    thief, description = make_thief(q, torch.rand(2, 1, 8, 8), 3, "victim", seed=0)
    assert description == "Sequential (the float twin's architecture, re-initialised)"
    assert all(p.dtype == torch.float32 and p.requires_grad for p in thief.parameters())


def test_without_reference_the_eval_set_is_split_into_pool_and_test(linear) -> None:
    adapter, _, x, y = linear
    ctx = AuditContext(adapter, {"eval": ds("eval", x[:400], y[:400])})
    out = ModelExtraction(ExtractionConfig(budgets=[500], epochs=2)).run(ctx)
    assert out.n_samples == 200 and "half of the evaluation set (200 inputs)" in out.evidence[0].caption
    assert out.evidence[0].rows[0][:2] == [500, 200]
    assert any("capped" in line for line in out.limitations)


def test_text_and_token_ids_are_skipped_with_the_reason() -> None:
    adapter = TorchAdapter(nn.Linear(4, 2), input_kind="text", device=torch.device("cpu"))
    texts = AuditContext(adapter, {"eval": ds("eval", ["a b", "c d"], np.array([0, 1]), "text")})
    with pytest.raises(SkipCheck, match="^the model takes raw text"):
        ModelExtraction().run(texts)
    ids = AuditContext(adapter, {"eval": ds("eval", np.ones((4, 4), dtype=np.int64), np.array([0, 1, 0, 1]))})
    with pytest.raises(SkipCheck, match="integer token ids"):
        ModelExtraction().run(ids)


def test_bad_budgets_are_a_config_error() -> None:
    from audit.config import validate_check_config

    with pytest.raises(ConfigError, match=r"checks\.privacy\.extraction\.budgets"):
        validate_check_config("privacy.extraction", {"budgets": [0, 100]})
    assert validate_check_config("privacy.extraction", {"budgets": [500, 100, 100]}).budgets == [100, 500]
