"""What fixing a disparity costs: mitigations fitted on the 'reference' data set and compared,
before and after, on the eval set.

* post-processing — fairlearn's ``ThresholdOptimizer`` on the model's score for the positive class;
* in-processing — fairlearn's ``ExponentiatedGradient`` with a logistic-regression head on the
  model's penultimate representation (``ctx.features``), and adversarial debiasing: fairlearn's
  ``AdversarialFairnessClassifier`` (torch backend, small MLP predictor and adversary) on the same
  representation, standardised with the reference set's mean and standard deviation;
* pre-processing — reweighing (Kamiran & Calders 2012) with a re-fitted logistic-regression head on
  the same representation (``reweighing``), or the whole model retrained from scratch through its
  training recipe with the reweighing weights as per-sample loss weights (``reweighing_retrain``;
  needs a ``recipe`` in the model's ``model.json``).

References
----------
Hardt, Price, Srebro. "Equality of Opportunity in Supervised Learning", NeurIPS 2016.
Agarwal et al. "A Reductions Approach to Fair Classification", ICML 2018.
Zhang, Lemoine, Mitchell. "Mitigating Unwanted Biases with Adversarial Learning", AIES 2018.
Kamiran, Calders. "Data preprocessing techniques for classification without discrimination", KAIS 2012.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from audit.errors import SkipCheck
from audit.fairness.gaps import GAPS, LOWER_IS_WORSE, gaps_from_counts, group_counts
from audit.results import Figure, Table
from audit.stats import stratified_rows

if TYPE_CHECKING:
    from audit.checks.fairness import FairnessConfig
    from audit.context import AuditContext


class ScoreEstimator(ClassifierMixin, BaseEstimator):
    """A prefit 'estimator' whose input is the model's score: lets ThresholdOptimizer post-process it."""

    def fit(self, X: Any, y: Any) -> ScoreEstimator:  # noqa: N803
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return np.asarray(X, dtype=np.float64)[:, 0]


