"""fairness.group_metrics against fairlearn on the same predictions, known answers, bad input,
thresholds, mitigation (reweighing weights by hand, weighted training, adversarial debiasing against
fairlearn's estimator called directly, reweighing retraining against fit_recipe called directly), and
the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.adversarial import AdversarialFairnessClassifier
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import precision_score

from audit.checks.fairness import FairnessConfig, GroupMetrics
from audit.config import ThresholdSpec
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import InputError, SkipCheck
from audit.fairness.mitigation import reweighing_weights
from audit.runner import judge
from models.adapter import ModelAdapter, Normalize, TorchAdapter
from models.errors import ModelInputError
from models.recipes import fit_recipe
from models.train import fit_classifier
from models.zoo import create_model


class FixedLogits(ModelAdapter):
    """Fixed logits per sample (inputs are sample indices); features are given or the logits."""

    def __init__(self, table: np.ndarray, features: np.ndarray | None = None) -> None:
        self.table = torch.tensor(table, dtype=torch.float32)
        self.feats = torch.tensor(features if features is not None else table, dtype=torch.float32)
        self.class_names = [f"c{i}" for i in range(table.shape[1])]
        self.device = torch.device("cpu")
        self.input_kind = "tabular"

    @property
    def has_features(self) -> bool:
        return True

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.table[inputs[:, 0].long()]

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.feats[inputs[:, 0].long()]


def dataset(name: str, y: np.ndarray, sensitive: pd.DataFrame | None, offset: int = 0) -> AuditDataset:
    n = len(y)
    return AuditDataset(name=name, inputs=(np.arange(n) + offset).astype(np.float32)[:, None], target=y.astype(np.int64),
                        class_names=None, sensitive_features=sensitive, feature_names=None, input_kind="tabular",
                        path="mem", format="npz", sha256="0")


def make_ctx(logits: np.ndarray, y: np.ndarray, sensitive: pd.DataFrame | None, reference: tuple | None = None,
             features: np.ndarray | None = None) -> AuditContext:
    datasets = {"eval": dataset("eval", y, sensitive)}
    if reference is not None:
        datasets["reference"] = dataset("reference", reference[0], reference[1], offset=len(y))
    return AuditContext(FixedLogits(logits, features), datasets, seed=0, batch_size=64)


def logits_for(pred: np.ndarray, k: int = 2, score: np.ndarray | None = None) -> np.ndarray:
    if score is not None:  # binary, P(class 1) = score
        s = np.clip(score, 1e-6, 1 - 1e-6)
        return np.stack([np.zeros_like(s), np.log(s / (1 - s))], 1)
    return np.eye(k)[pred] * 4.0


def cfg(**kw) -> FairnessConfig:
    return FairnessConfig(**{"n_resamples": 200, "mitigation": [], **kw})


def values(out, group=None) -> dict[str, float | None]:
    return {m.name: m.value for m in out.metrics if m.group == group}


@pytest.fixture
def noisy() -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n = 600
    sex = rng.choice(["f", "m"], n)
    race = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    y = rng.integers(0, 2, n)
    score = np.clip(0.35 * y + 0.25 + 0.15 * (sex == "m") + rng.normal(0, 0.2, n), 0.01, 0.99)
    return score, y, pd.DataFrame({"sex": sex, "race": race})


def test_every_metric_equals_fairlearn(noisy) -> None:
    score, y, sens = noisy
    out = GroupMetrics(cfg(min_group_size=1)).run(make_ctx(logits_for(None, score=score), y, sens))
    pred = (score > 0.5).astype(int)
    for col in ("sex", "race"):
        a = sens[col]
        v = values(out, col)
        assert v["demographic_parity_difference"] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=a))
        assert v["demographic_parity_ratio"] == pytest.approx(demographic_parity_ratio(y, pred, sensitive_features=a))
        assert v["equalized_odds_difference"] == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=a))
        assert v["equal_opportunity_difference"] == pytest.approx(equal_opportunity_difference(y, pred, sensitive_features=a))
        mf = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                                  "fpr": false_positive_rate, "ppv": precision_score},
                         y_true=y, y_pred=pred, sensitive_features=a)
        assert v["predictive_parity_difference"] == pytest.approx(mf.difference()["ppv"])
        for g, row in mf.by_group.iterrows():
            gv = values(out, f"{col}={g}")
            for k in ("selection_rate", "tpr", "fpr", "ppv"):
                assert gv[k] == pytest.approx(row[k])
            assert gv["mean_score"] == pytest.approx(score[a == g].mean(), abs=1e-5)
    head = values(out)
    assert head["demographic_parity_difference"] == pytest.approx(max(
        demographic_parity_difference(y, pred, sensitive_features=sens[c]) for c in ("sex", "race")))
    # Every gap has an interval around it, its n, and the pair of groups that drove it.
    for m in out.metrics:
        if m.name.endswith(("difference", "ratio")):
            assert m.ci_low <= m.value + 1e-9 and m.value - 1e-9 <= m.ci_high and m.n == len(y)
            assert "driven by" in m.method


def test_known_answers_fair_unfair_and_disagreeing() -> None:
    a = pd.DataFrame({"g": ["x"] * 40 + ["y"] * 40})
    y = np.tile([0, 1], 40)
    fair = GroupMetrics(cfg()).run(make_ctx(logits_for(y), y, a))
    assert all(values(fair)[k] == 0 for k in ("demographic_parity_difference", "equalized_odds_difference"))
    assert values(fair)["demographic_parity_ratio"] == 1.0
    pred = np.array([1] * 40 + [0] * 40)
    unfair = GroupMetrics(cfg()).run(make_ctx(logits_for(pred), y, a))
    assert values(unfair)["demographic_parity_difference"] == 1.0
    assert values(unfair)["demographic_parity_ratio"] == 0.0
    # Different base rates, perfect predictor: equalized odds holds (0), demographic parity does not (0.5).
    y2 = np.array([1] * 30 + [0] * 10 + [1] * 10 + [0] * 30)
    out = GroupMetrics(cfg()).run(make_ctx(logits_for(y2), y2, a))
    assert values(out)["equalized_odds_difference"] == 0.0
    assert values(out)["demographic_parity_difference"] == pytest.approx(0.5)
    # Defaults warn (the criteria conflict, as here); a threshold the user sets to fail fails.
    status, outcomes = judge(out, {}, GroupMetrics.default_thresholds)
    assert status == "warn"
    assert {o.metric for o in outcomes if not o.passed} == {"demographic_parity_difference", "demographic_parity_ratio"}
    strict = {"demographic_parity_difference": ThresholdSpec(max=0.1, level="fail")}
    assert judge(out, strict, GroupMetrics.default_thresholds)[0] == "fail"
    assert judge(out, {"equalized_odds_difference": ThresholdSpec(max=0.0, level="fail")}, {})[0] == "pass"
    assert judge(fair, strict, GroupMetrics.default_thresholds)[0] == "pass"


def test_small_group_warns_and_is_excluded(noisy) -> None:
    score, y, sens = noisy
    sens = sens.copy()
    sens.loc[:4, "sex"] = "x"  # five members: below min_group_size, wildly different
    score = score.copy()
    score[:5] = 0.99
    out = GroupMetrics(cfg()).run(make_ctx(logits_for(None, score=score), y, sens))
    assert out.status_floor == "warn"
    assert any("sex=x (n=5)" in t for t in out.limitations)
    keep = sens["sex"] != "x"
    pred = (score > 0.5).astype(int)
    assert values(out, "sex")["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y[keep], pred[keep], sensitive_features=sens["sex"][keep]))
    assert values(out, "sex=x")["selection_rate"] == 1.0  # still shown
    # ... but never deciding: a threshold on a per-group metric is judged on the worst of the large groups
    assert out.undecided_groups == {"sex=x": f"fewer than min_group_size = {cfg().min_group_size} members"}
    _, [outcome] = judge(out, {"selection_rate": ThresholdSpec(max=0.99)}, {})
    assert outcome.group in ("sex=f", "sex=m") and "sex=x" in outcome.detail


def test_missing_values_form_their_own_group(noisy) -> None:
    score, y, sens = noisy
    sens = sens.copy().astype(object)
    sens.loc[:49, "race"] = None
    out = GroupMetrics(cfg()).run(make_ctx(logits_for(None, score=score), y, sens))
    assert values(out, "race=<missing>")["selection_rate"] is not None
    assert out.status_floor == "warn" and any("<missing>" in t for t in out.limitations)


def test_bad_input() -> None:
    y = np.tile([0, 1], 20)
    with pytest.raises(SkipCheck, match="--sensitive COLUMN"):
        GroupMetrics(cfg()).run(make_ctx(logits_for(y), y, None))
    with pytest.raises(SkipCheck, match="only one group"):
        GroupMetrics(cfg()).run(make_ctx(logits_for(y), y, pd.DataFrame({"g": ["x"] * 40})))
    # One member in a group: shown, warned, not judged; with no second large group the gaps are undefined.
    out = GroupMetrics(cfg()).run(make_ctx(logits_for(y), y, pd.DataFrame({"g": ["x"] * 39 + ["y"]})))
    assert out.status_floor == "warn" and values(out)["demographic_parity_difference"] is None
    assert judge(out, {}, GroupMetrics.default_thresholds)[0] == "warn"
    y3 = np.arange(60) % 3
    with pytest.raises(InputError, match="one-vs-rest"):
        GroupMetrics(cfg(positive_class=1)).run(make_ctx(logits_for(y3, 3), y3, pd.DataFrame({"g": ["x", "y"] * 30})))
    with pytest.raises(InputError, match="positive_class"):
        GroupMetrics(cfg(positive_class="nope")).run(make_ctx(logits_for(y), y, pd.DataFrame({"g": ["x", "y"] * 20})))


def test_multiclass_one_vs_rest_and_intersectional(noisy) -> None:
    _, _, sens = noisy
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, len(sens))
    pred = np.where(rng.random(len(y)) < 0.7, y, rng.integers(0, 3, len(y)))
    out = GroupMetrics(cfg(intersectional=True, min_group_size=1)).run(make_ctx(logits_for(pred, 3), y, sens))
    for c in range(3):
        v = values(out, f"sex|class=c{c}")
        assert v["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y == c, pred == c, sensitive_features=sens["sex"]))
    inter = values(out, "sex × race|class=c0")
    joint = sens["sex"] + "|" + sens["race"]
    assert inter["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y == 0, pred == 0, sensitive_features=joint))
    assert values(out)["demographic_parity_difference"] == max(
        m.value for m in out.metrics if m.name == "demographic_parity_difference" and m.group)


def test_mitigation_reduces_disparity(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def biased(n: int):
        a = rng.choice(["f", "m"], n)
        y = (rng.random(n) < np.where(a == "m", 0.7, 0.3)).astype(int)
        feat = np.stack([y + rng.normal(0, 0.8, n), (a == "m") * 1.0 + rng.normal(0, 0.1, n)], 1)
        return a, y, feat

    a_ev, y_ev, f_ev = biased(400)
    a_rf, y_rf, f_rf = biased(400)
    feats = np.concatenate([f_ev, f_rf])
    z = feats[:, 0] + 1.5 * feats[:, 1] - 1.2
    logits = np.stack([np.zeros_like(z), z], 1)
    ctx = make_ctx(logits, y_ev, pd.DataFrame({"sex": a_ev}), reference=(y_rf, pd.DataFrame({"sex": a_rf})),
                   features=feats)
    out = GroupMetrics(cfg(n_resamples=50, mitigation=["threshold_optimizer", "exponentiated_gradient", "reweighing"],
                           save_dir=str(tmp_path / "heads"))).run(ctx)
    table = next(e for e in out.evidence if e.title == "Mitigation: before and after")
    rows = {r[0]: r for r in table.rows}
    before = rows["original model"][2]
    assert before > 0.3
    for name in ("threshold_optimizer", "exponentiated_gradient"):
        assert rows[name][2] < before / 2, rows
    assert rows["reweighing"][2] < before
    assert (tmp_path / "heads" / "fairness_reweighing_head.safetensors").is_file()
    assert json.loads((tmp_path / "heads" / "fairness_exponentiated_gradient_head.json").read_text())["kind"]
    assert any(e.type == "figure" and e.kind == "scatter" for e in out.evidence)


def test_mitigation_without_reference_says_why(noisy) -> None:
    score, y, sens = noisy
    out = GroupMetrics(cfg(mitigation=["threshold_optimizer"])).run(make_ctx(logits_for(None, score=score), y, sens))
    assert any("Mitigation was not run" in t and "reference" in t for t in out.limitations)


def test_cli_end_to_end(tmp_path: Path, tabular_csv: Path, tiny_mlp: torch.nn.Module) -> None:
    from safetensors.torch import save_file
    from tiny_models import TINY_MLP_CLASS
    from typer.testing import CliRunner

    import cli
    from audit.registry import list_checks

    weights = tmp_path / "mlp.safetensors"
    save_file(tiny_mlp.state_dict(), str(weights))
    out = tmp_path / "out"
    # One --set for the whole checks map: `--set checks.fairness.group_metrics.x=...` would split the dotted id.
    checks = {c: {"enabled": False} for c in list_checks() if c != "fairness.group_metrics"}
    checks["fairness.group_metrics"] = {"n_resamples": 100}
    result = CliRunner().invoke(cli.app, [
        "audit", "--model", str(weights), "--data", str(tabular_csv), "--out", str(out), "--quiet",
        "--device", "cpu", "--model-class", TINY_MLP_CLASS, "--target", "label", "--sensitive", "sex",
        "--reference", str(tabular_csv), "--set", "energy.track=false", "--set", f"checks={json.dumps(checks)}"])
    assert result.exit_code in (0, 1), result.stderr
    data = json.loads((out / "results.json").read_text())
    check = next(c for c in data["checks"] if c["id"] == "fairness.group_metrics")
    assert check["status"] in ("pass", "warn", "fail")
    names = {m["name"] for m in check["metrics"] if m["group"] is None}
    assert {"demographic_parity_difference", "equalized_odds_difference"} <= names
    titles = {e["title"] for e in check["evidence"]}
    assert {"Per-group metrics", "Fairness gaps", "Mitigation: before and after", "Accuracy against disparity"} <= titles
    table = next(e for e in check["evidence"] if e["title"] == "Mitigation: before and after")
    assert [r[0] for r in table["rows"]] == ["original model", "threshold_optimizer", "exponentiated_gradient",
                                             "reweighing"]
    html = (out / "report.html").read_text()
    assert "Mitigation: before and after" in html and "figure could not be drawn" not in html


# ------------------------------------------------------------------------------ mitigations in depth

def mitigation_rows(out) -> dict[str, list]:
    table = next(e for e in out.evidence if e.title == "Mitigation: before and after")
    return {r[0]: r for r in table.rows}


def biased(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group 'm' has a higher base rate, and feature 1 reveals the group."""
    a = rng.choice(["f", "m"], n)
    y = (rng.random(n) < np.where(a == "m", 0.7, 0.3)).astype(np.int64)
    feat = np.stack([y + rng.normal(0, 0.8, n), (a == "m") * 1.0 + rng.normal(0, 0.1, n)], 1)
    return a, y, feat.astype(np.float32)


