"""Backdoor simulation and scan: against ART (triggers, poisoning, spectral signatures, Neural Cleanse's
outlier rule) and a planted backdoor that must be found, while a clean model is not flagged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit.checks.poisoning import BackdoorScan, BackdoorScanConfig, BackdoorSimulation, BackdoorSimulationConfig
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import InputError, SkipCheck
from audit.poisoning import (
    feature_classifier,
    flagged_by_anomaly,
    image_trigger,
    mad_anomaly_index,
    poison_indices,
    tabular_trigger,
)
from audit.runner import judge
from models.adapter import Normalize, TorchAdapter

TARGET = 0
INIT = {"in_channels": 1, "n_classes": 10, "image_size": 8, "width": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


def ds(name: str, x: np.ndarray, y: np.ndarray | None, kind: str = "image") -> AuditDataset:
    return AuditDataset(name=name, inputs=x, target=y, class_names=None, sensitive_features=None, feature_names=None,
                        input_kind=kind, path="mem", format="npz", sha256="0")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def digits():
    from models.datasets import load_digits

    d = load_digits(seed=0, n_samples=900)
    return d


@pytest.fixture(scope="module")
def meta(digits):
    return {"recipe": {"name": "digits-lenet5", "lr": 3e-3, "batch_size": 32, "weight_decay": 0.0},
            "init_args": INIT, "preprocessing": digits.preprocessing}


def adapter_of(module: nn.Module, digits) -> TorchAdapter:
    pre = digits.preprocessing
    return TorchAdapter(module, input_kind="image", device=torch.device("cpu"),
                        preprocess=Normalize(pre["mean"], pre["std"]), input_range=(0.0, 1.0))


def train(digits, meta, x: np.ndarray, y: np.ndarray, epochs: int = 20) -> nn.Module:
    from models.recipes import fit_recipe

    return fit_recipe(meta["recipe"], x, y, init_args=INIT, preprocessing=digits.preprocessing, epochs=epochs, seed=0)


@pytest.fixture(scope="module")
def planted(digits, meta):
    """A LeNet trained on digits with 12% of its training samples carrying ART's pattern trigger, labelled 0."""
    x, y = digits.x_train.copy(), digits.y_train.copy()
    rows = poison_indices(y, TARGET, 0.12, np.random.default_rng(1))
    x[rows], y[rows] = image_trigger((1, 8, 8)).apply(x[rows]), TARGET
    return train(digits, meta, x, y), x, y, rows


@pytest.fixture(scope="module")
def clean(digits, meta):
    return train(digits, meta, digits.x_train, digits.y_train)


# ------------------------------------------------------------------------------------------ triggers

def test_image_triggers_are_arts_and_land_where_documented() -> None:
    from art.attacks.poisoning.perturbations import add_pattern_bd

    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32) * 0.5
    pattern = image_trigger((1, 8, 8), "pattern", value=1.0, distance=1).apply(x)
    np.testing.assert_array_equal(pattern, add_pattern_bd(x, distance=1, pixel_value=1, channels_first=True))
    changed = np.argwhere((pattern != x)[0, 0])
    assert sorted(map(tuple, changed)) == [(5, 7), (6, 6), (7, 5), (7, 7)]
    pixel = image_trigger((3, 6, 6), "pixel", value=0.9, distance=2).apply(np.zeros((2, 3, 6, 6), np.float32))
    assert pixel.sum() == pytest.approx(2 * 3 * 0.9) and np.all(pixel[:, :, 4, 4] == np.float32(0.9))


def test_tabular_trigger_is_out_of_range_on_the_highest_variance_features() -> None:
    ref = np.array([[0.0, 10.0, 5.0], [1.0, 30.0, 5.0], [2.0, 20.0, 5.0]], dtype=np.float32)
    trig = tabular_trigger(ref, n_features=1)
    out = trig.apply(ref)
    np.testing.assert_allclose(out[:, 1], 30 + 20)  # max + 1·(max − min)
    np.testing.assert_array_equal(out[:, [0, 2]], ref[:, [0, 2]])
    with pytest.raises(InputError, match="feature indices in 0..2"):
        tabular_trigger(ref, features=[3])


def test_poison_indices_skip_the_target_class() -> None:
    y = np.repeat(np.arange(4), 25)
    idx = poison_indices(y, 2, 0.1, np.random.default_rng(0))
    assert len(idx) == 10 and not np.any(y[idx] == 2) and len(set(idx)) == 10


# ---------------------------------------------------------------------------------------- simulation

