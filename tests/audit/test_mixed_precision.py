"""Every default check on a bfloat16 variant (issue 14: mixed precision where the variant asks for it), on CPU:
a small image CNN and a small tabular MLP, audited beside their float32 base by ``compare`` with the quick
budget and tiny caps. No check errors, each runs or skips exactly as on the base, every number is finite or
null with its reason, and the headline numbers stay near the base's (bfloat16 keeps 8 bits of mantissa).

float16 is refused on CPU by the variant registry (``tests/models/test_variants.py``), so it is not audited
here; it goes through the same cast wrapper (``models.variants._Cast``) on CUDA."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_CNN_CLASS, TINY_MLP_CLASS, TinyMLP, band_cnn, band_images

from audit.compare import run_compare
from audit.config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")

#: Tiny caps: each check runs its method once on a handful of samples.
CAPS = [
    "energy.track=false", "budget=quick", "checks.performance.n_resamples=20",
    "checks.corruption={max_samples: 20, severities: [1, 5], n_resamples: 20}",
    "checks.adversarial={max_samples: 16, eps: [0.05, 0.3], steps: 3, black_box: never}",
    "checks.explanations={max_samples: 3, n_steps: 4, n_background: 4, n_shap_samples: 4, n_kernel_samples: 16, "
    "n_lime_samples: 16, curve_steps: 4, n_perturb: 2}",
    "checks.ood={n_synthetic: 20, n_resamples: 20}",
    "checks.privacy={n_resamples: 20}",
    "checks.poisoning.backdoor_simulation={rates: [0.1], epochs: 1, max_samples: 20, max_train_samples: 40}",
    "checks.poisoning.backdoor_scan={max_samples: 20, steps: 10, max_train_samples: 40}",
    "checks.privacy.extraction={budgets: [20], epochs: 1, max_samples: 20}",
    "checks.efficiency={min_seconds: 0, n_repeats: 3, n_warmup: 0, measure_energy: false}",
    "checks.fairness.group_metrics={min_group_size: 10, n_resamples: 20, n_permutations: 20}",
]

#: Metrics whose value must stay within this of the float32 base's on the bfloat16 variant.
NEAR = {("performance", "accuracy"): 0.05, ("corruption", "clean_accuracy"): 0.05,
        ("adversarial", "clean_accuracy"): 0.07, ("privacy", "membership_auc"): 0.05,
        ("fairness.group_metrics", "demographic_parity_difference"): 0.06}


def _image(tmp: Path) -> dict:
    from safetensors.torch import save_file

    save_file(band_cnn(n_classes=5).state_dict(), str(tmp / "cnn.safetensors"))
    for name, n, seed in (("eval", 60, 2), ("reference", 60, 3), ("ood", 20, 4)):
        xs, ys = band_images(n, n_classes=5, size=8, seed=seed)
        np.savez(tmp / f"{name}.npz", x=xs, y=ys, group=np.array(["a", "b"])[np.arange(n) % 2])
    return {"model.path": str(tmp / "cnn.safetensors"), "model.class": TINY_CNN_CLASS,
            "model.init_args": {"n_classes": 5}, "model.preprocessing.input_range": [0.0, 1.0],
            "data.eval.path": str(tmp / "eval.npz"), "data.eval.sensitive_features": ["group"],
            "data.reference.path": str(tmp / "reference.npz"), "data.ood.path": str(tmp / "ood.npz"),
            "data.ood.target": None}


def _tabular(tmp: Path) -> dict:
    import pandas as pd
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(TinyMLP().state_dict(), str(tmp / "mlp.safetensors"))
    rng = np.random.default_rng(0)
    for name in ("eval", "reference"):
        frame = pd.DataFrame(rng.normal(size=(120, 4)).astype(np.float32), columns=["f1", "f2", "f3", "f4"])
        frame["label"] = (frame["f1"] + 0.3 * rng.normal(size=120) > 0).astype(int)
        frame["sex"] = rng.choice(["f", "m"], 120)
        frame.to_csv(tmp / f"{name}.csv", index=False)
    return {"model.path": str(tmp / "mlp.safetensors"), "model.class": TINY_MLP_CLASS,
            "data.eval.path": str(tmp / "eval.csv"), "data.eval.target": "label",
            "data.eval.sensitive_features": ["sex"], "data.reference.path": str(tmp / "reference.csv"),
            "data.reference.target": "label", "data.reference.sensitive_features": ["sex"]}


@pytest.mark.parametrize("kind", ["image", "tabular"])
def test_every_default_check_runs_on_a_bf16_variant(tmp_path: Path, kind: str) -> None:
    keys = (_image if kind == "image" else _tabular)(tmp_path)
    cfg = load_config(None, {**keys, "device": "cpu", "output.dir": str(tmp_path / "out")}, CAPS)
    base, variant = (e.result for e in run_compare(cfg, variants=["bf16"]).entries)
    assert next(f for f in variant.provenance.files if f.role == "model").format.endswith("+variant:bf16")
    ran = 0
    for b, v in zip(base.checks, variant.checks, strict=True):
        assert v.status != "error", f"{v.id} errored on the bf16 variant: {v.error}"
        assert (v.status == "skipped") == (b.status == "skipped"), (v.id, b.status, v.status, v.skip_reason)
        if v.status == "skipped":
            assert v.skip_reason
            continue
        ran += 1
        values = [m.value for m in v.metrics if m.value is not None]
        assert values, f"{v.id}: no metric has a value on the bf16 variant"
        bad = [(m.name, m.group, m.value) for m in v.metrics if m.value is not None and not math.isfinite(m.value)]
        assert not bad, f"{v.id}: non-finite metrics on the bf16 variant: {bad[:4]}"
        nulls = [(m.name, m.group) for m in v.metrics if m.value is None and not m.method]
        assert not nulls, f"{v.id}: null metrics without a reason: {nulls[:4]}"
        near = {(b.id, m.name): m.value for m in b.metrics if m.group is None}
        for m in v.metrics:
            tol = NEAR.get((v.id, m.name))
            if tol is not None and m.group is None and m.value is not None:
                assert m.value == pytest.approx(near[(v.id, m.name)], abs=tol), (v.id, m.name)
    assert ran >= (10 if kind == "image" else 11)


def test_a_bf16_variant_is_fine_tuned_in_float32_and_cast_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backdoor simulation's fine-tuning of a bfloat16 variant trains float32 master weights (the float
    twin's architecture) and casts the result to bfloat16 as the variant was: trained in bfloat16, most of
    Adam's small updates round away (on this CNN 41 of 221 weights moved in 5 epochs at lr 1e-3, 143 in
    float32) and the simulation would understate how easily the pipeline learns a backdoor."""
    import models.train as train
    from audit.checks.poisoning import BackdoorSimulation, BackdoorSimulationConfig
    from audit.context import AuditContext
    from audit.data import AuditDataset
    from models.adapter import TorchAdapter
    from models.variants import make_variant, variant_adapter

    base_module = band_cnn(n_classes=5)
    x, y = band_images(120, n_classes=5, size=8, seed=5)
    base = TorchAdapter(base_module, input_kind="image", device="cpu", input_range=(0.0, 1.0))
    adapter = variant_adapter(make_variant(base_module, "bf16", example_inputs=torch.from_numpy(x[:2])), base)
    trained: list[set[torch.dtype]] = []
    fit = train.fit_classifier

    def spy(model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        trained.append({p.dtype for p in model.parameters()})
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(train, "fit_classifier", spy)
    sets = {role: AuditDataset(name=role, inputs=x[sl], target=y[sl], class_names=None, sensitive_features=None,
                               feature_names=None, input_kind="image", path="mem", format="npz", sha256="0")
            for role, sl in (("eval", slice(0, 60)), ("reference", slice(60, 120)))}
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.2], epochs=1, max_samples=30, max_train_samples=40,
                                                      include_baseline=False)).run(AuditContext(adapter, sets, seed=0))
    assert trained == [{torch.float32}]
    assert "float32 copy of the float twin" in out.method and "bf16" in out.method
    assert all(math.isfinite(m.value) for m in out.metrics if m.value is not None)