def test_reweighing_weights_hand_computed() -> None:
    a = np.array(["x", "x", "x", "x", "y", "y"])
    y = np.array([1, 1, 1, 0, 1, 0])
    # P(x)=4/6, P(y)=2/6, P(1)=4/6, P(0)=2/6; P(x,1)=3/6, P(x,0)=1/6, P(y,1)=1/6, P(y,0)=1/6.
    expected = {("x", 1): (4 / 6) * (4 / 6) / (3 / 6), ("x", 0): (4 / 6) * (2 / 6) / (1 / 6),
                ("y", 1): (2 / 6) * (4 / 6) / (1 / 6), ("y", 0): (2 / 6) * (2 / 6) / (1 / 6)}
    np.testing.assert_allclose(reweighing_weights(y, a), [expected[(g, v)] for g, v in zip(a, y)])
    # On any data, weighted group x label counts become independent: joint = product of the marginals.
    rng = np.random.default_rng(3)
    a = rng.choice(["p", "q", "r"], 500, p=[0.6, 0.3, 0.1])
    y = (rng.random(500) < np.where(a == "p", 0.8, 0.2)).astype(int)
    w = reweighing_weights(y, a)
    joint = pd.crosstab(a, y, values=w, aggfunc="sum").to_numpy() / w.sum()
    np.testing.assert_allclose(joint, np.outer(joint.sum(1), joint.sum(0)), atol=1e-12)
    assert w.sum() == pytest.approx(len(y))  # the weights average 1