def test_simulation_through_the_recipe_matches_an_independent_art_poisoning(digits, meta, clean) -> None:
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning.perturbations import add_pattern_bd
    from audit.stats import wilson_interval
    from models.recipes import fit_recipe

    x_te, y_te = digits.x_test, digits.y_test
    ctx = AuditContext(adapter_of(clean, digits), {"eval": ds("eval", x_te, y_te),
                                                   "reference": ds("reference", digits.x_train, digits.y_train)},
                       model_meta=meta)
    cfg = BackdoorSimulationConfig(rates=[0.15], epochs=12)
    out = BackdoorSimulation(cfg).run(ctx)
    assert "recipe 'digits-lenet5'" in out.summary
    m = {(x.name, x.group): x for x in out.metrics}
    # the same poisoning, independently: ART's attack with ART's pattern, the recipe, the same seed
    seed = int(ctx.rng("poisoning.backdoor_simulation").integers(0, 2**31))
    attack = PoisoningAttackBackdoor(lambda a: add_pattern_bd(a, distance=1, pixel_value=1.0, channels_first=True))
    x, y = digits.x_train.copy(), digits.y_train.copy()
    rows = poison_indices(y, TARGET, 0.15, np.random.default_rng(seed))
    x[rows], y[rows] = attack.poison(x[rows], y=np.full(len(rows), TARGET))
    model = adapter_of(fit_recipe(meta["recipe"], x, y, init_args=INIT, preprocessing=digits.preprocessing,
                                  epochs=12, seed=seed), digits)
    # ART's / BadNets' measure: the samples not of the target that the poisoned model gets right without the trigger
    clean_pred = model.predict_logits(x_te).argmax(1).numpy()
    eligible = (y_te != TARGET) & (clean_pred == y_te)
    hits = int((model.predict_logits(attack.poison(x_te[eligible], y=np.zeros(eligible.sum()))[0]).argmax(1).numpy()
                == TARGET).sum())
    asr = m[("attack_success_rate", "rate=0.15")]
    assert asr.n == eligible.sum() < (y_te != TARGET).sum() and asr.value == pytest.approx(hits / eligible.sum())
    assert (asr.ci_low, asr.ci_high) == pytest.approx(wilson_interval(hits, int(eligible.sum())))
    acc = float((clean_pred == y_te).mean())
    assert m[("clean_accuracy", "rate=0.15")].value == pytest.approx(acc)
    # and the known shape: the backdoor is learnt at 15%, not without poison, and clean accuracy stays up
    assert asr.value > 0.8 and m[("attack_success_rate", "rate=0")].value < 0.1
    assert m[("clean_accuracy", "rate=0.15")].value > 0.85
    assert m[("asr_at_highest_rate", None)].value == m[("asr_at_lowest_rate", None)].value == asr.value
    status, outcomes = judge(out, {}, BackdoorSimulation.default_thresholds)  # ASR > 0.5 at the lowest rate warns
    assert status == "warn" and outcomes[0].metric == "asr_at_lowest_rate" and outcomes[0].source == "default"
    assert out.evidence[1].data["x"] == [0.0, 0.15]


def test_simulation_fine_tunes_a_copy_without_a_recipe(digits, clean) -> None:
    adapter = adapter_of(clean, digits)
    before = [p.detach().clone() for p in clean.parameters()]
    ctx = AuditContext(adapter, {"eval": ds("eval", digits.x_test, digits.y_test),
                                 "reference": ds("reference", digits.x_train, digits.y_train)})
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.2], epochs=8)).run(ctx)
    assert "fine-tuning a copy" in out.method
    assert all(torch.equal(a, b) for a, b in zip(before, clean.parameters()))  # the given model is untouched
    m = {(x.name, x.group): x.value for x in out.metrics}
    # fine-tuning on 20% poison implants the backdoor; fine-tuning on clean data does not
    assert m[("attack_success_rate", "rate=0.2")] > 0.3 > 0.05 > m[("attack_success_rate", "rate=0")]


def test_simulation_on_tabular_uses_an_out_of_range_trigger() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    adapter = TorchAdapter(model, input_kind="tabular", device=torch.device("cpu"))
    ctx = AuditContext(adapter, {"eval": ds("eval", x[300:], y[300:], "tabular"),
                                 "reference": ds("reference", x[:300], y[:300], "tabular")})
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.1], epochs=30, lr=1e-2, target_class=1)).run(ctx)
    assert "outside their training range" in out.method
    m = {(x.name, x.group): x for x in out.metrics}
    assert m[("attack_success_rate", "rate=0.1")].value > 0.9 > m[("attack_success_rate", "rate=0")].value
    with pytest.raises(InputError, match="image trigger but the model takes tabular"):
        BackdoorSimulation(BackdoorSimulationConfig(trigger="pattern")).run(ctx)


