"""Membership inference: can an attacker tell the training data (``data.reference``) from unseen
data (the evaluation set) by the model's outputs? (EU AI Act Art. 15(5), confidentiality attacks.)

Three attacks on balanced samples of members and non-members, each reported with its AUROC and
advantage (TPR − FPR), a stratified bootstrap interval and its sample sizes:

- loss threshold (Yeom et al. 2018): lower loss ⇒ member; AUROC and the best membership
  advantage (max TPR − FPR) over thresholds, on every sampled member and non-member;
- ART's black-box attack (``MembershipInferenceBlackBox``, Shokri et al. 2017 without shadow
  models): an attack classifier on the predicted probabilities and the true label, trained on a
  seeded part of the members and non-members and evaluated on the held-out rest;
- prediction correctness (ART's ``MembershipInferenceBlackBoxRuleBased``): correct ⇒ member;
  its advantage is the train–test accuracy gap.

The strongest of the three (highest AUROC) is named and reported as ``strongest_attack_auc``.

References
----------
Yeom, Giacomelli, Fredrikson, Jha. "Privacy Risk in Machine Learning: Analyzing the Connection to
Overfitting", CSF 2018.
Shokri, Stronati, Song, Shmatikov. "Membership Inference Attacks Against Machine Learning Models", S&P 2017.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from sklearn.metrics import roc_auc_score, roc_curve

from audit.config import CheckConfig, ThresholdSpec
from audit.context import AuditContext
from audit.errors import SkipCheck
from audit.ood_scores import bootstrap_auroc
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from audit.stats import bootstrap_score_histogram_chunks, percentile_interval, stratified_rows

#: below this many held-out members (and as many non-members) the black-box attack is not run
MIN_HELD_OUT = 10


class PrivacyConfig(CheckConfig):
    """Settings of the ``privacy`` check."""

    max_samples: int = Field(default=2000, ge=10, description="At most this many members and as many non-members.")
    n_resamples: int = Field(default=500, ge=0, description="Bootstrap resamples for the AUROC and advantage intervals.")
    black_box_model: Literal["rf", "gb", "lr", "nn"] = Field(
        default="rf", description="Attack classifier of ART's black-box membership attack: random forest (rf), gradient "
                                  "boosting (gb), logistic regression (lr) or ART's neural network (nn).")
    black_box_train_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="Share of the sampled members and non-members the black-box attack is "
                                             "trained on; it is evaluated on the held-out rest.")


def membership_advantage(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """max over thresholds of TPR − FPR, with members as positives and higher score = member."""
    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    fpr, tpr, _ = roc_curve(labels, np.r_[member_scores, nonmember_scores])
    return float(np.max(tpr - fpr))


def bootstrap_advantage(member_scores: np.ndarray, nonmember_scores: np.ndarray, n_resamples: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Best advantage (max TPR − FPR over thresholds) of stratified bootstrap resamples, vectorised."""
    if n_resamples == 0:
        return np.empty(0)
    n_in, n_out = len(member_scores), len(nonmember_scores)
    out = []
    for pos, neg in bootstrap_score_histogram_chunks(member_scores, nonmember_scores, n_resamples, rng):
        # share of members / non-members scoring at least values[k]: TPR and FPR at threshold values[k]
        tpr = pos[:, ::-1].cumsum(1)[:, ::-1] / n_in
        fpr = neg[:, ::-1].cumsum(1)[:, ::-1] / n_out
        out.append(np.maximum((tpr - fpr).max(axis=1), 0.0))
    return np.concatenate(out)


