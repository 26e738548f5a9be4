"""Membership inference: can an attacker tell the training data (``data.reference``) from unseen
data (the evaluation set) by the model's outputs? (EU AI Act Art. 15(5), confidentiality attacks.)

Two attacks on balanced samples of members and non-members:

- loss threshold (Yeom et al. 2018): lower loss ⇒ member; AUROC and the best membership
  advantage (max TPR − FPR) over thresholds;
- prediction correctness (ART's ``MembershipInferenceBlackBoxRuleBased``): correct ⇒ member;
  its advantage is the train–test accuracy gap.

References
----------
Yeom, Giacomelli, Fredrikson, Jha. "Privacy Risk in Machine Learning: Analyzing the Connection to
Overfitting", CSF 2018.
Shokri, Stronati, Song, Shmatikov. "Membership Inference Attacks Against Machine Learning Models", S&P 2017.
"""

from __future__ import annotations

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
from audit.stats import percentile_interval


class PrivacyConfig(CheckConfig):
    """Settings of the ``privacy`` check."""

    max_samples: int = Field(default=2000, ge=10, description="At most this many members and as many non-members.")
    n_resamples: int = Field(default=500, ge=0, description="Bootstrap resamples for the AUROC interval.")


def membership_advantage(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """max over thresholds of TPR − FPR, with members as positives and higher score = member."""
    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    fpr, tpr, _ = roc_curve(labels, np.r_[member_scores, nonmember_scores])
    return float(np.max(tpr - fpr))


@register_check("privacy")
class MembershipInference(Check):
    """Membership inference risk from the model's losses and predictions."""

    category = "privacy"
    title = "Membership inference (confidentiality)"
    Config = PrivacyConfig
    metric_names = ("membership_auc", "membership_advantage", "gap_attack_advantage")
    default_thresholds = {"membership_auc": ThresholdSpec(max=0.6, level="warn")}

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
        rows_in = np.sort(rng.choice(len(y_in), n, replace=False))
        rows_out = np.sort(rng.choice(len(y_out), n, replace=False))

        def losses(name: str, rows: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            logits = ctx.logits(name)[rows].double()
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[rows]), reduction="none").numpy()
            correct = logits.argmax(1).numpy() == y[rows]
            return loss, correct

        loss_in, correct_in = losses("reference", rows_in, y_in)
        loss_out, correct_out = losses("eval", rows_out, y_out)
        labels = np.r_[np.ones(n), np.zeros(n)]
        auc = float(roc_auc_score(labels, np.r_[-loss_in, -loss_out]))
        lo, hi = percentile_interval(bootstrap_auroc(-loss_in, -loss_out, cfg.n_resamples, rng))
        advantage = membership_advantage(-loss_in, -loss_out)
        gap = float(correct_in.mean() - correct_out.mean())
        metrics = [
            Metric(name="membership_auc", value=auc, ci_low=lo, ci_high=hi, ci_level=0.95 if cfg.n_resamples else None,
                   n=2 * n, higher_is_better=False,
                   method=f"loss-threshold attack (Yeom et al. 2018): AUROC of -loss, {n} training members vs {n} "
                          "evaluation non-members (sklearn.metrics.roc_auc_score); stratified bootstrap interval"),
            Metric(name="membership_advantage", value=advantage, n=2 * n, higher_is_better=False,
                   method="best TPR - FPR of the loss-threshold attack over all thresholds"),
            Metric(name="gap_attack_advantage", value=gap, n=2 * n, higher_is_better=False,
                   method="ART MembershipInferenceBlackBoxRuleBased rule (correct prediction => member): "
                          "TPR - FPR = training accuracy - evaluation accuracy"),
        ]
        edges = np.quantile(np.r_[loss_in, loss_out], np.linspace(0, 1, 21))
        evidence = [
            Table(title="Membership inference attacks", columns=["attack", "AUROC", "advantage (TPR - FPR)", "members", "non-members"],
                  rows=[["loss threshold", round(auc, 4), round(advantage, 4), n, n],
                        ["correct prediction (ART rule-based)", None, round(gap, 4), n, n]]),
            Figure(kind="line", title="Loss distribution of members and non-members",
                   data={"x": [round(float(e), 5) for e in edges[1:]],
                         "series": {"training (members)": np.histogram(loss_in, edges)[0].tolist(),
                                    "evaluation (non-members)": np.histogram(loss_out, edges)[0].tolist()},
                         "xlabel": "cross-entropy loss (upper bin edge)", "ylabel": "samples"},
                   caption="Well-separated curves mean an attacker can tell training data from unseen data."),
        ]
        summary = (f"Loss-threshold membership inference AUROC {auc:.3f} (0.5 = no leakage) on {n} + {n} samples; "
                   f"best advantage {advantage:.3f}; train-test accuracy gap {gap:.3f}.")
        return CheckOutput(summary=summary, metrics=metrics, evidence=evidence, dataset="reference+eval", n_samples=2 * n,
                           method=("Members are a seeded sample of data.reference, taken to be the training data; "
                                   "non-members an equal sample of the evaluation set. Losses come from the logits "
                                   "computed once per data set."),
                           limitations=["Valid only if data.reference is the model's training data and the evaluation "
                                        "set was not trained on.",
                                        "Simple black-box attacks give a lower bound on leakage; shadow-model and "
                                        "likelihood-ratio attacks can be stronger."])