class _AlwaysOne(nn.Module):
    """Logits that send every input to class 1 whatever the training does (the weight is multiplied by 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([-5.0, 5.0]).expand(len(x), 2) + 0 * self.w


def _tabular_ctx(module: nn.Module, n_ref: int = 300, ref_labels: np.ndarray | None = None,
                 ev_labels: np.ndarray | None = None) -> AuditContext:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_ref + 100, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    y_ref = y[:n_ref] if ref_labels is None else ref_labels
    y_ev = y[n_ref:] if ev_labels is None else ev_labels
    adapter = TorchAdapter(module, input_kind="tabular", device=torch.device("cpu"))
    return AuditContext(adapter, {"eval": ds("eval", x[n_ref:], y_ev, "tabular"),
                                  "reference": ds("reference", x[:n_ref], y_ref, "tabular")})


def test_attack_success_counts_only_the_correctly_classified_non_target_samples() -> None:
    from audit.poisoning import attack_success

    y = np.array([0, 0, 0, 1, 1])
    # target 1; the model gets the first two class-0 samples right without the trigger, the third wrong
    assert attack_success(y, np.array([0, 0, 1, 1, 1]), np.array([1, 0, 1]), 1) == (1, 2)  # not 2 of 3
    assert attack_success(y, np.ones(5, int), np.ones(3, int), 1) == (0, 0)  # all sent to the target: undefined
    with pytest.raises(ValueError):
        attack_success(y, np.ones(5, int), np.ones(5, int), 1)


def test_a_model_that_sends_everything_to_the_target_has_no_attack_success() -> None:
    """Known answer: a model that predicts the target for every clean input learns nothing from the trigger; the old
    measure (every non-target sample sent to the target) called that an attack success rate of 1.0 and warned."""
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.1], epochs=1, target_class=1)).run(
        _tabular_ctx(_AlwaysOne()))
    m = {(x.name, x.group): x for x in out.metrics}
    for key in (("attack_success_rate", "rate=0"), ("attack_success_rate", "rate=0.1"), ("asr_at_lowest_rate", None)):
        assert m[key].value is None and m[key].n == 0
        assert "no correctly classified non-target samples" in m[key].method
    assert "gives no attack success rate (no correctly classified non-target samples)" in out.summary
    status, outcomes = judge(out, {}, BackdoorSimulation.default_thresholds)
    assert status == "measured" and outcomes[0].observed is None and not outcomes[0].passed


def test_a_trigger_the_clean_model_already_follows_is_a_baseline_not_a_backdoor() -> None:
    """The out-of-range trigger on the two features that decide the class sends correctly classified class-0 rows to
    class 1 without any poison: the rate-0 row shows it and the limitation says so."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    cfg = BackdoorSimulationConfig(rates=[0.1], epochs=30, lr=1e-2, target_class=1, trigger_features=[0, 1])
    out = BackdoorSimulation(cfg).run(_tabular_ctx(model))
    asr0 = {(x.name, x.group): x for x in out.metrics}[("attack_success_rate", "rate=0")]
    assert asr0.value > 0.9 and asr0.n > 30
    assert any(f"already sends {asr0.value:.1%} of the correctly classified" in t for t in out.limitations)
    assert f"without poison the attack already succeeds on {asr0.value:.3f}" in out.summary


def _no_model_calls(ctx: AuditContext, monkeypatch) -> None:
    monkeypatch.setattr(ctx.adapter, "predict_logits", lambda *a, **k: pytest.fail("the model ran before the check"))


def test_a_rate_that_poisons_nothing_is_refused_before_any_work(monkeypatch) -> None:
    torch.manual_seed(0)
    ctx = _tabular_ctx(nn.Sequential(nn.Linear(4, 2)))
    _no_model_calls(ctx, monkeypatch)
    sim = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.001, 0.1]))
    with pytest.raises(InputError, match=r"rates 0.001 poison no training sample \(round\(rate·300\) = 0 .*the smallest "
                                         r"rate that poisons one is 0.00333\.$"):
        sim.preflight(ctx)
    with pytest.raises(InputError, match="rates 0.001 poison no training sample"):
        sim.run(ctx)
    # max_train_samples caps the training set the rates apply to
    with pytest.raises(InputError, match=r"round\(rate·40\) = 0 of the 40 .*max_train_samples 40\); the smallest rate "
                                         r"that poisons one is 0.025"):
        BackdoorSimulation(BackdoorSimulationConfig(rates=[0.01], max_train_samples=40)).preflight(ctx)
    BackdoorSimulation(BackdoorSimulationConfig(rates=[0.004])).preflight(ctx)  # round(1.2) = 1: fine


