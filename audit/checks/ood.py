"""Out-of-distribution detection: can the model's own outputs tell its data from unlike data?

Scores MSP, max-logit, energy, Mahalanobis and k-NN distance (``audit.ood_scores``) are
compared on the evaluation set against each OOD set: the configured ``data.ood`` set and
built-in synthetic sets for the input kind. AUROC, AUPR-In and FPR at 95% TPR come from
scikit-learn; AUROC carries a stratified bootstrap 95% interval.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from audit.config import CheckConfig, ThresholdSpec
from audit.context import AuditContext
from audit.errors import SkipCheck
from audit.ood_scores import (
    Mahalanobis,
    bootstrap_auroc,
    detection_metrics,
    energy_score,
    knn_score,
    max_logit_score,
    msp_score,
    synthetic_sets,
)
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from audit.stats import percentile_interval, stratified_rows

ScoreName = Literal["msp", "max_logit", "energy", "mahalanobis", "knn"]
FEATURE_SCORES = ("mahalanobis", "knn")


class OODConfig(CheckConfig):
    """Settings of the ``ood`` check."""

    scores: list[ScoreName] = Field(default=["msp", "max_logit", "energy", "mahalanobis", "knn"], min_length=1,
                                    description="OOD scores to compare; mahalanobis and knn need penultimate features.")
    synthetic: bool = Field(default=True, description="Add the built-in synthetic OOD sets for the input kind.")
    n_synthetic: int = Field(default=500, ge=10, description="Samples in each synthetic OOD set.")
    k: int = Field(default=10, ge=1, description="Neighbour rank of the k-NN score.")
    temperature: float = Field(default=1.0, gt=0, description="Temperature of the energy score.")
    n_resamples: int = Field(default=200, ge=0, description="Bootstrap resamples for the AUROC intervals (0: none).")
    max_fit_samples: int = Field(default=5000, ge=10, description="At most this many samples fit Mahalanobis and k-NN.")
    max_samples: int = Field(
        default=10_000, ge=10, description="At most this many evaluation rows (seeded subset) are scored as the "
                                           "in-distribution side of each AUROC, so the k-NN distances and the "
                                           "bootstrap stop growing with the evaluation set.")


@register_check("ood")
class OODDetection(Check):
    """Separation of in-distribution and OOD inputs by the model's scores.

    References
    ----------
    Hendrycks & Gimpel, ICLR 2017; Liu et al., NeurIPS 2020; Lee et al., NeurIPS 2018;
    Sun et al., ICML 2022 (see ``audit.ood_scores``).
    """

    category = "ood"
    title = "Out-of-distribution detection"
    uses = ("ood", "features")
    Config = OODConfig
    metric_names = ("worst_auroc", "auroc", "aupr", "fpr95")
    #: Built-in condition (warn): on the hardest OOD set even the best score separates it from the evaluation
    #: data little better than chance (AUROC below 0.6).
    default_thresholds = {"worst_auroc": ThresholdSpec(min=0.6, level="warn")}

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: OODConfig = self.config  # type: ignore[assignment]
        adapter, ev = ctx.adapter, ctx.dataset("eval")
        rng = ctx.rng(self.id)
        limitations: list[str] = []

        ood_sets: dict[str, np.ndarray | list[str]] = {}
        if "ood" in ctx.datasets:
            ood_sets["data.ood"] = ctx.datasets["ood"].inputs
        if cfg.synthetic:
            ood_sets.update(synthetic_sets(ev.inputs, adapter.input_kind, cfg.n_synthetic, rng, adapter.input_range))
        if not ood_sets:
            raise SkipCheck("no OOD set: give data.ood or keep checks.ood.synthetic on.")

        scores = list(cfg.scores)
        use_features = any(s in FEATURE_SCORES for s in scores)
        ctx.logits("eval")  # the first forward pass settles whether a TorchScript model's features can be read
        if use_features and not adapter.has_features:
            scores = [s for s in scores if s not in FEATURE_SCORES]
            limitations.append(f"The model ({adapter.format}) exposes no penultimate features: Mahalanobis and k-NN were not computed.")
            use_features = False
        if not scores:
            raise SkipCheck("every requested score needs penultimate features, which this model does not expose.")

        # In-distribution samples to score, and the samples that fit the feature-space scores.
        n = len(ev)
        id_rows = np.arange(n)
        fit_note = ""
        if use_features:
            # the fitting rows are drawn (stratified by class where there are labels) before any feature is computed
            cap = f"at most max_fit_samples = {cfg.max_fit_samples}, stratified by class"
            if "reference" in ctx.datasets:
                ref = ctx.datasets["reference"]
                unlabelled = np.zeros(len(ref), dtype=np.int64)  # one stratum: a plain seeded draw
                fit_rows = stratified_rows(ref.target if ref.target is not None else unlabelled, cfg.max_fit_samples, rng)
                fit_feats = ctx.features_for("reference", fit_rows)
                fit_labels = (ref.target[fit_rows] if ref.target is not None
                              else ctx.logits_for("reference", fit_rows).argmax(1).numpy())
                fit_note = f"fitted on {len(fit_rows)} of the reference set's {len(ref)} samples ({cap})"
            else:
                perm = rng.permutation(n)
                half, id_rows = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
                labels = ev.target if ev.target is not None else ctx.y_pred("eval")
                fit_rows = half[stratified_rows(labels[half], cfg.max_fit_samples, rng)]
                fit_feats = ctx.features("eval")[fit_rows]
                fit_labels = labels[fit_rows]
                fit_note = (f"fitted on {len(fit_rows)} samples of a random half of the evaluation set ({len(half)} "
                            f"samples, {cap}; no reference set given), all scores evaluated on the other half "
                            f"({len(id_rows)})")
                limitations.append("No reference set: Mahalanobis and k-NN were fitted on half of the evaluation set, "
                                   "so every score is evaluated on the other half only.")
            maha = Mahalanobis(fit_feats, np.asarray(fit_labels))

        def score_all(logits: torch.Tensor, feats: torch.Tensor | None) -> dict[str, np.ndarray]:
            out = {}
            for s in scores:
                if s == "msp":
                    out[s] = msp_score(logits)
                elif s == "max_logit":
                    out[s] = max_logit_score(logits)
                elif s == "energy":
                    out[s] = energy_score(logits, cfg.temperature)
                elif s == "mahalanobis":
                    out[s] = maha.score(feats)
                else:
                    out[s] = knn_score(fit_feats, feats, k=cfg.k)
            return out

        if len(id_rows) > cfg.max_samples:  # the rng is drawn from only here, so smaller sets score as before
            limitations.append(f"The in-distribution side is a seeded subset of {cfg.max_samples} of the "
                               f"{len(id_rows)} evaluation rows it could use (max_samples).")
            id_rows = np.sort(rng.choice(id_rows, cfg.max_samples, replace=False))
        id_logits = ctx.logits("eval")[id_rows]
        id_feats = ctx.features("eval")[id_rows] if use_features else None
        id_scores = score_all(id_logits, id_feats)

        metrics: list[Metric] = []
        rows: list[list] = []
        best_per_set: dict[str, tuple[str, float]] = {}
        bar_labels, bar_values, bar_lo, bar_hi = [], [], [], []
        for set_name, inputs in ood_sets.items():
            # data.ood through the context: cached, and its NaN/inf logits are bad input (exit 2) naming the rows
            logits = ctx.logits("ood") if set_name == "data.ood" else adapter.predict_logits(inputs, batch_size=ctx.batch_size)
            feats = None
            if use_features:
                feats = ctx.features("ood") if set_name == "data.ood" else adapter.predict_features(
                    inputs, batch_size=ctx.batch_size)
            ood_scores = score_all(logits, feats)
            for s in scores:
                m = detection_metrics(id_scores[s], ood_scores[s])
                lo, hi = percentile_interval(bootstrap_auroc(id_scores[s], ood_scores[s], cfg.n_resamples, rng))
                group = f"{set_name} / {s}"
                n_pair = len(id_rows) + len(inputs)
                base = f"score {s}; {len(id_rows)} in-distribution vs {len(inputs)} '{set_name}' samples"
                ci = (f"; 95% stratified percentile bootstrap ({cfg.n_resamples} resamples)" if cfg.n_resamples else "")
                metrics += [
                    Metric(name="auroc", group=group, value=m["auroc"], ci_low=lo, ci_high=hi,
                           ci_level=0.95 if cfg.n_resamples else None, n=n_pair, higher_is_better=True,
                           method=f"sklearn.metrics.roc_auc_score, in-distribution positive; {base}{ci}"),
                    Metric(name="aupr", group=group, value=m["aupr"], n=n_pair, higher_is_better=True,
                           method=f"sklearn.metrics.average_precision_score (AUPR-In); {base}"),
                    Metric(name="fpr95", group=group, value=m["fpr95"], n=n_pair, higher_is_better=False,
                           method=f"false-positive rate on OOD at 95% TPR on in-distribution (sklearn roc_curve); {base}"),
                ]
                rows.append([set_name, s, round(m["auroc"], 4), None if lo is None else round(lo, 4),
                             None if hi is None else round(hi, 4), round(m["aupr"], 4), round(m["fpr95"], 4),
                             len(id_rows), len(inputs)])
                bar_labels.append(group)
                bar_values.append(m["auroc"])
                bar_lo.append(lo)
                bar_hi.append(hi)
                if set_name not in best_per_set or m["auroc"] > best_per_set[set_name][1]:
                    best_per_set[set_name] = (s, m["auroc"])

        hardest = min(best_per_set, key=lambda k: best_per_set[k][1])
        worst = best_per_set[hardest][1]
        metrics.insert(0, Metric(
            name="worst_auroc", value=worst, n=len(id_rows), higher_is_better=True,
            method=("over the OOD sets, the AUROC of the best score for each set; the lowest of these "
                    f"('{hardest}', best score {best_per_set[hardest][0]})")))
        mean_by_score = {s: float(np.mean([r[2] for r in rows if r[1] == s])) for s in scores}
        best_score = max(mean_by_score, key=mean_by_score.get)
        evidence = [
            Table(title="Detection metrics per OOD set and score",
                  columns=["OOD set", "score", "AUROC", "CI low", "CI high", "AUPR-In", "FPR@95TPR", "n in-dist", "n OOD"],
                  rows=rows, caption="Higher scores mean more in-distribution; in-distribution is the positive class."),
            Figure(kind="bar", title="AUROC by OOD set and score",
                   data={"labels": bar_labels, "values": bar_values, "ci_low": bar_lo, "ci_high": bar_hi,
                         "ylabel": "AUROC (0.5 = chance)"},
                   caption="AUROC with 95% bootstrap intervals; 1.0 separates perfectly, 0.5 is chance."),
        ]
        synthetic_names = [k for k in ood_sets if k != "data.ood"]
        if synthetic_names:
            limitations.append("Synthetic OOD sets (" + ", ".join(synthetic_names) + ") are easy, generic shifts; "
                               "good separation on them does not imply good separation on realistic shifts.")
        summary = (f"{best_score} separates best for this model (mean AUROC {mean_by_score[best_score]:.3f} over "
                   f"{len(ood_sets)} OOD set(s)); hardest set '{hardest}' (best AUROC {worst:.3f}).")
        method = (f"Scores (higher = more in-distribution): {', '.join(scores)}. "
                  + (f"Mahalanobis (shared covariance) and k-NN (k={cfg.k}, normalised features) are {fit_note}. "
                     if use_features else "")
                  + "Logits and features of the evaluation set are computed once and shared with other checks.")
        return CheckOutput(summary=summary, metrics=metrics, evidence=evidence, method=method,
                           limitations=limitations, dataset="eval", n_samples=len(id_rows))