def test_fit_classifier_all_ones_weights_equal_unweighted_fit() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def fit(w: np.ndarray | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = create_model("mlp", n_features=4, n_classes=2, hidden=16)
        return fit_classifier(model, x, y, epochs=3, batch_size=32, seed=5, sample_weight=w).state_dict()

    plain, ones, skewed = fit(None), fit(np.ones(200)), fit(np.where(y == 1, 3.0, 0.2))
    for k in plain:
        torch.testing.assert_close(ones[k], plain[k], rtol=0, atol=1e-6)
    assert any(not torch.allclose(skewed[k], plain[k]) for k in plain if plain[k].is_floating_point())
    with pytest.raises(ModelInputError, match="'sample_weight' parameter of fit_classifier"):
        fit(np.ones(10))


def test_adversarial_debiasing_matches_fairlearn_and_reduces_disparity(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a_ev, y_ev, f_ev = biased(rng, 400)
    a_rf, y_rf, f_rf = biased(rng, 400)
    feats = np.concatenate([f_ev, f_rf])
    z = feats[:, 0] + 1.5 * feats[:, 1] - 1.2  # the unmitigated model leans on the group feature
    ctx = make_ctx(np.stack([np.zeros_like(z), z], 1), y_ev, pd.DataFrame({"sex": a_ev}),
                   reference=(y_rf, pd.DataFrame({"sex": a_rf})), features=feats)
    out = GroupMetrics(cfg(n_resamples=0, mitigation=["adversarial_debiasing"], adversarial_alpha=3.0,
                           save_dir=str(tmp_path))).run(ctx)
    rows = mitigation_rows(out)
    before, after = rows["original model"][2], rows["adversarial_debiasing"][2]
    assert before > 0.3 and after < before / 2, rows
    # The same numbers from fairlearn's estimator called directly on the same standardised features and seed.
    seed = int(ctx.rng("fairness.mitigation").integers(0, 2**31 - 1))
    mean, std = f_rf.astype(np.float64).mean(0), f_rf.astype(np.float64).std(0)
    direct = AdversarialFairnessClassifier(
        backend="torch", predictor_model=[32, "relu"], adversary_model=[32, "relu"], constraints="demographic_parity",
        learning_rate=1e-3, alpha=3.0, epochs=20, batch_size=64, shuffle=True, random_state=seed)
    direct.fit((f_rf - mean) / std, y_rf, sensitive_features=a_rf)
    pred = np.asarray(direct.predict((f_ev - mean) / std), dtype=np.int64)
    assert rows["adversarial_debiasing"][1] == pytest.approx((pred == y_ev).mean(), abs=1e-6)
    assert after == pytest.approx(demographic_parity_difference(y_ev, pred, sensitive_features=a_ev), abs=1e-6)
    meta = json.loads((tmp_path / "fairness_adversarial_debiasing_head.json").read_text())
    assert meta["kind"] == "adversarial_debiasing" and meta["seed"] == seed
    assert (tmp_path / "fairness_adversarial_debiasing_head.safetensors").is_file()


def test_reweighing_retrain_through_the_recipe(tmp_path: Path) -> None:
    from models.loaders import load_model

    rng = np.random.default_rng(1)
    a_ev, y_ev, f_ev = biased(rng, 300)
    a_rf, y_rf, f_rf = biased(rng, 300)
    init_args, recipe = {"n_features": 2, "n_classes": 2}, {"name": "arrests-mlp", "epochs": 3, "seed": 7}
    pre = {"mean": f_rf.mean(0).tolist(), "std": f_rf.std(0).tolist()}
    norm = Normalize(pre["mean"], pre["std"])
    original = fit_recipe(recipe, f_rf, y_rf, init_args=init_args, preprocessing=pre, seed=7)

    def data(name: str, x: np.ndarray, y: np.ndarray, a: np.ndarray) -> AuditDataset:
        return AuditDataset(name=name, inputs=x, target=y, class_names=None, sensitive_features=pd.DataFrame({"sex": a}),
                            feature_names=["f0", "f1"], input_kind="tabular", path=f"{name}.csv", format="csv", sha256="0")

    meta = {"architecture": "mlp", "init_args": init_args, "input_kind": "tabular", "class_names": ["no", "yes"],
            "preprocessing": pre, "recipe": recipe}
    adapter = TorchAdapter(original, input_kind="tabular", device=torch.device("cpu"), preprocess=norm,
                           class_names=["no", "yes"])
    ctx = AuditContext(adapter, {"eval": data("eval", f_ev, y_ev, a_ev), "reference": data("reference", f_rf, y_rf, a_rf)},
                       model_meta=meta)
    out = GroupMetrics(cfg(n_resamples=0, mitigation=["reweighing_retrain"], save_dir=str(tmp_path))).run(ctx)
    row = mitigation_rows(out)["reweighing_retrain"]
    # The same model from fit_recipe called directly with the reweighing weights and the recipe's seed.
    direct = fit_recipe(recipe, f_rf, y_rf, init_args=init_args, preprocessing=pre, seed=7,
                        sample_weight=reweighing_weights(y_rf, a_rf))
    with torch.no_grad():
        pred = direct(norm(torch.from_numpy(f_ev))).argmax(1).numpy()
    assert row[1] == pytest.approx((pred == y_ev).mean(), abs=1e-6)
    assert row[2] == pytest.approx(demographic_parity_difference(y_ev, pred, sensitive_features=a_ev), abs=1e-6)
    # The saved model loads through its sidecar and gives the same predictions.
    saved = tmp_path / "fairness_reweighing_retrain_model.safetensors"
    side = json.loads(saved.with_suffix(".json").read_text())
    assert side["mitigation"]["kind"] == "reweighing_retrain" and side["training_data"]["n_train"] == 300
    loaded = load_model(saved, device="cpu")
    assert np.array_equal(loaded.predict_logits(f_ev, batch_size=64).argmax(1).numpy(), pred)


def test_skips_say_why() -> None:
    rng = np.random.default_rng(2)
    a_ev, y_ev, f_ev = biased(rng, 120)
    a_rf, y_rf, f_rf = biased(rng, 120)
    z = np.concatenate([f_ev, f_rf]) @ np.array([1.0, 1.5]) - 1.2
    ctx = make_ctx(np.stack([np.zeros_like(z), z], 1), y_ev, pd.DataFrame({"sex": a_ev}),
                   reference=(y_rf, pd.DataFrame({"sex": a_rf})), features=np.concatenate([f_ev, f_rf]))
    out = GroupMetrics(cfg(n_resamples=0, mitigation=["reweighing_retrain"])).run(ctx)  # no model.json recipe
    assert list(mitigation_rows(out)) == ["original model"]
    assert any(t.startswith("reweighing_retrain was not run: the model's model.json names no training recipe")
               for t in out.limitations)
    y3 = np.arange(60) % 3
    multi = make_ctx(logits_for(y3, 3), y3, pd.DataFrame({"g": ["x", "y"] * 30}),
                     reference=(y3, pd.DataFrame({"g": ["x", "y"] * 30})))
    out = GroupMetrics(cfg(n_resamples=0, mitigation=["adversarial_debiasing", "reweighing_retrain"])).run(multi)
    assert not any(e.title == "Mitigation: before and after" for e in out.evidence)
    assert any("Mitigation was not run" in t and "multiclass" in t for t in out.limitations)


# ------------------------------------------------------------------------------ gaps against their noise

FAIL_ALL = {k: ThresholdSpec(max=0.1, level="fail") for k in ("demographic_parity_difference", "equalized_odds_difference",
                                                             "equal_opportunity_difference", "predictive_parity_difference")}


@pytest.mark.parametrize("seed", range(6))
def test_random_attribute_does_not_fail(seed: int) -> None:
    """A sensitive attribute assigned at random on 400 rows: gaps beyond 0.1 happen, but never FAIL."""
    rng = np.random.default_rng(seed)
    n = 400
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.75, y, 1 - y)
    sens = pd.DataFrame({"g": rng.choice(["x", "y"], n), "h": rng.choice(["u", "v", "w"], n)})
    out = GroupMetrics(cfg()).run(make_ctx(logits_for(pred), y, sens))
    status, outcomes = judge(out, FAIL_ALL, {})
    assert status != "fail", [o for o in outcomes if not o.passed]
    for o in outcomes:
        if not o.passed:  # judged (no note), missed, at warn level, and saying why
            assert o.note is None and o.level == "warn"
            assert o.detail.startswith("within noise") and "permutation p" in o.detail


def test_issue_random_attribute_gap_beyond_the_bound_warns_within_noise() -> None:
    """The issue's case: a random attribute whose equalized-odds gap is beyond 0.1 (with an interval that
    excludes 0) warns as within noise instead of failing; with the test off it fails."""
    rng = np.random.default_rng(5)
    n = 400
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.75, y, 1 - y)
    sens = pd.DataFrame({"g": rng.choice(["x", "y"], n)})
    strict = {"equalized_odds_difference": ThresholdSpec(max=0.1, level="fail")}
    out = GroupMetrics(cfg()).run(make_ctx(logits_for(pred), y, sens))
    eod = out.metrics[[m.name == "equalized_odds_difference" and m.group is None for m in out.metrics].index(True)]
    assert eod.value > 0.1 and eod.ci_low > 0  # the interval of a max of |gaps| excludes 0 even on noise
    status, (outcome,) = judge(out, strict, {})
    assert status == "warn" and not outcome.passed and outcome.note is None and "within noise" in outcome.detail
    assert "permutation p" in eod.method and "Bonferroni" in out.method
    untested = GroupMetrics(cfg(n_permutations=0)).run(make_ctx(logits_for(pred), y, sens))
    assert judge(untested, strict, {})[0] == "fail"