def test_a_default_rate_that_poisons_nothing_is_null_with_the_reason_not_a_pass() -> None:
    """Default rates (not set by the user) on a small training set: the 1% rate poisons round(0.4) = 0 of 40 samples;
    it is not retrained and its metrics are null with the reason (the old code reported an attack success rate of
    0.000 for it, judged PASS)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    out = BackdoorSimulation(BackdoorSimulationConfig(epochs=2, lr=1e-2, target_class=1)).run(
        _tabular_ctx(model, n_ref=40))
    m = {(x.name, x.group): x for x in out.metrics}
    for key in (("attack_success_rate", "rate=0.01"), ("clean_accuracy", "rate=0.01"), ("asr_at_lowest_rate", None)):
        assert m[key].value is None and m[key].n == 0
        assert "rate 0.01 poisons none of the 40 training samples (round(0.01·40) = 0)" in m[key].method
    assert m[("attack_success_rate", "rate=0.05")].value is not None  # round(2.0) = 2 samples poisoned
    assert out.evidence[0].rows[1][:3] == [0.01, 0, 0.0] and out.evidence[0].rows[2][:3] == [0.05, 2, 0.05]
    assert "poisoning 0 of 40 training samples (0.0%) gives no attack success rate (rate 0.01 poisons none" in out.summary
    status, outcomes = judge(out, {}, BackdoorSimulation.default_thresholds)
    assert status == "measured" and not outcomes[0].passed and outcomes[0].observed is None
    # a training set of the target class only: no sample can be poisoned at any rate
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.1], epochs=1, target_class=1)).run(
        _tabular_ctx(model, n_ref=40, ref_labels=np.ones(40, np.int64)))
    asr = {(x.name, x.group): x for x in out.metrics}[("attack_success_rate", "rate=0.1")]
    assert asr.value is None and "rate 0.1 poisons none of the 40 training samples (none is of a class other than 1)" \
        in asr.method


def test_a_rate_capped_at_the_non_target_samples_reports_the_share_poisoned() -> None:
    """0.9 asks for 270 of 300 samples, but only the samples not of the target class can be poisoned: the share
    actually poisoned is reported and judged, never 'poisoning 90%'."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    ctx = _tabular_ctx(model)
    n_other = int((ctx.datasets["reference"].target != 1).sum())
    out = BackdoorSimulation(BackdoorSimulationConfig(rates=[0.05, 0.9], epochs=2, lr=1e-2, target_class=1)).run(ctx)
    assert out.evidence[0].rows[2][:3] == [0.9, n_other, round(n_other / 300, 4)] and n_other < 270
    assert (f"{n_other} of 300 training samples ({n_other / 300:.1%}; 90% asked for, capped at the samples not of class "
            "1) gives") in out.summary
    high = {(x.name, x.group): x for x in out.metrics}[("asr_at_highest_rate", None)]
    assert f"the 270 the rate asks for capped at the {n_other} not of class 1" in high.method
    assert "15 of 300 training samples (5.0%) gives" in out.summary  # not capped: no note


def test_an_evaluation_set_of_the_target_class_only_is_skipped_with_the_reason() -> None:
    """Every sampled evaluation sample of the target class: nothing to trigger, skipped (not a division by zero)."""
    torch.manual_seed(0)
    ctx = _tabular_ctx(nn.Sequential(nn.Linear(4, 2)), ev_labels=np.ones(100, np.int64))
    with pytest.raises(SkipCheck, match="every sampled evaluation sample is of the target class 1: no attack success"):
        BackdoorSimulation(BackdoorSimulationConfig(rates=[0.1], epochs=1, target_class=1)).run(ctx)


def test_simulation_preflight_refuses_config_the_model_refutes_without_running_it(monkeypatch) -> None:
    torch.manual_seed(0)
    adapter = TorchAdapter(nn.Sequential(nn.Linear(4, 2)), input_kind="tabular", device=torch.device("cpu"),
                           class_names=["no", "yes"])
    ctx = _tabular_ctx(nn.Sequential(nn.Linear(4, 2)))
    ctx = AuditContext(adapter, ctx.datasets)
    _no_model_calls(ctx, monkeypatch)
    with pytest.raises(InputError, match=r"target_class must be a class index in 0..1. Got 2"):
        BackdoorSimulation(BackdoorSimulationConfig(target_class=2)).preflight(ctx)
    with pytest.raises(InputError, match="'pixel' is an image trigger but the model takes tabular"):
        BackdoorSimulation(BackdoorSimulationConfig(trigger="pixel")).preflight(ctx)
    BackdoorSimulation(BackdoorSimulationConfig(target_class=1)).preflight(ctx)
    adapter.class_names = []  # a model that states no classes: the range is checked on its logits when the check runs
    BackdoorSimulation(BackdoorSimulationConfig(target_class=2)).preflight(ctx)
    seq = AuditContext(TorchAdapter(nn.Sequential(nn.Linear(4, 2)), input_kind="sequence", device=torch.device("cpu")),
                       ctx.datasets)
    with pytest.raises(InputError, match="'pattern' is not a token trigger; token-id models take trigger_token_id"):
        BackdoorSimulation(BackdoorSimulationConfig(trigger="pattern")).preflight(seq)


