"""Contract of every registered check with its declared metric names (``Check.metric_names``): run through
the real runner on a representative tiny image model and a tiny text model, every name a check emits is
declared (so a threshold can name it) and every declared name is emitted, except those listed here with
the reason they cannot appear in that setting. A check that does not apply must be skipped with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_CNN_CLASS, TINY_MLP_CLASS, TinyMLP, band_cnn, band_images

from audit.config import load_config
from audit.registry import get_check, list_checks
from audit.runner import run_audit

pytestmark = pytest.mark.usefixtures("one_thread")

#: Fast settings: each check runs its method once on a handful of samples.
FAST = [
    "energy.track=false", "checks.performance.n_resamples=20",
    "checks.corruption={max_samples: 20, severities: [1, 5], n_resamples: 20}",
    "checks.adversarial={max_samples: 16, eps: [0.05, 0.3], steps: 3, black_box: never}",
    "checks.explanations={max_samples: 3, n_steps: 4, n_background: 4, n_shap_samples: 4, n_kernel_samples: 16, "
    "n_lime_samples: 16, curve_steps: 4, n_perturb: 2}",
    "checks.explanations.attention={max_samples: 2, curve_steps: 4}",
    "checks.ood={n_synthetic: 20, n_resamples: 20}",
    "checks.privacy={n_resamples: 20}",
    "checks.poisoning.backdoor_simulation={rates: [0.1], epochs: 1, max_samples: 20, max_train_samples: 40}",
    "checks.poisoning.backdoor_scan={max_samples: 20, steps: 10, max_train_samples: 40}",
    "checks.privacy.extraction={budgets: [20], epochs: 1, max_samples: 20}",
    "checks.efficiency={min_seconds: 0, n_repeats: 3, n_warmup: 0, measure_energy: false, inferences_per_year: 1000, "
    "training_watts: 100, training_hours: 1}",
    "checks.fairness.group_metrics={min_group_size: 10, n_resamples: 20, n_permutations: 20}",
    "checks.fairness.counterfactual_text={min_texts: 2, n_resamples: 20}",
]

#: Declared names a check cannot emit in the image setting, and why.
IMAGE_NOT_EMITTED = {
    "adversarial": {"flip_rate": "text models only (text attack recipes)",
                    "words_changed": "text models only", "queries_per_text": "text models only",
                    "semantic_similarity": "text models only"},
    "explanations": {"shap_efficiency_error": "KernelSHAP runs on tabular and text inputs only"},
    "poisoning.backdoor_scan": {"trigger_flip_rate": "text models only (trigger word search)",
                                "trigger_anomaly_index": "text models only"},
    "efficiency": {"energy_per_1000_wh": "measure_energy is off (CodeCarbon is slow)",
                   "co2_per_1000_g": "measure_energy is off", "yearly_energy_kwh": "measure_energy is off",
                   "yearly_co2_kg": "measure_energy is off"},
}
#: Checks that do not apply to the image setting (a CNN has no attention; no text to swap identity terms in;
#: per-feature drift tests are for tabular data).
IMAGE_SKIPPED = {"explanations.attention", "fairness.counterfactual_text", "drift"}
#: What the image setting lacks of ``audit.registry.NEEDS``: a CNN has no attention maps and no raw text.
IMAGE_LACKS = {"attention", "raw_text"}
#: Declared names the text checks cannot emit, and why.
TEXT_NOT_EMITTED = {
    "adversarial": {"attack_success_rate": "L∞/L2 attacks only; text models get the flip_rate of their recipes",
                    "safeguards_tripped": "gradient-masking safeguards apply to gradient attacks only",
                    "accuracy_under_attack": "per-ε curves of gradient attacks only",
                    "mean_perturbation": "L∞/L2 perturbation sizes only"},
    "poisoning.backdoor_scan": {n: "Neural Cleanse and ART's defences: image and tabular models only" for n in
                                ("anomaly_index", "flagged_samples", "trigger_mask_l1", "class_anomaly_index")},
}


def only(*check_ids: str) -> list[str]:
    return [f"select=[{', '.join(check_ids)}]"]


def assert_contract(result, skipped_ok: set[str], not_emitted: dict[str, dict[str, str]]) -> None:  # noqa: ANN001
    results = {r.id: r for r in result.checks}
    errors = {cid: r.error for cid, r in results.items() if r.status == "error"}
    assert not errors, errors
    skipped = {cid: r.skip_reason for cid, r in results.items() if r.status == "skipped"}
    assert set(skipped) == skipped_ok and all(skipped.values()), skipped
    for cid, r in results.items():
        if cid in skipped_ok:
            continue
        declared = set(get_check(cid).metric_names)
        emitted = {m.name for m in r.metrics}
        assert emitted <= declared, f"{cid} emits undeclared metrics {sorted(emitted - declared)}"
        expected = declared - set(not_emitted.get(cid, {}))
        assert expected <= emitted, f"{cid} declares but did not emit {sorted(expected - emitted)}"
        assert not (set(not_emitted.get(cid, {})) & emitted), f"{cid}: update the list of names it cannot emit"


@pytest.fixture(scope="module")
def image_audit(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Every check on a 5-class CNN (trained for a moment on band images, so its predictions vary and attacks
    succeed), with reference, OOD and a sensitive column."""
    from safetensors.torch import save_file

    tmp = tmp_path_factory.mktemp("contract")
    model = band_cnn(n_classes=5)
    weights = tmp / "cnn.safetensors"
    save_file(model.state_dict(), str(weights))
    for name, n, seed in (("eval", 60, 2), ("reference", 60, 3), ("ood", 20, 4)):
        xs, ys = band_images(n, n_classes=5, size=8, seed=seed)
        np.savez(tmp / f"{name}.npz", x=xs, y=ys, group=np.array(["a", "b"])[np.arange(n) % 2])
    cfg = load_config(None, {
        "model.path": str(weights), "model.class": TINY_CNN_CLASS, "model.init_args": {"n_classes": 5},
        "model.preprocessing.input_range": [0.0, 1.0], "device": "cpu",
        "data.eval.path": str(tmp / "eval.npz"), "data.eval.sensitive_features": ["group"],
        "data.reference.path": str(tmp / "reference.npz"), "data.ood.path": str(tmp / "ood.npz"),
        "data.ood.target": None, "output.dir": str(tmp / "out"),
    }, FAST)
    return run_audit(cfg)


