"""What fixing a disparity costs: three mitigations fitted on the 'reference' data set and compared,
before and after, on the eval set.

* post-processing — fairlearn's ``ThresholdOptimizer`` on the model's score for the positive class;
* in-processing — fairlearn's ``ExponentiatedGradient`` with a logistic-regression head on the
  model's penultimate representation (``ctx.features``);
* pre-processing — reweighing (Kamiran & Calders 2012) with a re-fitted logistic-regression head on
  the same representation.

References
----------
Hardt, Price, Srebro. "Equality of Opportunity in Supervised Learning", NeurIPS 2016.
Agarwal et al. "A Reductions Approach to Fair Classification", ICML 2018.
Kamiran, Calders. "Data preprocessing techniques for classification without discrimination", KAIS 2012.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import precision_score
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from audit.errors import SkipCheck
from audit.results import Figure, Table

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


def _joint_groups(ctx: AuditContext, name: str) -> np.ndarray:
    from audit.checks.fairness import sensitive_columns

    cols, _ = sensitive_columns(ctx, intersectional=False, name=name)
    return np.array(["|".join(v) for v in zip(*cols.values())], dtype=object)


def _save_head(save_dir: str, name: str, coefs: np.ndarray, intercepts: np.ndarray, weights: np.ndarray,
               meta: dict) -> str:
    from safetensors.numpy import save_file

    out = Path(save_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.safetensors"
    save_file({"coef": np.ascontiguousarray(coefs, dtype=np.float32),
               "intercept": np.ascontiguousarray(intercepts, dtype=np.float32),
               "mixture_weights": np.ascontiguousarray(weights, dtype=np.float32)}, str(path))
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2))
    return str(path)


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
    yr = (y_ref == positive).astype(np.int64)
    a_eval, a_ref = _joint_groups(ctx, "eval"), _joint_groups(ctx, "reference")
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
            opt.fit(ctx.probs("reference")[:, [positive]], yr, sensitive_features=a_ref)
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
            f_ref, f_eval = ctx.features("reference").numpy(), ctx.features().numpy()
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
    if saved:
        limits.append(f"Mitigated heads saved: {', '.join(saved)}.")
    rows, xs, ys = [], [], []
    for name, p in preds.items():
        acc = float((p == y_eval).mean())
        dpd = float(demographic_parity_difference(y_eval, p, sensitive_features=a_eval))
        ppv = MetricFrame(metrics=lambda t, q: precision_score(t, q, zero_division=np.nan), y_true=y_eval, y_pred=p,
                          sensitive_features=a_eval).difference()
        gaps = [dpd, float(demographic_parity_ratio(y_eval, p, sensitive_features=a_eval)),
                float(equalized_odds_difference(y_eval, p, sensitive_features=a_eval)),
                float(equal_opportunity_difference(y_eval, p, sensitive_features=a_eval)), float(ppv)]
        rows.append([name, round(acc, 6), *[None if np.isnan(g) else round(g, 6) for g in gaps], len(p)])
        xs.append(dpd)
        ys.append(acc)
    names = list(preds)
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    evidence = [
        Table(title="Mitigation: before and after", rows=rows,
              columns=["model", "accuracy", "demographic_parity_difference", "demographic_parity_ratio",
                       "equalized_odds_difference", "equal_opportunity_difference", "predictive_parity_difference",
                       "n"],
              caption=(f"Fitted on the 'reference' set ({len(yr)} samples) targeting {constraint_name}; evaluated on "
                       f"the eval set over the joint sensitive groups.")),
        Figure(kind="line", title="Accuracy against disparity",
               data={"x": [xs[i] for i in order], "series": {"accuracy": [ys[i] for i in order]},
                     "xlabel": "demographic parity difference", "ylabel": "accuracy"},
               caption="One point per model, sorted by disparity: " + "; ".join(
                   f"{names[i]} ({xs[i]:.3f}, {ys[i]:.3f})" for i in order) + "."),
        Figure(kind="bar", title="Demographic parity difference before and after mitigation",
               data={"labels": names, "values": xs, "ylabel": "demographic parity difference"},
               caption="Lower is fairer; the accuracy each costs is in the table above."),
    ]
    return evidence, limits