def test_real_gap_still_fails() -> None:
    """A model whose selection rate differs by 0.3 between groups fails a 0.1 bound; the gap is significant."""
    rng = np.random.default_rng(5)
    n = 400
    a = np.repeat(["x", "y"], n // 2)
    y = rng.integers(0, 2, n)
    pred = (rng.random(n) < np.where(a == "x", 0.65, 0.35)).astype(int)
    out = GroupMetrics(cfg()).run(make_ctx(logits_for(pred), y, pd.DataFrame({"g": a, "noise": rng.choice(["u", "v"], n)})))
    status, outcomes = judge(out, {"demographic_parity_difference": ThresholdSpec(max=0.1, level="fail"),
                                   "demographic_parity_ratio": ThresholdSpec(min=0.8, level="fail")}, {})
    assert status == "fail"
    assert all(not o.passed and o.note is None for o in outcomes)
    table = next(e for e in out.evidence if e.title == "Fairness gaps")
    row = next(r for r in table.rows if r[0] == "g" and r[1] == "demographic_parity_difference")
    assert row[7] < 0.01 and row[2] > row[8]  # p-value, and the gap beyond the null's 95th percentile


def test_random_attribute_through_the_runner_warns_within_noise_and_exits_0(tmp_path: Path, tiny_mlp) -> None:
    """End to end: a sensitive column assigned at random on 400 rows, a fail threshold at 0 on equalized odds. The
    gap is positive (it always is) but within its permutation null: the check warns, the audit exits 0."""
    from safetensors.torch import save_file
    from tiny_models import TINY_MLP_CLASS

    from audit.config import load_config
    from audit.registry import list_checks
    from audit.runner import run_audit

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 4)).astype(np.float32), columns=["f1", "f2", "f3", "f4"])
    frame["label"] = rng.integers(0, 2, 400)
    frame["group"] = rng.choice(["a", "b"], 400)
    frame.to_csv(tmp_path / "data.csv", index=False)
    save_file(tiny_mlp.state_dict(), str(tmp_path / "mlp.safetensors"))
    (tmp_path / "audit.yaml").write_text(json.dumps({
        "version": 1, "model": {"path": str(tmp_path / "mlp.safetensors"), "class": TINY_MLP_CLASS},
        "data": {"eval": {"path": str(tmp_path / "data.csv"), "target": "label", "sensitive_features": ["group"]}},
        "device": "cpu", "energy": {"track": False}}))
    checks = {c: {"enabled": False} for c in list_checks() if c != "fairness.group_metrics"}
    checks["fairness.group_metrics"] = {"mitigation": [], "n_resamples": 200, "thresholds": {
        "equalized_odds_difference": {"max": 0.0, "level": "fail"}}}
    result = run_audit(load_config(tmp_path / "audit.yaml", overrides={"checks": checks}))
    check = result.check("fairness.group_metrics")
    outcome = next(t for t in check.thresholds if t.metric == "equalized_odds_difference")
    assert outcome.observed > 0 and not outcome.passed and outcome.level == "warn"
    assert outcome.detail.startswith("within noise") and "permutation p" in outcome.detail
    assert check.status == "warn" and result.summary.exit_code == 0