def reweighing_weights(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Kamiran & Calders weights w(a, y) = P(a) P(y) / P(a, y)."""
    frame = pd.DataFrame({"a": groups, "y": y})
    pa = frame["a"].map(frame["a"].value_counts(normalize=True))
    py = frame["y"].map(frame["y"].value_counts(normalize=True))
    pay = frame.groupby(["a", "y"])["y"].transform("size") / len(frame)
    return (pa * py / pay).to_numpy(dtype=np.float64)


ADVERSARIAL_HIDDEN = 32  # one hidden ReLU layer of this width, in the predictor and in the adversary


def adversarial_classifier(*, seed: int, epochs: int, batch_size: int, alpha: float, constraint: str,
                           learning_rate: float = 1e-3) -> Any:
    """fairlearn's ``AdversarialFairnessClassifier`` as the ``adversarial_debiasing`` mitigation builds it.

    Predictor and adversary are MLPs with one hidden ReLU layer of ``ADVERSARIAL_HIDDEN`` units (fairlearn
    adds the input and output layers from the data); Adam, shuffled batches, seeded by ``seed``.
    """
    from fairlearn.adversarial import AdversarialFairnessClassifier

    return AdversarialFairnessClassifier(
        backend="torch", predictor_model=[ADVERSARIAL_HIDDEN, "relu"], adversary_model=[ADVERSARIAL_HIDDEN, "relu"],
        constraints=constraint, learning_rate=learning_rate, alpha=alpha, epochs=epochs, batch_size=batch_size,
        shuffle=True, random_state=seed)


def standardise(f_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (1 where a feature is constant) of the reference features."""
    mean = f_ref.mean(axis=0)
    std = f_ref.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def fit_adversarial(f_ref: np.ndarray, y_ref: np.ndarray, groups: np.ndarray, *, seed: int, epochs: int,
                    batch_size: int, alpha: float, constraint: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """Fit :func:`adversarial_classifier` on standardised features; returns it with the mean and std used.

    Runs under ``torch.random.fork_rng`` (fairlearn seeds torch's global generator), so the audit's
    other random draws do not depend on whether it ran.
    """
    mean, std = standardise(f_ref)
    clf = adversarial_classifier(seed=seed, epochs=epochs, batch_size=batch_size, alpha=alpha, constraint=constraint)
    with torch.random.fork_rng(devices=[]):
        clf.fit((f_ref - mean) / std, y_ref, sensitive_features=groups)
    return clf, mean, std


def fit_rows(y: np.ndarray, groups: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted reference rows the mitigations are fitted on: at most ``limit``, stratified by label × group
    (each (label, group) cell keeps its share and at least two rows where it has them)."""
    _, cell = np.unique(groups, return_inverse=True)
    return stratified_rows(cell.ravel() * 2 + np.asarray(y, dtype=np.int64), limit, rng)


def _joint_groups(ctx: AuditContext, name: str) -> np.ndarray:
    from audit.checks.fairness import sensitive_columns

    cols, _ = sensitive_columns(ctx, intersectional=False, name=name)
    return np.array(["|".join(v) for v in zip(*cols.values())], dtype=object)


def _save_head(save_dir: str, name: str, coefs: np.ndarray, intercepts: np.ndarray, weights: np.ndarray,
               meta: dict) -> str:
    return _save_tensors(save_dir, name, {"coef": np.asarray(coefs, dtype=np.float32),
                                          "intercept": np.asarray(intercepts, dtype=np.float32),
                                          "mixture_weights": np.asarray(weights, dtype=np.float32)}, meta)


def _save_tensors(save_dir: str, name: str, tensors: dict[str, np.ndarray], meta: dict) -> str:
    from safetensors.numpy import save_file

    out = Path(save_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2))
    return str(path)


def retrain_reweighed(ctx: AuditContext, cfg: FairnessConfig, groups: np.ndarray,
                      rows: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Retrain the model from scratch through its recipe on rows ``rows`` of data.reference (``groups`` are
    theirs) with reweighing sample weights.

    Returns the eval predictions (class indices) and the saved weights' path (None without ``save_dir``).
    Raises :class:`SkipCheck` with the reason when the model cannot be retrained this way.
    """
    from models.adapter import Normalize, TorchAdapter
    from models.errors import ModelInputError
    from models.recipes import fit_recipe

    meta = ctx.model_meta
    recipe = meta.get("recipe")
    if not isinstance(recipe, dict) or not recipe.get("name"):
        raise SkipCheck("the model's model.json names no training recipe, so the model cannot be retrained "
                        "(the 'reweighing' head on its features is the fallback).")
    if not isinstance(meta.get("init_args"), dict):
        raise SkipCheck("the model's model.json has no init_args for its architecture.")
    ref, ev = ctx.dataset("reference"), ctx.dataset("eval")
    if isinstance(ref.inputs, list) or isinstance(ev.inputs, list):
        raise SkipCheck("the data are raw text; the recipes train on arrays (token ids or features).")
    x = np.asarray(ref.take(rows))
    x = x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x.astype(np.int64)
    y = ctx.y_true("reference")[rows].astype(np.int64)
    weights = reweighing_weights(y, groups)
    pre = meta.get("preprocessing") or {}
    seed = int(recipe.get("seed", 0))
    try:
        module = fit_recipe(recipe, x, y, init_args=meta["init_args"], preprocessing=pre, epochs=cfg.retrain_epochs,
                            seed=seed, device=ctx.device, sample_weight=weights)
    except (TypeError, RuntimeError, ModelInputError) as exc:  # a recipe or init_args that do not fit the data
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise SkipCheck(f"recipe {recipe['name']!r} cannot be trained on data.reference: {first}") from None
    norm = Normalize(pre["mean"], pre["std"]).to(ctx.device) if pre.get("mean") is not None else None
    adapter = TorchAdapter(module, input_kind=ctx.adapter.input_kind, device=ctx.device, preprocess=norm,
                           class_names=ctx.class_names)
    pred = adapter.predict_logits(ev.inputs, batch_size=ctx.batch_size).argmax(1).numpy().astype(np.int64)
    if not cfg.save_dir:
        return pred, None
    side = {k: v for k, v in meta.items() if k not in ("metrics", "test_data", "training_data")}
    side["training_data"] = {"source": ref.path, "n_train": int(len(y)), "sha256": ref.sha256}
    side["mitigation"] = {
        "kind": "reweighing_retrain", "constraint": "demographic_parity (reweighing makes group and label independent)",
        "sample_weight": "Kamiran & Calders w(a, y) = P(a) P(y) / P(a, y) over data.reference's joint sensitive "
                         "groups and labels", "recipe": recipe["name"], "seed": seed,
        "epochs": cfg.retrain_epochs or recipe.get("epochs")}
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    return pred, _save_tensors(cfg.save_dir, "fairness_reweighing_retrain_model", state, side)


def run_mitigations(ctx: AuditContext, cfg: FairnessConfig, positive: int, binary: bool) -> tuple[list, list[str]]:
    """Before/after table and trade-off figure; reasons in the limitations when a mitigation cannot run."""
    if not binary:
        return [], ["Mitigation was not run: the mitigations here are binary; this model is multiclass."]
    try:
        ref = ctx.dataset("reference")
        y_ref = ctx.y_true("reference")
        if ref.sensitive_features is None:
            raise SkipCheck("the 'reference' data set has no sensitive features (data.reference.sensitive_features)")
    except SkipCheck as exc:
        return [], [f"Mitigation was not run: {exc} — it is fitted on a labelled 'reference' data set with the same "
                    "sensitive features (data.reference in the config)."]
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient

    y_eval = (ctx.y_true() == positive).astype(np.int64)
    a_eval, a_ref = _joint_groups(ctx, "eval"), _joint_groups(ctx, "reference")
    # the cap is drawn before any of the reference set's logits or features are computed
    ref_rows = fit_rows((y_ref == positive).astype(np.int64), a_ref, cfg.max_fit_samples,
                        ctx.rng("fairness.mitigation.rows"))
    yr, a_ref = (y_ref[ref_rows] == positive).astype(np.int64), a_ref[ref_rows]
    fitted_on = (f"{len(ref_rows)} of the 'reference' set's {len(y_ref)} samples (max_fit_samples = "
                 f"{cfg.max_fit_samples}, stratified by label × joint sensitive group)")
    seed = int(ctx.rng("fairness.mitigation").integers(0, 2**31 - 1))
    limits: list[str] = []
    preds: dict[str, np.ndarray] = {"original model": (ctx.y_pred() == positive).astype(np.int64)}
    saved: list[str] = []
    constraint_name = cfg.constraint

    if "threshold_optimizer" in cfg.mitigation:
        opt = ThresholdOptimizer(estimator=ScoreEstimator().fit(None, None), constraints=constraint_name,
                                 objective="accuracy_score", prefit=True, predict_method="predict")
        unseen = sorted(set(a_eval) - set(a_ref))
        if unseen:
            limits.append(f"ThresholdOptimizer was not run: eval groups {unseen[:5]} are absent from the reference "
                          "set, so no threshold can be fitted for them.")
        else:
            probs_ref = torch.softmax(ctx.logits_for("reference", ref_rows).double(), dim=1).numpy()
            opt.fit(probs_ref[:, [positive]], yr, sensitive_features=a_ref)
            preds["threshold_optimizer"] = np.asarray(opt.predict(ctx.probs()[:, [positive]],
                                                                  sensitive_features=a_eval, random_state=seed),
                                                      dtype=np.int64)
        limits.append("ThresholdOptimizer is randomised post-processing that needs each person's group at "
                      "prediction time; it is not saved as a model.")
    head_kinds = [m for m in ("exponentiated_gradient", "reweighing") if m in cfg.mitigation]
    if head_kinds and len(np.unique(yr)) < 2:
        limits.append("Representation-head mitigations were not run: the reference labels hold one class only.")
        head_kinds = []
    if head_kinds:
        try:
            f_ref, f_eval = ctx.features_for("reference", ref_rows).numpy(), ctx.features().numpy()
        except SkipCheck as exc:
            limits.append(f"Representation-head mitigations were not run: {exc}")
            head_kinds = []
    for kind in head_kinds:
        if kind == "exponentiated_gradient":
            constraint = DemographicParity() if constraint_name == "demographic_parity" else EqualizedOdds()
            eg = ExponentiatedGradient(LogisticRegression(max_iter=1000), constraints=constraint, max_iter=30)
            eg.fit(f_ref, yr, sensitive_features=a_ref)
            preds[kind] = np.asarray(eg.predict(f_eval, random_state=seed), dtype=np.int64)
            heads = list(eg.predictors_)
            mix = np.asarray(eg.weights_, dtype=np.float64)
        else:
            head = LogisticRegression(max_iter=1000).fit(f_ref, yr, sample_weight=reweighing_weights(yr, a_ref))
            preds[kind] = head.predict(f_eval).astype(np.int64)
            heads, mix = [head], np.ones(1)
        if cfg.save_dir:
            coefs = np.stack([h.coef_[0] for h in heads])
            inter = np.array([h.intercept_[0] for h in heads])
            saved.append(_save_head(cfg.save_dir, f"fairness_{kind}_head", coefs, inter, mix, {
                "kind": kind, "input": "penultimate features of the audited model", "positive_class": positive,
                "class_names": ctx.class_names, "prediction": "P(positive) = sigmoid(features @ coef[i] + intercept[i]) "
                "for head i drawn with probability mixture_weights[i]", "constraint": constraint_name}))
    if "adversarial_debiasing" in cfg.mitigation:
        reason = None
        if len(np.unique(yr)) < 2:
            reason = "the reference labels hold one class only"
        else:
            try:
                f_ref, f_eval = ctx.features_for("reference", ref_rows).numpy(), ctx.features().numpy()
            except SkipCheck as exc:
                reason = str(exc)
        if reason is not None:
            limits.append(f"adversarial_debiasing was not run: {reason}")
        else:
            started = time.perf_counter()
            clf, mean, std = fit_adversarial(f_ref.astype(np.float64), yr, a_ref, seed=seed,
                                             epochs=cfg.adversarial_epochs, batch_size=cfg.adversarial_batch_size,
                                             alpha=cfg.adversarial_alpha, constraint=constraint_name)
            preds["adversarial_debiasing"] = np.asarray(clf.predict((f_eval - mean) / std), dtype=np.int64)
            limits.append(f"adversarial_debiasing: fairlearn AdversarialFairnessClassifier ({ADVERSARIAL_HIDDEN}-unit "
                          f"MLP predictor and adversary, alpha {cfg.adversarial_alpha}, {cfg.adversarial_epochs} "
                          f"epochs of batch {cfg.adversarial_batch_size}) on standardised penultimate features, "
                          f"fitted in {time.perf_counter() - started:.1f} s.")
            if cfg.save_dir:
                state = {k: v.detach().cpu().numpy() for k, v in clf.backendEngine_.predictor_model.state_dict().items()}
                state.update(feature_mean=mean.astype(np.float32), feature_std=std.astype(np.float32))
                saved.append(_save_tensors(cfg.save_dir, "fairness_adversarial_debiasing_head", state, {
                    "kind": "adversarial_debiasing", "input": "penultimate features of the audited model",
                    "positive_class": positive, "class_names": ctx.class_names, "constraint": constraint_name,
                    "prediction": "z = (features - feature_mean) / feature_std; P(positive) = sigmoid(layers_.2("
                                  "relu(layers_.0(z)))) (fairlearn's FullyConnected: Linear, ReLU, Linear, Sigmoid); "
                                  "positive when P >= 0.5",
                    "hidden": ADVERSARIAL_HIDDEN, "alpha": cfg.adversarial_alpha, "epochs": cfg.adversarial_epochs,
                    "batch_size": cfg.adversarial_batch_size, "seed": seed}))
    if "reweighing_retrain" in cfg.mitigation:
        try:
            started = time.perf_counter()
            pred, path = retrain_reweighed(ctx, cfg, a_ref, ref_rows)
            preds["reweighing_retrain"] = (pred == positive).astype(np.int64)
            limits.append(f"reweighing_retrain: the model was retrained from scratch through its recipe "
                          f"{ctx.model_meta['recipe']['name']!r} on {fitted_on} (not necessarily its original "
                          "training set) with Kamiran & Calders weights, in "
                          f"{time.perf_counter() - started:.1f} s.")
            if path:
                saved.append(path)
        except SkipCheck as exc:
            limits.append(f"reweighing_retrain was not run: {exc}")
    if len(ref_rows) < len(y_ref):
        limits.append(f"The mitigations were fitted on {fitted_on}, not on every reference row: a cap on their "
                      "cost; raise max_fit_samples to fit on more.")
    if saved:
        limits.append(f"Mitigated models saved: {', '.join(saved)}.")
    rows, xs, ys, gap_values = [], [], [], []
    for name, p in preds.items():
        acc = float((p == y_eval).mean())
        # from each group's confusion counts: fairlearn's gaps (tested equal) without a MetricFrame per model
        values = {k: float(v) for k, v in gaps_from_counts(group_counts(y_eval, p, a_eval)[1]).items()}
        gaps = [values[k] for k in GAPS]
        dpd = gaps[0]
        rows.append([name, round(acc, 6), *[None if np.isnan(g) else round(g, 6) for g in gaps], len(p)])
        gap_values.append(values)
        xs.append(dpd)
        ys.append(acc)
    names = list(preds)
    for i, row in enumerate(rows):  # which gaps each mitigation widened, from the numbers themselves
        worse = worse_after(gap_values[0], gap_values[i]) if i else []
        row.append("; ".join(worse) if worse else ("—" if i == 0 else "none"))
        if worse:
            # which gaps, before → after, are in the table's last column; not repeated here
            limits.append(f"{names[i]} made {len(worse)} gap{'s' if len(worse) > 1 else ''} worse than the original "
                          f"model on the eval set (see 'worse after mitigation' in the table 'Mitigation: before and "
                          f"after').")
    evidence = [
        Table(title="Mitigation: before and after", rows=rows,
              columns=["model", "accuracy", "demographic_parity_difference", "demographic_parity_ratio",
                       "equalized_odds_difference", "equal_opportunity_difference", "predictive_parity_difference",
                       "n", "worse after mitigation"],
              caption=(f"Fitted on {fitted_on}, targeting {constraint_name}; evaluated on the eval set "
                       f"({len(y_eval)} samples) over the joint sensitive groups. 'worse after mitigation' lists "
                       f"each gap wider than the original model's (a ratio: lower), as printed to four decimals; "
                       f"point estimates, not tested for significance.")),
        Figure(kind="scatter", title="Accuracy against disparity",
               data={"x": xs, "y": ys, "labels": names,
                     "xlabel": "demographic parity difference", "ylabel": "accuracy"},
               caption="One point per model, not joined: each mitigation is a separate model. " + "; ".join(
                   f"{names[i]} ({xs[i]:.3f}, {ys[i]:.3f})" for i in range(len(names))) + "."),
        Figure(kind="bar", title="Demographic parity difference before and after mitigation",
               data={"labels": names, "values": xs, "ylabel": "demographic parity difference"},
               caption="Lower is fairer; the accuracy each costs is in the table above."),
    ]
    return evidence, limits


def worse_after(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """The fairness gaps a mitigation made worse than the original model: ``"name before → after"`` each.

    A difference is worse when larger, the demographic parity ratio when smaller; values are compared as the
    report prints them (four decimals), so a change it cannot show is not called worse. Gaps undefined on
    either side are left out.
    """
    worse = []
    for name in GAPS:
        b, a = before.get(name), after.get(name)
        if b is None or a is None or not (np.isfinite(b) and np.isfinite(a)):
            continue
        b4, a4 = round(float(b), 4), round(float(a), 4)
        if (a4 < b4) if name in LOWER_IS_WORSE else (a4 > b4):
            worse.append(f"{name} {b4:.4f} → {a4:.4f}")
    return worse
