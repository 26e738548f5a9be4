"""The explanations check's memory is bounded by a batch size: chunked attributions are the one-pass numbers
(Captum and SHAP called unchunked on the same inputs), no model call exceeds the batch size, and a 3×224×224
CNN is explained within the bound stated in the README (peak RSS measured in a fresh subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audit import explain as E
from audit.checks.explanations import Explanations, ExplanationsConfig
from audit.context import AuditContext
from audit.data import AuditDataset
from models.adapter import TorchAdapter
from peak_rss import PEAK

pytestmark = pytest.mark.usefixtures("one_thread")


class Spy(nn.Module):
    """A small CNN that records how many inputs each forward pass takes (shared by its deep copies)."""

    rows: list[int] = []

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2),
                                 nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Spy.rows.append(int(x.shape[0]))
        return self.net(x)


def images(n: int, side: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, 1, side, side), dtype=np.float32))


@pytest.mark.parametrize("chunk", [1, 5, 7, 16, 40])
def test_chunked_gradient_shap_equals_captums_one_pass(chunk: int) -> None:
    model = Spy().eval()
    x, background = images(5), images(9, seed=1)
    target = torch.tensor([0, 1, 2, 1, 0])
    Spy.rows.clear()
    ref = E.gradient_shap(model, x, target, background, n_samples=8, seed=3)  # Captum's GradientShap, one pass
    assert max(Spy.rows) == 40
    Spy.rows.clear()
    got = E.gradient_shap(model, x, target, background, n_samples=8, seed=3, internal_batch_size=chunk)
    assert max(Spy.rows) == min(chunk, 40)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
    # Another seed draws other baselines: the equality above is not a coincidence of constant maps.
    assert not torch.allclose(E.gradient_shap(model, x, target, background, 8, seed=4, internal_batch_size=chunk), ref)


def test_chunked_integrated_gradients_and_saliency_equal_one_pass() -> None:
    model = Spy().eval()
    x, target, base = images(5), torch.tensor([0, 1, 2, 1, 0]), torch.zeros(1, 1, 8, 8)
    ref, ref_delta = E.integrated_gradients(model, x, target, base, n_steps=6)
    for chunk in (1, 3, 7, 64):
        Spy.rows.clear()
        got, delta = E.integrated_gradients(model, x, target, base, n_steps=6, internal_batch_size=chunk)
        assert max(Spy.rows) <= max(chunk, 2)  # Captum takes at least two path points per call
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(delta, ref_delta, rtol=1e-4, atol=1e-6)
        Spy.rows.clear()
        sal = E.saliency(model, x, target, base, chunk)
        assert max(Spy.rows) == min(chunk, 5)
        torch.testing.assert_close(sal, E.saliency(model, x, target, base))


def test_chunked_integrated_gradients_take_each_inputs_own_baseline() -> None:
    """A baseline per input (one row each) is cut with its inputs: each group of rows is integrated from its own
    baselines, the same attributions as Captum's one pass (two inputs: the smallest set that is split)."""
    model = Spy().eval()
    for n in (2, 5):
        x, target, base = images(n), torch.arange(n) % 3, images(n, seed=2) * 0.5
        ref, ref_delta = E.integrated_gradients(model, x, target, base, n_steps=6)
        for chunk in (1, 3):
            got, delta = E.integrated_gradients(model, x, target, base, n_steps=6, internal_batch_size=chunk)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(delta, ref_delta, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 5, 36])
def test_chunked_shap_gradient_equals_shaps_gradient_explainer(chunk: int) -> None:
    model = Spy().eval()
    x, background, target = images(4), images(9, seed=1), torch.tensor([0, 2, 2, 0])
    ref = E.shap_gradient(model, x, target, background, n_samples=12, seed=2)  # shap.GradientExplainer itself
    Spy.rows.clear()
    got = E.shap_gradient(model, x, target, background, n_samples=12, seed=2, internal_batch_size=chunk)
    assert max(Spy.rows) == min(chunk, 24) and sum(Spy.rows) == 4 * 12
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(E.shap_gradient(model, x, target, background, 12, seed=3, internal_batch_size=chunk), ref)