def test_one_metric_frame_per_column(noisy, monkeypatch: pytest.MonkeyPatch) -> None:
    import audit.checks.fairness as check

    score, y, sens = noisy
    built = []
    real = check.group_frame

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(check, "group_frame", counted)
    sens = sens.copy()
    sens.loc[:4, "sex"] = "x"  # a group below min_group_size: the gaps use the frame's other groups
    out = GroupMetrics(cfg()).run(make_ctx(logits_for(None, score=score), y, sens))
    assert len(built) == 2  # sex and race, binary model: one frame each, not one more for the judged groups
    keep = sens["sex"] != "x"
    pred = (score > 0.5).astype(int)
    assert values(out, "sex")["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y[keep], pred[keep], sensitive_features=sens["sex"][keep]))


def test_mitigations_fit_on_a_capped_stratified_sample_drawn_before_the_work() -> None:
    from sklearn.linear_model import LogisticRegression

    from audit.fairness.mitigation import fit_rows

    rng = np.random.default_rng(3)
    a_ev, y_ev, f_ev = biased(rng, 300)
    a_rf, y_rf, f_rf = biased(rng, 3000)
    feats = np.concatenate([f_ev, f_rf])
    z = feats[:, 0] + 1.5 * feats[:, 1] - 1.2
    ctx = make_ctx(np.stack([np.zeros_like(z), z], 1), y_ev, pd.DataFrame({"sex": a_ev}),
                   reference=(y_rf, pd.DataFrame({"sex": a_rf})), features=feats)
    seen = []
    for method in ("predict_logits", "predict_features"):
        inner = getattr(ctx.adapter, method)

        def counted(inputs, *args, _inner=inner, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            seen.append(len(inputs))
            return _inner(inputs, *args, **kwargs)

        setattr(ctx.adapter, method, counted)
    out = GroupMetrics(cfg(n_resamples=0, n_permutations=0, max_fit_samples=200,
                           mitigation=["threshold_optimizer", "reweighing"])).run(ctx)
    assert 3000 not in seen and 200 in seen  # the reference set's logits and features for the 200 sampled rows only
    table = next(e for e in out.evidence if e.title == "Mitigation: before and after")
    assert "Fitted on 200 of the 'reference' set's 3000 samples (max_fit_samples = 200" in table.caption
    assert any("fitted on 200 of the 'reference' set's 3000 samples" in t for t in out.limitations)
    # stratified by label × group: every cell keeps its share, to within one row
    rows = fit_rows(y_rf, a_rf, 200, ctx.rng("fairness.mitigation.rows"))
    cells = pd.crosstab(a_rf[rows], y_rf[rows])
    assert (abs(cells - pd.crosstab(a_rf, y_rf) * 200 / 3000) <= 1).all().all()
    # the same head as fitting reweighing on those rows directly
    from audit.fairness.mitigation import reweighing_weights

    head = LogisticRegression(max_iter=1000).fit(f_rf[rows], y_rf[rows],
                                                 sample_weight=reweighing_weights(y_rf[rows], a_rf[rows]))
    pred = head.predict(f_ev)
    row = mitigation_rows(out)["reweighing"]
    # every gap of the before/after table equals fairlearn's on the same predictions
    ppv_gap = MetricFrame(metrics=lambda t, q: precision_score(t, q, zero_division=np.nan), y_true=y_ev, y_pred=pred,
                          sensitive_features=a_ev).difference()
    assert row[1:7] == pytest.approx([
        (pred == y_ev).mean(), demographic_parity_difference(y_ev, pred, sensitive_features=a_ev),
        demographic_parity_ratio(y_ev, pred, sensitive_features=a_ev),
        equalized_odds_difference(y_ev, pred, sensitive_features=a_ev),
        equal_opportunity_difference(y_ev, pred, sensitive_features=a_ev), ppv_gap], abs=1e-6)


def test_worse_after_mitigation_is_derived_from_the_numbers() -> None:
    """Issue 15: ThresholdOptimizer doubled the demo's DP gap uncommented; each widened gap is now named."""
    from audit.fairness.mitigation import worse_after

    before = {"demographic_parity_difference": 0.0436, "demographic_parity_ratio": 0.956,
              "equalized_odds_difference": 0.1333, "equal_opportunity_difference": 0.0612,
              "predictive_parity_difference": 0.1578}
    after = {"demographic_parity_difference": 0.0775, "demographic_parity_ratio": 0.9211,
             "equalized_odds_difference": 0.13334, "equal_opportunity_difference": 0.046,
             "predictive_parity_difference": float("nan")}
    assert worse_after(before, after) == ["demographic_parity_difference 0.0436 → 0.0775",
                                          "demographic_parity_ratio 0.9560 → 0.9211"]  # ratio: lower is worse
    assert worse_after(before, before) == []
    assert worse_after(after, before) == ["equal_opportunity_difference 0.0460 → 0.0612"]


def test_mitigation_table_and_limitations_name_the_gaps_made_worse(tmp_path: Path) -> None:
    from audit.fairness.gaps import GAPS
    from audit.fairness.mitigation import worse_after

    rng = np.random.default_rng(3)
    a_ev, y_ev, f_ev = biased(rng, 400)
    a_rf, y_rf, f_rf = biased(rng, 400)
    feats = np.concatenate([f_ev, f_rf])
    z = feats[:, 0] - 0.2
    logits = np.stack([np.zeros_like(z), z], 1)
    ctx = make_ctx(logits, y_ev, pd.DataFrame({"sex": a_ev}), reference=(y_rf, pd.DataFrame({"sex": a_rf})),
                   features=feats)
    out = GroupMetrics(cfg(n_resamples=20, mitigation=["threshold_optimizer", "exponentiated_gradient", "reweighing"],
                           )).run(ctx)
    table = next(e for e in out.evidence if e.title == "Mitigation: before and after")
    assert table.columns[-1] == "worse after mitigation"
    rows = {r[0]: r for r in table.rows}
    assert rows["original model"][-1] == "—"
    gaps = {name: dict(zip(GAPS, r[2:7])) for name, r in rows.items()}
    named = 0
    for name in ("threshold_optimizer", "exponentiated_gradient", "reweighing"):
        worse = worse_after(gaps["original model"], gaps[name])
        assert rows[name][-1] == ("; ".join(worse) if worse else "none")
        assert any(t.startswith(f"{name} made") for t in out.limitations) == bool(worse)
        named += len(worse)
    assert named  # this data makes at least one gap worse, so the note is exercised
    assert any(e.type == "figure" and e.kind == "scatter" and e.data["labels"] == list(rows) for e in out.evidence)
