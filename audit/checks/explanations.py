"""Explanations that are checked, not just drawn: attributions from Captum and SHAP, ranked by
how faithful they are to this model (``audit.explain``)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from audit import explain as E
from audit.config import CheckConfig
from audit.context import AuditContext
from audit.errors import SkipCheck
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table

MethodName = Literal["integrated_gradients", "saliency", "gradient_shap", "shap"]


class ExplanationsConfig(CheckConfig):
    """Settings of the ``explanations`` check."""

    methods: list[MethodName] = Field(default=["integrated_gradients", "saliency", "gradient_shap", "shap"],
                                      description="Attribution methods to compute and compare.")
    n_explain: int = Field(default=12, ge=2, description="Samples explained: confident errors, least confident predictions, then random.")
    n_steps: int = Field(default=32, ge=4, description="Integrated Gradients steps.")
    n_background: int = Field(default=32, ge=2, description="Background samples for GradientSHAP and SHAP.")
    n_shap_samples: int = Field(default=64, ge=4, description="Samples drawn by SHAP's GradientExplainer and GradientSHAP.")
    curve_steps: int = Field(default=16, ge=4, description="Steps of the deletion and insertion curves.")
    n_perturb: int = Field(default=8, ge=2, description="Perturbations for Captum's infidelity.")
    randomization_threshold: float = Field(
        default=0.5, ge=0, le=1,
        description="Rank correlation with the randomised model's attributions above which a method fails the sanity check.")
    internal_batch_size: int | None = Field(default=None, gt=0, description="Captum internal batch size (memory bound).")


def _pick_samples(probs: np.ndarray, y: np.ndarray | None, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Most confident errors, least confident predictions, then random samples."""
    conf = probs.max(1)
    chosen: list[int] = []
    why: list[str] = []
    if y is not None:
        wrong = np.flatnonzero(probs.argmax(1) != y)
        for i in wrong[np.argsort(-conf[wrong])][: n // 3]:
            chosen.append(int(i))
            why.append("confident error")
    for i in np.argsort(conf):
        if len(chosen) >= 2 * n // 3:
            break
        if i not in chosen:
            chosen.append(int(i))
            why.append("least confident")
    rest = [i for i in rng.permutation(len(probs)) if i not in chosen]
    for i in rest[: n - len(chosen)]:
        chosen.append(int(i))
        why.append("random")
    return np.array(chosen), why


@register_check("explanations")
class Explanations(Check):
    """Attributions with faithfulness, agreement and sanity checks, ranked for this model.

    References
    ----------
    See ``audit.explain``: Sundararajan et al. 2017; Lundberg & Lee 2017; Petsiuk et al. 2018;
    Yeh et al. 2019; Adebayo et al. 2018.
    """

    category = "explainability"
    title = "Explanations and their faithfulness"
    Config = ExplanationsConfig
    metric_names = ("faithfulness_gap", "methods_failing_sanity", "ig_completeness_error", "deletion_auc",
                    "insertion_auc", "infidelity", "randomization_similarity", "agreement")

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: ExplanationsConfig = self.config  # type: ignore[assignment]
        adapter, ev = ctx.adapter, ctx.dataset("eval")
        if adapter.input_kind == "text" or isinstance(ev.inputs, list):
            raise SkipCheck("explanations of text models (token attributions, attention rollout) are not implemented yet.")
        if not adapter.differentiable or not hasattr(adapter, "as_module"):
            raise SkipCheck(f"gradient-based attributions need input gradients, which this model ({adapter.format}) "
                            "does not have; gradient-free methods (KernelSHAP, LIME) are not implemented yet.")
        model = adapter.as_module()
        device = adapter.device
        rng = ctx.rng(self.id)
        x_np = np.asarray(ev.inputs)
        idx, reasons = _pick_samples(ctx.probs(), ev.target, min(cfg.n_explain, len(ev)), rng)
        x = torch.from_numpy(x_np[idx]).float().to(device)
        target = torch.from_numpy(ctx.y_pred()[idx]).to(device)
        if adapter.input_kind == "image" and adapter.input_range is not None:
            baseline = torch.full_like(x[:1], float(adapter.input_range[0]))
            baseline_text = f"a constant image at the bottom of the input range ({adapter.input_range[0]:g})"
        else:
            baseline = torch.from_numpy(x_np.mean(0, keepdims=True)).float().to(device)
            baseline_text = "the mean of the evaluation set"
        bg_idx = rng.choice(len(ev), min(cfg.n_background, len(ev)), replace=False)
        background = torch.from_numpy(x_np[bg_idx]).float().to(device)

        seed = ctx.seed
        attrs: dict[str, torch.Tensor] = {}
        ig_delta = None

        def attribute(m: torch.nn.Module, method: str) -> torch.Tensor:
            if method == "integrated_gradients":
                a, _ = E.integrated_gradients(m, x, target, baseline, cfg.n_steps, cfg.internal_batch_size)
                return a
            if method == "saliency":
                return E.saliency(m, x, target, baseline)
            if method == "gradient_shap":
                return E.gradient_shap(m, x, target, background, cfg.n_shap_samples, seed)
            return E.shap_gradient(m, x, target, background, cfg.n_shap_samples, seed).to(device)

        for method in cfg.methods:
            if method == "integrated_gradients":
                attrs[method], ig_delta = E.integrated_gradients(model, x, target, baseline, cfg.n_steps,
                                                                  cfg.internal_batch_size)
            else:
                attrs[method] = attribute(model, method)

        from captum.metrics import infidelity

        def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(seed)).to(inputs) * 0.05 * float(
                x.std().clamp_min(1e-6))
            return noise, inputs - noise

        randomized = E.randomized_copy(model, seed)
        n = len(idx)
        metrics: list[Metric] = []
        rows: list[list[Any]] = []
        gaps: dict[str, float] = {}
        failing: list[str] = []
        for method, a in attrs.items():
            dele, ins = E.deletion_insertion(model, x, target, a, baseline, cfg.curve_steps, ctx.batch_size)
            del_auc, ins_auc = float(dele.mean()), float(ins.mean())
            torch.manual_seed(seed)
            infid = float(infidelity(model, perturb, x, a, target=target, n_perturb_samples=cfg.n_perturb).mean())
            rand_sim = E.rank_agreement(a.abs(), attribute(randomized, method).abs())
            gaps[method] = ins_auc - del_auc
            flagged = not np.isnan(rand_sim) and rand_sim > cfg.randomization_threshold
            if flagged:
                failing.append(method)
            base = f"{method} on {n} samples"
            metrics += [
                Metric(name="deletion_auc", group=method, value=del_auc, n=n, higher_is_better=False,
                       method=f"mean target probability as features are set to the baseline, most important first "
                              f"({cfg.curve_steps} steps); {base}"),
                Metric(name="insertion_auc", group=method, value=ins_auc, n=n, higher_is_better=True,
                       method=f"mean target probability as features are restored from the baseline, most important first; {base}"),
                Metric(name="infidelity", group=method, value=infid, n=n, higher_is_better=False,
                       method=f"captum.metrics.infidelity, Gaussian perturbations, {cfg.n_perturb} per sample; {base}"),
                Metric(name="randomization_similarity", group=method, value=rand_sim, n=n, higher_is_better=False,
                       method=f"Spearman correlation of |attributions| before and after re-initialising every weight "
                              f"(Adebayo et al. 2018); above {cfg.randomization_threshold} fails; {base}"),
            ]
            rows.append([method, round(del_auc, 4), round(ins_auc, 4), round(ins_auc - del_auc, 4), round(infid, 6),
                         None if np.isnan(rand_sim) else round(rand_sim, 4), "FAIL" if flagged else "pass"])
        ranked = sorted(gaps, key=lambda k: (k in failing, -gaps[k]))
        rows.sort(key=lambda r: ranked.index(r[0]))
        for r in rows:
            r.insert(0, ranked.index(r[0]) + 1)

        names = list(attrs)
        agreement_rows = []
        for i, a_name in enumerate(names):
            for b_name in names[i + 1 :]:
                rho = E.rank_agreement(attrs[a_name], attrs[b_name])
                metrics.append(Metric(name="agreement", group=f"{a_name} vs {b_name}", value=rho, n=n,
                                      method="mean Spearman rank correlation of the two methods' attributions per sample"))
                agreement_rows.append([a_name, b_name, None if np.isnan(rho) else round(rho, 4)])

        best = ranked[0]
        head = [
            Metric(name="faithfulness_gap", value=gaps[best], n=n, higher_is_better=True,
                   method=f"insertion AUC minus deletion AUC of the most faithful method ({best})"),
            Metric(name="methods_failing_sanity", value=float(len(failing)), n=n, higher_is_better=False,
                   method="methods whose attributions survive weight randomisation (Adebayo et al. 2018)"),
        ]
        if ig_delta is not None:
            with torch.no_grad():
                p = torch.softmax(model(x), 1).gather(1, target[:, None]).squeeze(1)
                gap = (model(x).gather(1, target[:, None]) - model(baseline.expand_as(x)).gather(1, target[:, None])).abs()
            rel = float(ig_delta.abs().mean() / gap.mean().clamp_min(1e-12))
            head.append(Metric(name="ig_completeness_error", value=rel, n=n, higher_is_better=False,
                               method=f"mean |sum of IG attributions - (f(x) - f(baseline))| relative to mean |f(x) - f(baseline)| "
                                      f"on the target logit, {cfg.n_steps} steps (Captum convergence delta)"))
            del p
        evidence: list[Any] = [
            Table(title="Methods ranked by faithfulness for this model",
                  columns=["rank", "method", "deletion AUC", "insertion AUC", "gap", "infidelity",
                           "randomisation similarity", "sanity check"], rows=rows,
                  caption="Deletion AUC: lower is better; insertion AUC: higher is better; a method that fails the "
                          "sanity check explains the input, not the model, and is ranked last."),
            Table(title="Agreement between methods", columns=["method A", "method B", "Spearman ρ"], rows=agreement_rows),
            Table(title="Explained samples", columns=["row", "why chosen", "predicted", "true"],
                  rows=[[int(i), why, ctx.class_names[int(ctx.y_pred()[i])],
                         None if ev.target is None else ctx.class_names[int(ev.target[i])]] for i, why in zip(idx, reasons)]),
        ]
        if adapter.input_kind == "tabular" and x.dim() == 2:
            names_f = ev.feature_names or [f"x{j}" for j in range(x.shape[1])]
            importance = attrs.get("shap", attrs[best]).abs().mean(0).cpu().numpy()
            order = np.argsort(-importance)[:30]
            src = "shap" if "shap" in attrs else best
            evidence.append(Figure(kind="bar", title=f"Global importance: mean |{src}| per feature",
                                   data={"labels": [names_f[j] for j in order], "values": [float(importance[j]) for j in order],
                                         "ylabel": f"mean |attribution| ({src})"},
                                   caption=f"Over the {n} explained samples; a ranking of what the model relies on."))
        if adapter.input_kind == "image" and x.dim() == 4 and x.shape[1] in (1, 3):
            lo, hi = adapter.input_range or (float(x.min()), float(x.max()))
            images, titles = [], []
            for i in range(min(3, n)):
                img = ((x[i] - lo) / max(hi - lo, 1e-12)).clamp(0, 1)
                images.append((img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).cpu().round(decimals=4).tolist())
                titles.append(f"input ({reasons[i]})")
                for method in names:
                    heat = attrs[method][i].abs().sum(0)
                    heat = heat / heat.max().clamp_min(1e-12)
                    images.append(heat.cpu().round(decimals=4).tolist())
                    titles.append(method)
            evidence.append(Figure(kind="image_grid", title="Attribution heatmaps",
                                   data={"images": images, "titles": titles},
                                   caption="Each row: an input, then |attribution| per method (brighter = more important)."))
        limitations = [f"Explanations computed for {n} samples chosen to include confident errors and uncertain predictions; "
                       "they describe those samples, not the model everywhere.",
                       f"Deletion and insertion replace features with {baseline_text}; another baseline gives other curves.",
                       "LIME, KernelSHAP and attention maps are not implemented yet."]
        summary = (f"Most faithful method for this model: {best} (insertion − deletion AUC {gaps[best]:.3f}); "
                   + (f"{len(failing)} method(s) failed the randomisation sanity check ({', '.join(failing)})."
                      if failing else "every method passed the randomisation sanity check."))
        return CheckOutput(summary=summary, metrics=head + metrics, evidence=evidence, dataset="eval", n_samples=n,
                           limitations=limitations, status_floor="warn" if failing else "pass",
                           method=(f"Attributions for the predicted class, on raw inputs (preprocessing inside the model); "
                                   f"Integrated Gradients ({cfg.n_steps} steps) from {baseline_text}; GradientSHAP and SHAP's "
                                   f"GradientExplainer with {len(background)} background samples; seeded."))