def test_simulation_bad_input(digits, clean) -> None:
    adapter = adapter_of(clean, digits)
    only_eval = AuditContext(adapter, {"eval": ds("eval", digits.x_test, digits.y_test)})
    with pytest.raises(SkipCheck, match="data.reference"):
        BackdoorSimulation().run(only_eval)
    both = AuditContext(adapter, {"eval": ds("eval", digits.x_test, digits.y_test),
                                  "reference": ds("reference", digits.x_train, digits.y_train)})
    with pytest.raises(InputError, match="target_class must be a class index in 0..9"):
        BackdoorSimulation(BackdoorSimulationConfig(target_class=10)).run(both)
    with pytest.raises(InputError, match="out_of_range' needs tabular inputs"):
        BackdoorSimulation(BackdoorSimulationConfig(trigger="out_of_range")).run(both)
    with pytest.raises(SkipCheck, match="names no recipe"):
        BackdoorSimulation(BackdoorSimulationConfig(retrain="recipe")).run(both)
    text = AuditContext(adapter, {"eval": ds("eval", ["a b"] * 4, np.zeros(4, np.int64), "text"),
                                  "reference": ds("reference", ["a b"] * 4, np.zeros(4, np.int64), "text")})
    with pytest.raises(SkipCheck, match="holds raw text but the model takes image inputs"):
        BackdoorSimulation().run(text)
    with pytest.raises(SkipCheck, match="holds raw text but the model takes image inputs"):  # the scan says the same
        BackdoorScan().run(text)


# ---------------------------------------------------------------------------------------------- scan

def test_mad_anomaly_index_known_answer_and_arts_outlier_rule() -> None:
    from art.estimators.poison_mitigation.neural_cleanse.neural_cleanse import NeuralCleanseMixin

    norms = np.array([10.0, 11.0, 12.0, 9.0, 10.5, 2.0])
    med = 10.25
    mad = 1.4826 * np.median(np.abs(norms - med))
    np.testing.assert_allclose(mad_anomaly_index(norms), np.abs(norms - med) / mad)

    class Fake:  # ART's rule, fed the same mask norms
        nb_classes = len(norms)

        @staticmethod
        def generate_backdoor(_x, _y, target):
            return np.full(1, norms[int(np.argmax(target))]), None

    art_flagged = [label for label, _, _ in NeuralCleanseMixin.outlier_detection(Fake(), None, None)]
    assert art_flagged == list(np.flatnonzero(flagged_by_anomaly(norms))) == [5]


def test_feature_classifier_feeds_arts_defences_the_penultimate_features(digits, clean) -> None:
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    adapter = adapter_of(clean, digits)
    x, y = digits.x_train[:200], digits.y_train[:200]
    feats = adapter.predict_features(x).numpy()
    clf = feature_classifier(adapter.as_module(), (1, 8, 8), 10, x_reference=x, features=feats, clip_values=(0, 1))
    ac = ActivationDefence(clf, x, y)
    np.testing.assert_array_equal(ac._get_activations(), feats)
    report, is_clean = SpectralSignatureDefense(clf, x, y, expected_pp_poison=0.1).detect_poison()
    expected = np.ones(len(y), dtype=int)
    for c in range(10):  # Tran et al.: per class, scores above the (1 − 1.5·ε) quantile are removed
        rows = np.flatnonzero(y == c)
        score = SpectralSignatureDefense.spectral_signature_scores(feats[rows]).ravel()
        expected[rows[score >= np.quantile(score, 1 - 1.5 * 0.1)]] = 0
    np.testing.assert_array_equal(np.asarray(is_clean), expected)
    assert set(report) == set(np.flatnonzero(expected == 0))


SCAN = BackdoorScanConfig(max_samples=200)


def test_scan_finds_a_planted_backdoor(digits, planted) -> None:
    model, x, y, rows = planted
    ctx = AuditContext(adapter_of(model, digits), {"eval": ds("eval", digits.x_test, digits.y_test),
                                                   "reference": ds("reference", x, y)})
    out = BackdoorScan(SCAN).run(ctx)
    m = {(x.name, x.group): x for x in out.metrics}
    assert m[("anomaly_index", None)].value > 3 and m[("suspected_classes", None)].value == 1
    assert m[("class_anomaly_index", "0")].value == m[("anomaly_index", None)].value
    l1 = np.array([m[("trigger_mask_l1", str(c))].value for c in range(10)])
    assert np.argmin(l1) == TARGET
    steps = [row[out.evidence[0].columns.index("optimisation steps")] for row in out.evidence[0].rows]
    assert all(0 < s <= SCAN.steps for s in steps) and min(steps) < SCAN.steps  # early stopping fired, per class
    flagged = [r[0] for r in out.evidence[-1].rows if r[2] and r[3]]
    assert len(flagged) == m[("flagged_samples", None)].value > 0
    precision = np.isin(flagged, rows).mean()
    assert precision >= 0.5, precision  # most samples both ART defences flag are the planted ones
    status, _ = judge(out, {}, BackdoorScan.default_thresholds)
    assert status == "warn" and "suspected backdoor target class(es): 0" in out.summary