def test_batched_deletion_insertion_equals_one_batch() -> None:
    model = Spy().eval()
    x, target = images(4), torch.tensor([0, 1, 2, 0])
    attr = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    ref = E.deletion_insertion(model, x, target, attr, torch.zeros(1, 1, 8, 8), n_steps=5, batch_size=None)
    Spy.rows.clear()
    got = E.deletion_insertion(model, x, target, attr, torch.zeros(1, 1, 8, 8), n_steps=5, batch_size=7)
    assert max(Spy.rows) == 7 and sum(Spy.rows) == 2 * 6 * 4
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-6)


def test_sensitivity_and_infidelity_never_pass_more_than_the_batch() -> None:
    model = Spy().eval()
    x, target = images(5), torch.tensor([0, 1, 2, 1, 0])
    seen: list[int] = []

    def explain(inp: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        seen.append(len(inp))
        return E.saliency(model, inp, tgt, None)

    sens = E.sensitivity(explain, x, target, radius=0.05, n_perturb=8, batch_size=4)  # fewer than the 5 samples
    assert max(seen) <= 4 and len(sens) == 5 and bool((sens > 0).all())
    seen.clear()
    E.sensitivity(explain, x, target, radius=0.05, n_perturb=8)
    assert max(seen) == 40  # Captum's one pass: every perturbation of every sample
    attr = E.saliency(model, x, target, None)
    Spy.rows.clear()
    infid = E.infidelity(model, x, target, attr, 0.05, n_perturb=8, batch_size=4)
    assert max(Spy.rows) <= 4 and len(infid) == 5 and bool((infid > 0).all())
    Spy.rows.clear()
    E.infidelity(model, x, target, attr, 0.05, n_perturb=8)
    assert max(Spy.rows) == 40


def test_lime_builds_its_perturbed_images_a_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """LIME holds the images it has built until it calls the classifier: at most the batch size of them."""
    from audit import explain_blackbox as B

    calls: list[int] = []
    real = B.batched_probs
    monkeypatch.setattr(B, "batched_probs", lambda fn, x, device, bs: calls.append(len(x)) or real(fn, x, device, bs))
    model = Spy().eval()
    x = images(2).numpy()
    B.lime_image(model, x, np.array([0, 1]), torch.device("cpu"), n_samples=20, segmentation="grid", batch_size=6)
    assert calls and max(calls) == 6 and sum(calls) == 2 * 20


def test_the_check_never_calls_the_model_on_more_than_its_batch_size() -> None:
    """Every default method, curve, metric and the randomisation re-run: the audit's batch size bounds each call
    (Integrated Gradients: two path points at least; SHAP: its one pass over the background rows)."""
    x = images(16).numpy()
    adapter = TorchAdapter(Spy().eval(), input_kind="image", device=torch.device("cpu"), input_range=(0.0, 1.0))
    ds = AuditDataset(name="eval", inputs=x, target=np.zeros(16, dtype=np.int64), class_names=None,
                      sensitive_features=None, feature_names=None, input_kind="image", path="mem", format="npz", sha256="0")
    ctx = AuditContext(adapter, {"eval": ds}, seed=0, batch_size=4)
    cfg = ExplanationsConfig(max_samples=3, n_steps=6, n_shap_samples=8, n_perturb=4, n_lime_samples=16, curve_steps=4,
                             n_background=4)
    ctx.probs()
    Spy.rows.clear()
    out = Explanations(cfg).run(ctx)
    assert {r[1] for r in out.evidence[0].rows} == {"integrated_gradients", "saliency", "gradient_shap", "shap", "lime"}
    assert Spy.rows and max(Spy.rows) == 4
    # The same seed with a larger batch gives the same attributions (the batch bounds memory, not the numbers).
    wide = Explanations(cfg.model_copy(update={"batch_size": 64})).run(ctx)
    for a, b in zip(out.metrics, wide.metrics):
        if a.name in ("deletion_auc", "insertion_auc", "agreement", "randomization_similarity", "ig_completeness_error"):
            assert (a.name, a.group) == (b.name, b.group) and a.value == pytest.approx(b.value, rel=1e-4, abs=1e-6)


MEMORY_SCRIPT = PEAK + r"""
import json, sys
import numpy as np, torch
from torch import nn
from audit.checks.explanations import Explanations, ExplanationsConfig
from audit.context import AuditContext
from audit.data import AuditDataset
from models.adapter import TorchAdapter

torch.set_num_threads(1)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
x = np.random.default_rng(0).random((6, 3, 224, 224), dtype=np.float32)
adapter = TorchAdapter(model, input_kind="image", device=torch.device("cpu"), input_range=(0.0, 1.0))
ds = AuditDataset(name="eval", inputs=x, target=np.zeros(6, dtype=np.int64), class_names=None, sensitive_features=None,
                  feature_names=None, input_kind="image", path="mem", format="npz", sha256="0")
ctx = AuditContext(adapter, {"eval": ds}, seed=0, batch_size=int(sys.argv[1]))
cfg = ExplanationsConfig(**json.loads(sys.argv[2]))
ctx.probs()
import captum.attr, captum.metrics, shap, lime.lime_image  # imported before the baseline is taken
before = peak_rss_kb()
out = Explanations(cfg).run(ctx)
after = peak_rss_kb()
print(json.dumps({"methods": sorted({r[1] for r in out.evidence[0].rows}), "peak_mib": after / 1024,
                  "added_mib": (after - before) / 1024}))
"""

#: The check's settings in the memory test: its default methods on two images, fewer IG steps, curve steps and
#: LIME perturbations (time), half the SHAP samples and perturbations (unbounded, these alone add ~1 GiB).
SMALL = {"max_samples": 2, "n_steps": 8, "n_background": 4, "n_lime_samples": 16, "lime_segmentation": "grid",
         "curve_steps": 4, "n_shap_samples": 32, "n_perturb": 4}

#: The bound the README states: explaining two 3×224×224 images with ``SMALL`` at batch size 8 adds at most
#: this much to the peak RSS of the process (measured: ~120 MiB, 9 CPU-s; without the batch bound: ~1 GiB).
ADDED_MIB_BOUND = 300


def measure_explanations_memory(batch_size: int, overrides: dict | None = None) -> dict:
    """Peak RSS (MiB) a fresh interpreter adds while the explanations check explains two 3×224×224 images."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(batch_size), json.dumps({**SMALL, **(overrides or {})})],
                          capture_output=True, text=True, cwd=root, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_explaining_a_224px_cnn_stays_within_the_documented_memory_bound() -> None:
    got = measure_explanations_memory(8)
    assert got["methods"] == ["gradient_shap", "integrated_gradients", "lime", "saliency", "shap"]
    assert got["added_mib"] < ADDED_MIB_BOUND, got


def test_max_sensitivity_of_gradient_shap_is_the_same_bounded_or_not() -> None:
    """Neither GradientSHAP path touches torch's generator, so the metric's perturbations are the same draws."""
    model = Spy().eval()
    x, background, target = images(3), images(6, seed=1), torch.tensor([0, 1, 2])
    values = [E.sensitivity(lambda inp, tgt, b=b: E.gradient_shap(model, inp, tgt, background, 8, 0, b), x, target,
                            radius=0.05, n_perturb=4, batch_size=b) for b in (None, 12, 5)]
    torch.testing.assert_close(values[1], values[0], rtol=1e-5, atol=1e-7)
    assert values[2].shape == (3,) and bool((values[2] > 0).all())