def black_box_attack(probs_in: np.ndarray, y_in: np.ndarray, probs_out: np.ndarray, y_out: np.ndarray,
                     train_in: np.ndarray, train_out: np.ndarray, *, n_classes: int, model: str = "rf",
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ART's ``MembershipInferenceBlackBox`` on predicted probabilities and true labels.

    Trained on the rows ``train_in`` of the members and ``train_out`` of the non-members; returns
    the attack's membership probabilities for the held-out members and non-members.
    """
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import BlackBoxClassifier

    def never(_x: np.ndarray) -> np.ndarray:  # the attack is given the predictions; it never queries
        raise RuntimeError("the membership attack queried the model; it should use the cached predictions")

    estimator = BlackBoxClassifier(never, input_shape=(1,), nb_classes=n_classes)
    # ART builds the attack classifier itself (its check of a given, unfitted forest fails); its
    # scikit-learn models then draw from numpy's global generator, seeded below
    attack = MembershipInferenceBlackBox(estimator, input_type="prediction", attack_model_type=model)
    test_in = np.setdiff1d(np.arange(len(y_in)), train_in)
    test_out = np.setdiff1d(np.arange(len(y_out)), train_out)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        state = np.random.get_state()
        np.random.seed(seed % 2**32)  # ART draws from numpy's global generator
        try:
            attack.fit(x=None, y=y_in[train_in], test_x=None, test_y=y_out[train_out],
                       pred=probs_in[train_in], test_pred=probs_out[train_out])
            score_in = attack.infer(None, y_in[test_in], pred=probs_in[test_in], probabilities=True)
            score_out = attack.infer(None, y_out[test_out], pred=probs_out[test_out], probabilities=True)
        finally:
            np.random.set_state(state)
    return np.asarray(score_in, dtype=np.float64).reshape(-1), np.asarray(score_out, dtype=np.float64).reshape(-1)


@register_check("privacy")
class MembershipInference(Check):
    """Membership inference risk from the model's losses and predictions."""

    category = "privacy"
    title = "Membership inference (confidentiality)"
    needs = ("labels", "reference")
    Config = PrivacyConfig
    metric_names = ("membership_auc", "membership_advantage", "gap_attack_advantage", "attack_auc",
                    "attack_advantage", "strongest_attack_auc")
    default_thresholds = {"membership_auc": ThresholdSpec(max=0.6, level="warn"),
                          "strongest_attack_auc": ThresholdSpec(max=0.6, level="warn")}

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: PrivacyConfig = self.config  # type: ignore[assignment]
        if "reference" not in ctx.datasets:
            raise SkipCheck("membership inference needs the training data: give it as data.reference.")
        ref = ctx.datasets["reference"]
        if ref.target is None:
            raise SkipCheck("data.reference has no labels; the attacks need the training labels.")
        y_in, y_out = ref.target, ctx.y_true()
        rng = ctx.rng(self.id)
        n = min(len(y_in), len(y_out), cfg.max_samples)
        # rows drawn first (stratified by class), so logits are computed for the sampled rows only
        rows_in = stratified_rows(y_in, n, rng)
        rows_out = stratified_rows(y_out, n, rng)
        level = 0.95 if cfg.n_resamples else None
        logits_in = ctx.logits_for("reference", rows_in).double()
        logits_out = ctx.logits_for("eval", rows_out).double()

        def losses(logits: torch.Tensor, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y), reduction="none").numpy()
            return loss, logits.argmax(1).numpy() == y

        loss_in, correct_in = losses(logits_in, y_in[rows_in])
        loss_out, correct_out = losses(logits_out, y_out[rows_out])
        labels = np.r_[np.ones(n), np.zeros(n)]
        auc = float(roc_auc_score(labels, np.r_[-loss_in, -loss_out]))
        lo, hi = percentile_interval(bootstrap_auroc(-loss_in, -loss_out, cfg.n_resamples, rng))
        advantage = membership_advantage(-loss_in, -loss_out)
        adv_lo, adv_hi = percentile_interval(bootstrap_advantage(-loss_in, -loss_out, cfg.n_resamples, rng))
        gap = float(correct_in.mean() - correct_out.mean())
        # the rule's AUROC: its binary decision scored as a ranking (0.5 + (TPR - FPR) / 2)
        rule_auc = float(roc_auc_score(labels, np.r_[correct_in, correct_out].astype(float)))
        rule_aucs = bootstrap_auroc(correct_in.astype(float), correct_out.astype(float), cfg.n_resamples, rng)
        rule_lo, rule_hi = percentile_interval(rule_aucs)
        gap_lo, gap_hi = percentile_interval(2 * rule_aucs - 1)

        # (attack id, title, auc, auc interval, advantage, advantage interval, members, non-members, method)
        attacks = [
            ("loss_threshold", "loss threshold (Yeom et al. 2018)", auc, (lo, hi), advantage, (adv_lo, adv_hi), n, n,
             f"loss-threshold attack: AUROC of -loss over {n} members and {n} non-members; advantage = best TPR - FPR "
             "over thresholds (chosen on the same samples: optimistic); stratified bootstrap intervals"),
            ("art_rule_based", "correct prediction (ART rule-based)", rule_auc, (rule_lo, rule_hi), gap,
             (gap_lo, gap_hi), n, n,
             "ART MembershipInferenceBlackBoxRuleBased (correct prediction => member) on the same samples: "
             "advantage = TPR - FPR = training accuracy - evaluation accuracy; AUROC = 0.5 + advantage / 2; "
             "stratified bootstrap intervals"),
        ]
        limitations = ["Valid only if data.reference is the model's training data and the evaluation "
                       "set was not trained on.",
                       "Simple black-box attacks give a lower bound on leakage; shadow-model and "
                       "likelihood-ratio attacks can be stronger.",
                       "The strongest attack is picked after the fact, so without any leakage its AUROC sits "
                       "slightly above 0.5: read it with its interval."]
        n_train = int(np.floor(n * cfg.black_box_train_fraction))
        if n - n_train >= MIN_HELD_OUT and n_train >= MIN_HELD_OUT:
            train_in = np.sort(rng.choice(n, n_train, replace=False))
            train_out = np.sort(rng.choice(n, n_train, replace=False))
            probs_in = torch.softmax(logits_in, dim=1).numpy()
            probs_out = torch.softmax(logits_out, dim=1).numpy()
            s_in, s_out = black_box_attack(probs_in, y_in[rows_in], probs_out, y_out[rows_out], train_in, train_out,
                                           n_classes=probs_in.shape[1], model=cfg.black_box_model,
                                           seed=int(rng.integers(0, 2**31)))
            m = n - n_train
            bb_auc = float(roc_auc_score(np.r_[np.ones(m), np.zeros(m)], np.r_[s_in, s_out]))
            bb_lo, bb_hi = percentile_interval(bootstrap_auroc(s_in, s_out, cfg.n_resamples, rng))
            bb_adv = membership_advantage(s_in, s_out)
            bba_lo, bba_hi = percentile_interval(bootstrap_advantage(s_in, s_out, cfg.n_resamples, rng))
            attacks.insert(1, (
                "art_black_box", f"ART black-box ({cfg.black_box_model} on probabilities + label)", bb_auc,
                (bb_lo, bb_hi), bb_adv, (bba_lo, bba_hi), m, m,
                f"ART MembershipInferenceBlackBox (input_type='prediction', attack model '{cfg.black_box_model}') "
                f"trained on {n_train} members and {n_train} non-members, AUROC of its membership probability on the "
                f"held-out {m} + {m}; advantage = best TPR - FPR over thresholds; stratified bootstrap intervals"))
        else:
            limitations.append(f"ART's black-box attack was not run: {n} members and non-members leave fewer than "
                               f"{MIN_HELD_OUT} to train on or to hold out.")

        strongest = max(attacks, key=lambda a: a[2])
        metrics = [
            Metric(name="membership_auc", value=auc, ci_low=lo, ci_high=hi, ci_level=level,
                   n=2 * n, higher_is_better=False,
                   method=f"loss-threshold attack (Yeom et al. 2018): AUROC of -loss, {n} training members vs {n} "
                          "evaluation non-members (sklearn.metrics.roc_auc_score); stratified bootstrap interval"),
            Metric(name="membership_advantage", value=advantage, n=2 * n, higher_is_better=False,
                   method="best TPR - FPR of the loss-threshold attack over all thresholds"),
            Metric(name="gap_attack_advantage", value=gap, n=2 * n, higher_is_better=False,
                   method="ART MembershipInferenceBlackBoxRuleBased rule (correct prediction => member): "
                          "TPR - FPR = training accuracy - evaluation accuracy"),
            Metric(name="strongest_attack_auc", value=strongest[2], ci_low=strongest[3][0], ci_high=strongest[3][1],
                   ci_level=level, n=strongest[6] + strongest[7], higher_is_better=False,
                   method=f"highest AUROC of the attacks run: {strongest[1]}"),
        ]
        for aid, _title, a_auc, (a_lo, a_hi), a_adv, (v_lo, v_hi), n_in, n_out, how in attacks:
            metrics += [
                Metric(name="attack_auc", group=aid, value=a_auc, ci_low=a_lo, ci_high=a_hi, ci_level=level,
                       n=n_in + n_out, higher_is_better=False, method=how),
                Metric(name="attack_advantage", group=aid, value=a_adv, ci_low=v_lo, ci_high=v_hi, ci_level=level,
                       n=n_in + n_out, higher_is_better=False, method=how),
            ]

        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        edges = np.quantile(np.r_[loss_in, loss_out], np.linspace(0, 1, 21))
        evidence = [
            Table(title="Membership inference attacks",
                  columns=["attack", "AUROC", "AUROC 95% CI", "advantage (TPR - FPR)", "advantage 95% CI", "members",
                           "non-members", "strongest"],
                  rows=[[title, r(a_auc), f"[{r(a_lo)}, {r(a_hi)}]" if a_lo is not None else None, r(a_adv),
                         f"[{r(v_lo)}, {r(v_hi)}]" if v_lo is not None else None, n_in, n_out,
                         "yes" if aid == strongest[0] else ""]
                        for aid, title, a_auc, (a_lo, a_hi), a_adv, (v_lo, v_hi), n_in, n_out, _ in attacks],
                  caption="AUROC 0.5 and advantage 0 mean the attack cannot tell members from non-members. The "
                          "black-box attack is scored on held-out samples it was not trained on."),
            Figure(kind="line", title="Loss distribution of members and non-members",
                   data={"x": [round(float(e), 5) for e in edges[1:]],
                         "series": {"training (members)": np.histogram(loss_in, edges)[0].tolist(),
                                    "evaluation (non-members)": np.histogram(loss_out, edges)[0].tolist()},
                         "xlabel": "cross-entropy loss (upper bin edge)", "ylabel": "samples"},
                   caption="Well-separated curves mean an attacker can tell training data from unseen data."),
        ]
        summary = (f"Strongest membership inference attack: {strongest[1]}, AUROC {strongest[2]:.3f} (0.5 = no "
                   f"leakage); loss-threshold AUROC {auc:.3f} on {n} + {n} samples, best advantage {advantage:.3f}; "
                   f"train-test accuracy gap {gap:.3f}.")
        return CheckOutput(summary=summary, metrics=metrics, evidence=evidence, dataset="reference+eval", n_samples=2 * n,
                           method=(f"Members are a seeded sample of {n} rows of data.reference ({len(y_in)} rows), "
                                   "taken to be the training data; non-members an equal sample of the evaluation set "
                                   f"({len(y_out)} rows); both drawn stratified by class (max_samples = "
                                   f"{cfg.max_samples}) before any logits are computed, so the model runs on the "
                                   "sampled rows only. Losses and probabilities come from those logits; the attacks "
                                   "never query the model again."),
                           limitations=limitations)