def test_scan_does_not_flag_a_clean_model(digits, clean) -> None:
    ctx = AuditContext(adapter_of(clean, digits), {"eval": ds("eval", digits.x_test, digits.y_test),
                                                   "reference": ds("reference", digits.x_train, digits.y_train)})
    out = BackdoorScan(SCAN).run(ctx)
    m = {(x.name, x.group): x for x in out.metrics}
    assert m[("anomaly_index", None)].value <= 3 and m[("suspected_classes", None)].value == 0
    assert m[("flagged_samples", None)].value == 0 and len(out.evidence) >= 2
    status, _ = judge(out, {}, BackdoorScan.default_thresholds)
    assert status == "pass" and "no class stands out" in out.summary


def test_scan_features_only_the_capped_training_rows(digits, planted) -> None:
    """The ART defences' cap bounds the work: rows are drawn (stratified by label) before features are computed,
    so an adapter that counts featurised rows never sees more than max_train_samples."""
    model, x, y, _ = planted
    cap = 120

    class Counting(TorchAdapter):
        featurised = 0

        def predict_features(self, inputs, batch_size=256, progress=None):  # type: ignore[override]
            Counting.featurised += len(inputs)
            if Counting.featurised > cap:
                raise AssertionError(f"{Counting.featurised} rows featurised, over the cap of {cap}")
            return super().predict_features(inputs, batch_size=batch_size, progress=progress)

    pre = digits.preprocessing
    adapter = Counting(model, input_kind="image", device=torch.device("cpu"), preprocess=Normalize(pre["mean"], pre["std"]),
                       input_range=(0.0, 1.0))
    out = BackdoorScan(BackdoorScanConfig(max_samples=200, max_train_samples=cap)).run(
        AuditContext(adapter, {"eval": ds("eval", digits.x_test, digits.y_test), "reference": ds("reference", x, y)}))
    assert Counting.featurised == cap < len(x)
    drawn = [r[0] for r in out.evidence[-1].rows]
    assert drawn and all(0 <= r < len(x) for r in drawn)
    m = {(x.name, x.group): x for x in out.metrics}
    assert m[("flagged_samples", None)].value is not None and m[("flagged_samples", None)].n == cap


def test_scan_bad_input(digits, clean) -> None:
    blind = adapter_of(clean, digits)
    blind.differentiable = False
    with pytest.raises(SkipCheck, match="no input gradients"):
        BackdoorScan().run(AuditContext(blind, {"eval": ds("eval", digits.x_test, digits.y_test)}))
    torch.manual_seed(0)
    binary = TorchAdapter(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), input_kind="tabular",
                          device=torch.device("cpu"))
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    # A tool limitation, not a risk: Neural Cleanse needs >= 5 classes and the ART defences only flag samples in
    # the classes it suspects, so a binary model's scan is skipped with the reason (no warning, no zero count).
    with pytest.raises(SkipCheck, match="at least 5 classes"):
        BackdoorScan(BackdoorScanConfig(steps=10)).run(
            AuditContext(binary, {"eval": ds("eval", x, y, "tabular"), "reference": ds("reference", x, y, "tabular")}))


def test_scan_without_convergence_has_no_anomaly_verdict(digits, clean, monkeypatch) -> None:
    """Not run is never a finding: when most classes never found a working trigger (an untrained model, too few
    steps) the mask sizes are wherever the optimiser stopped, so there is no anomaly index, no suspected class
    and no warning — even when one unreached class has a tiny mask (an index of thousands before this guard)."""
    import audit.checks.poisoning as scan_module
    from audit.poisoning import ReverseEngineered

    def not_converged(_logits, x, k, **_kw):
        l1 = np.full(k, 40.0) + np.arange(k)
        l1[3] = 0.5  # the smallest mask by far, but it never worked
        reached = np.zeros(k, dtype=bool)
        reached[[0, 1, 2]] = True  # 3 of 10 classes converged
        return ReverseEngineered(mask_l1=l1, success=np.where(reached, 0.99, 0.2), reached=reached,
                                 masks=np.zeros((k, 1, 8, 8)), patterns=np.zeros((k, 1, 8, 8)),
                                 steps_used=np.full(k, 300))

    monkeypatch.setattr(scan_module, "reverse_engineer_triggers", not_converged)
    out = BackdoorScan(SCAN).run(AuditContext(adapter_of(clean, digits), {"eval": ds("eval", digits.x_test, digits.y_test)}))
    m = {(x.name, x.group): x for x in out.metrics}
    assert m[("anomaly_index", None)].value is None and "only 3 of 10 classes" in m[("anomaly_index", None)].method
    assert m[("suspected_classes", None)].value is None
    assert "did not converge" in out.summary and "suspected" not in out.summary
    status, outcomes = judge(out, {}, BackdoorScan.default_thresholds)
    assert status != "warn" and not outcomes[0].passed and outcomes[0].observed is None