def test_every_check_emits_exactly_its_declared_metrics_on_an_image_model(image_audit) -> None:  # noqa: ANN001
    assert {r.id for r in image_audit.checks} == set(list_checks())
    assert_contract(image_audit, IMAGE_SKIPPED, IMAGE_NOT_EMITTED)


def test_the_checks_skipped_on_an_image_model_are_those_whose_declared_needs_it_lacks(image_audit) -> None:  # noqa: ANN001
    """``Check.needs`` and ``Check.input_kinds`` (what ``deepaudit checks`` lists) match what the checks do."""
    declared = {c for c in list_checks() if "image" not in get_check(c).input_kinds
                or set(get_check(c).needs) & IMAGE_LACKS}
    assert declared == IMAGE_SKIPPED == {r.id for r in image_audit.checks if r.status == "skipped"}


def test_checks_that_declare_labels_a_reference_set_or_sensitive_features_are_skipped_without_them(
        tmp_path: Path) -> None:
    """Unlabelled evaluation data, no reference set, no sensitive column: every check that declares one of
    them in ``needs`` is skipped with a reason naming what is missing; the others run."""
    import pandas as pd
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "mlp.safetensors"
    save_file(TinyMLP().state_dict(), str(weights))
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(40, 4)).astype(np.float32), columns=["f1", "f2", "f3", "f4"]).to_csv(
        tmp_path / "eval.csv", index=False)
    missing = {"labels": "no labels", "reference": "reference", "sensitive_features": "sensitive"}
    needing = [c for c in list_checks() if set(get_check(c).needs) & set(missing)]
    assert {"performance", "privacy", "drift", "fairness.group_metrics", "poisoning.backdoor_simulation"} <= set(needing)
    cfg = load_config(None, {"model.path": str(weights), "model.class": TINY_MLP_CLASS, "device": "cpu",
                             "data.eval.path": str(tmp_path / "eval.csv"), "output.dir": str(tmp_path / "out")},
                      [*FAST, "data.eval.target=null", *only(*needing, "efficiency")])
    result = run_audit(cfg)
    assert result.check("efficiency").status != "skipped"
    for cid in needing:
        r = result.check(cid)
        assert r.status == "skipped", (cid, r.status, r.summary)
        assert any(missing[n] in r.skip_reason for n in get_check(cid).needs if n in missing), (cid, r.skip_reason)


def test_tabular_checks_emit_their_declared_metrics(tmp_path: Path) -> None:
    """drift applies to tabular data only; KernelSHAP's efficiency error too."""
    import pandas as pd
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "mlp.safetensors"
    save_file(TinyMLP().state_dict(), str(weights))
    rng = np.random.default_rng(0)
    for name, shift in (("eval", 0.0), ("reference", 0.5)):
        frame = pd.DataFrame(rng.normal(shift, 1, size=(60, 4)).astype(np.float32), columns=["f1", "f2", "f3", "f4"])
        frame["label"] = (frame["f1"] > shift).astype(int)
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    cfg = load_config(None, {"model.path": str(weights), "model.class": TINY_MLP_CLASS, "device": "cpu",
                             "data.eval.path": str(tmp_path / "eval.csv"), "data.eval.target": "label",
                             "data.reference.path": str(tmp_path / "reference.csv"), "data.reference.target": "label",
                             "output.dir": str(tmp_path / "out")}, FAST + only("drift", "explanations"))
    assert_contract(run_audit(cfg), set(), {})


def test_text_checks_emit_their_declared_metrics(tmp_path: Path) -> None:
    """Character-edit attacks, attention rollout, identity-term swaps and the trigger word search apply to text
    models only."""
    from tiny_text import gendered_text_audit_data

    # the text scan needs max_samples >= 32 to be judgeable at min_flip_rate 0.8 (its preflight refuses 20)
    cfg = load_config(None, gendered_text_audit_data(tmp_path),
                      FAST + ["checks.poisoning.backdoor_scan.max_samples=32"] + only("adversarial", "explanations.attention", "fairness.counterfactual_text",
                                  "poisoning.backdoor_scan"))
    assert_contract(run_audit(cfg), set(), TEXT_NOT_EMITTED)