def test_scan_without_convergence_flags_no_samples_not_zero(digits, clean, monkeypatch) -> None:
    """With a training set: when Neural Cleanse did not converge no class is suspected, so the ART defences had
    nothing to look at; flagged_samples is null with that reason (it read 0 before, and a threshold
    flagged_samples.max=0 passed)."""
    import audit.checks.poisoning as scan_module
    from audit.poisoning import ReverseEngineered
    from audit.config import ThresholdSpec

    def not_converged(_logits, x, k, **_kw):
        reached = np.zeros(k, dtype=bool)
        reached[0] = True
        return ReverseEngineered(mask_l1=np.full(k, 40.0) + np.arange(k), success=np.where(reached, 0.99, 0.2),
                                 reached=reached, masks=np.zeros((k, 1, 8, 8)), patterns=np.zeros((k, 1, 8, 8)),
                                 steps_used=np.full(k, 300))

    monkeypatch.setattr(scan_module, "reverse_engineer_triggers", not_converged)
    data = {"eval": ds("eval", digits.x_test, digits.y_test), "reference": ds("reference", digits.x_train, digits.y_train)}
    out = BackdoorScan(SCAN).run(AuditContext(adapter_of(clean, digits), data))
    m = {(x.name, x.group): x for x in out.metrics}
    assert m[("suspected_classes", None)].value is None
    flagged = m[("flagged_samples", None)]
    assert flagged.value is None and "no class could be suspected: only 1 of 10 classes" in flagged.method
    status, outcomes = judge(out, {"flagged_samples": ThresholdSpec(max=0)}, BackdoorScan.default_thresholds)
    assert status != "pass" and not any(o.passed for o in outcomes)


def test_scan_says_when_the_art_defences_did_not_run(digits, planted) -> None:
    """Not run is never zero: without a training set the flagged count is null with the reason, and the
    summary does not claim a number of flagged samples."""
    model = planted[0]
    out = BackdoorScan(SCAN).run(AuditContext(adapter_of(model, digits), {"eval": ds("eval", digits.x_test, digits.y_test)}))
    m = {(x.name, x.group): x for x in out.metrics}
    assert m[("suspected_classes", None)].value == 1
    assert m[("flagged_samples", None)].value is None and "data.reference" in m[("flagged_samples", None)].method
    assert "flagged by both" not in out.summary and "could not be pointed at" in out.summary
    assert any("spectral signatures did not run" in t for t in out.limitations)


def test_runner_hands_the_model_json_recipe_to_the_simulation(tmp_path, digits, meta) -> None:
    """Through the real runner: the sidecar beside model.safetensors names the recipe that is retrained."""
    import json

    from safetensors.torch import save_file

    from audit.config import load_config
    from audit.registry import list_checks
    from audit.runner import run_audit
    from models.zoo import create_model

    torch.manual_seed(0)
    save_file(create_model("lenet5", **INIT).state_dict(), str(tmp_path / "model.safetensors"))
    (tmp_path / "model.json").write_text(json.dumps({"architecture": "lenet5", "input_kind": "image",
                                                     "class_names": [str(i) for i in range(10)], **meta}))
    np.savez(tmp_path / "test.npz", x=digits.x_test[:100], y=digits.y_test[:100])
    np.savez(tmp_path / "train.npz", x=digits.x_train[:200], y=digits.y_train[:200])
    off = [f"checks.{c}.enabled=false" for c in list_checks() if c != "poisoning.backdoor_simulation"]
    cfg = load_config(None, {"model.path": str(tmp_path / "model.safetensors"), "data.eval.path": str(tmp_path / "test.npz"),
                             "data.reference.path": str(tmp_path / "train.npz")},
                      [*off, "energy.track=false", "checks.poisoning.backdoor_simulation.rates=[0.1]",
                       "checks.poisoning.backdoor_simulation.epochs=6",
                       "checks.poisoning.backdoor_simulation.include_baseline=false"])
    result = run_audit(cfg).check("poisoning.backdoor_simulation")
    # enough epochs that the retrained model classifies some clean digits correctly: the attack success is defined
    assert "recipe 'digits-lenet5'" in result.summary
    m = {x.name: x for x in result.metrics if x.group is None}
    assert m["asr_at_highest_rate"].value is not None
    # 6 epochs on 200 digits implant no backdoor that reaches 0.5 at 10%: the lowest rate is not judged, not passed
    assert result.status == "measured" and m["asr_at_lowest_rate"].value is None


def test_scan_of_a_torchscript_model_runs_the_art_defences(digits, planted) -> None:
    """TorchScript takes no forward hooks; its penultimate features come from its last Linear layer's input,
    so the ART defences run on it and agree with the eager model's scan."""
    model, x, y, _ = planted
    scripted = torch.jit.script(model)
    data = {"eval": ds("eval", digits.x_test, digits.y_test), "reference": ds("reference", x, y)}
    eager = BackdoorScan(SCAN).run(AuditContext(adapter_of(model, digits), dict(data)))
    out = BackdoorScan(SCAN).run(AuditContext(adapter_of(scripted, digits), dict(data)))
    m = {(x.name, x.group): x.value for x in out.metrics}
    assert m[("flagged_samples", None)] is not None and m[("flagged_samples", None)] > 0
    assert m[("flagged_samples", None)] == {(x.name, x.group): x.value for x in eager.metrics}[("flagged_samples", None)]
    assert "flagged by both ART defences" in out.summary


def test_binary_model_audit_has_no_backdoor_risk_on_page_one(tmp_path, tabular_csv, tiny_mlp) -> None:
    """Issue 12: every binary model got a backdoor-scan WARN because Neural Cleanse needs >= 5 classes. Through the
    real runner the scan is skipped with the reason, and page one's top risks do not mention it."""
    import json

    from safetensors.torch import save_file
    from tiny_models import TINY_MLP_CLASS

    from audit.config import load_config
    from audit.registry import list_checks
    from audit.runner import run_audit
    from reports._format import top_risks

    weights = tmp_path / "mlp.safetensors"
    save_file(tiny_mlp.state_dict(), str(weights))
    cfg_path = tmp_path / "audit.yaml"
    cfg_path.write_text(json.dumps({
        "version": 1, "model": {"path": str(weights), "class": TINY_MLP_CLASS},
        "data": {"eval": {"path": str(tabular_csv), "target": "label", "sensitive_features": ["sex"]},
                 "reference": {"path": str(tabular_csv), "target": "label", "sensitive_features": ["sex"]}},
        "device": "cpu", "energy": {"track": False}}))
    off = {c: {"enabled": False} for c in list_checks() if c not in ("poisoning.backdoor_scan", "performance")}
    result = run_audit(load_config(cfg_path, overrides={"checks": {**off, "poisoning.backdoor_scan": {"enabled": True}}}))
    scan = result.check("poisoning.backdoor_scan")
    assert scan.status == "skipped" and "at least 5 classes" in scan.skip_reason
    assert all(r["check"] != scan.title for r in top_risks(result, limit=50))


def test_scan_parameter_cap_follows_the_budget_so_a_resnet18_is_scanned_under_standard() -> None:
    """Neural Cleanse's parameter cap guards time: 5M under quick, 30M under standard (ResNet-18, 11.2M, and
    ResNet-50, 25.6M, are scanned), 200M under thorough; over it the scan is skipped with the reason."""
    from types import SimpleNamespace

    from audit.checks.poisoning import _neural_cleanse_blocker
    from audit.config import validate_check_config

    adapter = SimpleNamespace(differentiable=True, format="torch")
    resnet18 = 11_200_000
    caps = {b: validate_check_config("poisoning.backdoor_scan", {}, budget=b).max_parameters
            for b in ("quick", "standard", "thorough")}
    assert caps == {"quick": 5_000_000, "standard": 30_000_000, "thorough": 200_000_000}
    assert BackdoorScanConfig().max_parameters == caps["standard"]
    assert _neural_cleanse_blocker(adapter, 10, resnet18, validate_check_config("poisoning.backdoor_scan", {})) is None
    quick = validate_check_config("poisoning.backdoor_scan", {}, budget="quick")
    assert "11,200,000 parameters is over the budget (max_parameters 5,000,000)" in _neural_cleanse_blocker(
        adapter, 10, resnet18, quick)
    assert _neural_cleanse_blocker(adapter, 10, 25_600_000, BackdoorScanConfig()) is None
    assert "over the budget" in _neural_cleanse_blocker(adapter, 10, 30_000_001, BackdoorScanConfig())


@pytest.mark.parametrize("baseline", [True, False])
def test_a_retraining_that_learnt_no_backdoor_at_the_highest_rate_is_not_judged(baseline: bool) -> None:
    """Known answer: a fine-tuning with lr 1e-7 for one epoch changes nothing, so no rate implants a backdoor; the
    old code judged the lowest rate's attack success rate (the clean model's, ~0) and passed. Now it is null with the
    reason, judged neither way; a retraining that does learn it (the tabular test above) still judges."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    cfg = BackdoorSimulationConfig(rates=[0.05, 0.1], epochs=1, lr=1e-7, target_class=1, include_baseline=baseline)
    out = BackdoorSimulation(cfg).run(_tabular_ctx(model))
    m = {(x.name, x.group): x for x in out.metrics}
    top = m[("asr_at_highest_rate", None)]
    assert top.value is not None and top.ci_high < 0.5  # measured, and shown
    low = m[("asr_at_lowest_rate", None)]
    why = (f"the retraining learnt no backdoor even at the highest poison rate (ASR {top.value:.3f} "
           f"[{top.ci_low:.3f}, {top.ci_high:.3f}] at 0.1); the simulation is not sensitive — raise epochs or lr")
    assert low.value is None and why in low.method
    assert m[("attack_success_rate", "rate=0.05")].value is not None  # the per-rate rows still show the numbers
    assert any(why in t for t in out.limitations) and why in out.summary
    status, outcomes = judge(out, {}, BackdoorSimulation.default_thresholds)
    assert status == "measured" and outcomes[0].observed is None and not outcomes[0].passed
