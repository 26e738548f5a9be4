"""Explanations that are checked, not just drawn: attributions from Captum, SHAP and LIME, ranked by
how faithful they are to this model (``audit.explain``, ``audit.explain_blackbox``,
``audit.explain_text``).

Which methods run depends on the model: gradient methods need input gradients (for text: with
respect to the embeddings); LIME and KernelSHAP only need logits, so black-box models (ONNX,
non-differentiable variants) are explained too. A method that does not apply is listed with the
reason, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from audit import explain as E
from audit import explain_blackbox as B
from audit import explain_text as T
from audit.config import CheckConfig, ThresholdSpec
from audit.context import AuditContext
from audit.errors import SkipCheck
from audit.images import downsampled_note, figure_heatmap, figure_image
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from audit.text_scorer import TextScorer
from audit.rows import as_array

MethodName = Literal["integrated_gradients", "saliency", "gradient_shap", "shap", "lime", "kernel_shap"]
GRADIENT_METHODS = ("integrated_gradients", "saliency", "gradient_shap", "shap")


class ExplanationsConfig(CheckConfig):
    """Settings of the ``explanations`` check."""

    renamed: ClassVar[dict[str, str]] = {"n_explain": "max_samples"}

    methods: list[MethodName] = Field(
        default=["integrated_gradients", "saliency", "gradient_shap", "shap", "lime", "kernel_shap"], min_length=1,
        description="Attribution methods to compute and compare; one that does not apply to the model is listed with the reason.")
    max_samples: int = Field(default=12, ge=2, description="Samples explained: confident errors, least confident predictions, then random (was n_explain).")
    errors_fraction: float = Field(default=0.33, ge=0, le=1, description="Share of the explained samples taken from the most confident errors.")
    uncertain_fraction: float = Field(default=0.33, ge=0, le=1, description="Share taken from the least confident predictions; the rest are random.")
    n_steps: int = Field(default=32, ge=4, description="Integrated Gradients steps.")
    n_background: int = Field(default=32, ge=2, description="Background samples for GradientSHAP, SHAP and KernelSHAP (tabular).")
    n_shap_samples: int = Field(default=64, ge=4, description="Samples drawn by SHAP's GradientExplainer and GradientSHAP.")
    n_kernel_samples: int = Field(default=256, ge=8, description="Coalitions KernelSHAP evaluates per explained sample.")
    n_lime_samples: int = Field(default=256, ge=8, description="Perturbations LIME evaluates per explained sample.")
    lime_segmentation: B.Segmentation = Field(
        default="auto", description="LIME superpixels for images: grid, quickshift, or auto (grid up to 32×32 pixels, else quickshift).")
    lime_cell: int | None = Field(default=None, ge=1, description="Grid superpixel size in pixels (default: a quarter of the image side).")
    text_mask: str | None = Field(default=None, description="What replaces a removed word (default: the tokenizer's mask or unknown token).")
    curve_steps: int = Field(default=16, ge=4, description="Steps of the deletion and insertion curves.")
    n_perturb: int = Field(default=8, ge=2, description="Perturbations per sample for Captum's infidelity and max-sensitivity.")
    randomization_threshold: float = Field(
        default=0.5, ge=0, le=1,
        description="Rank correlation with the randomised model's attributions above which a method fails the sanity check.")
    batch_size: int | None = Field(
        default=None, gt=0,
        description="Most inputs in one model call (forward, or forward and backward) that any method, sampled method, "
                    "curve or Captum metric makes: the check's memory grows with it, not with image size × samples "
                    "explained × method samples (default: the audit's batch_size).")

    @model_validator(mode="after")
    def _fractions(self) -> ExplanationsConfig:
        if self.errors_fraction + self.uncertain_fraction > 1:
            raise ValueError("errors_fraction + uncertain_fraction must be at most 1")
        return self


@dataclass
class _Method:
    attr: Any  # (n, *input_shape) tensor; for text a list of per-word arrays
    deletion: np.ndarray
    insertion: np.ndarray
    infidelity: float | None = None
    rand_sim: float | None = None
    sensitivity: float | None = None


@dataclass
class _Explained:
    methods: dict[str, _Method] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    head: list[Metric] = field(default_factory=list)
    evidence: list[Any] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    method_text: str = ""


def _agreement(a: Any, b: Any) -> float:
    if isinstance(a, torch.Tensor):
        return E.rank_agreement(a, b)
    values = [E.rank_agreement(torch.as_tensor(u)[None], torch.as_tensor(v)[None]) for u, v in zip(a, b) if len(u) > 1]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _abs(a: Any) -> Any:
    return a.abs() if isinstance(a, torch.Tensor) else [np.abs(u) for u in a]


def _mean_rows(inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """The mean input ``(1, *shape)`` in float32, read ``batch_size`` rows at a time."""
    total = np.zeros(inputs.shape[1:], dtype=np.float64)
    for s in E.row_chunks(len(inputs), batch_size):
        total += np.asarray(inputs[s], dtype=np.float64).sum(0)
    return (total / len(inputs)).astype(np.float32)[None]


def _relative_error(err: np.ndarray, scale: np.ndarray) -> float:
    return float(np.mean(np.abs(err)) / max(float(np.mean(np.abs(scale))), 1e-12))


@register_check("explanations")
class Explanations(Check):
    """Attributions with faithfulness, agreement and sanity checks, ranked for this model.

    References
    ----------
    See ``audit.explain``: Sundararajan et al. 2017; Lundberg & Lee 2017; Ribeiro et al. 2016;
    Petsiuk et al. 2018; Yeh et al. 2019; Adebayo et al. 2018.
    """

    category = "explainability"
    title = "Explanations and their faithfulness"
    uses = ("gradients", "reference")
    Config = ExplanationsConfig
    metric_names = ("faithfulness_gap", "methods_failing_sanity", "ig_completeness_error", "shap_efficiency_error",
                    "deletion_auc", "insertion_auc", "infidelity", "sensitivity", "randomization_similarity", "agreement")
    #: Built-in condition (warn): an attribution method whose maps survive weight randomisation explains the
    #: input, not the model (Adebayo et al. 2018).
    default_thresholds = {"methods_failing_sanity": ThresholdSpec(max=0, level="warn")}

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: ExplanationsConfig = self.config  # type: ignore[assignment]
        adapter, ev = ctx.adapter, ctx.dataset("eval")
        is_text = isinstance(ev.inputs, list)
        if is_text and adapter.input_kind != "text":
            raise SkipCheck(f"the evaluation data are raw strings but the model's input kind is {adapter.input_kind!r}: "
                            "explaining text needs a text model that takes strings (set model.input_kind: text).")
        if adapter.input_kind == "text" and not is_text:
            raise SkipCheck("this text model takes token ids, not raw strings: explanations need a text adapter with a "
                            "tokenizer (encode / embed / logits_from_embeddings) so words can be masked and embedded.")
        if not is_text and np.issubdtype(ev.inputs.dtype, np.integer):
            raise SkipCheck("the inputs are integer token ids: they have no gradients and no meaningful perturbations; "
                            "explain the model through a text adapter with a tokenizer, on raw strings.")
        rng = ctx.rng(self.id)
        idx, reasons = E.pick_samples(ctx.probs(), ev.target, min(cfg.max_samples, len(ev)), rng,
                                     cfg.errors_fraction, cfg.uncertain_fraction)
        target = ctx.y_pred()[idx]
        seed = int(rng.integers(2**31 - 1))
        bs = cfg.batch_size or ctx.batch_size
        if is_text:
            out = _explain_text(ctx, cfg, idx, target, seed, bs)
        else:
            out = _explain_dense(ctx, cfg, idx, target, seed, bs, reasons)
        if not out.methods:
            raise SkipCheck("no attribution method applies to this model: "
                            + "; ".join(f"{m}: {r}" for m, r in out.skipped.items()))
        return _assemble(ctx, cfg, out, idx, reasons, target)


def _explain_dense(ctx: AuditContext, cfg: ExplanationsConfig, idx: np.ndarray, target_np: np.ndarray, seed: int,
                   bs: int, reasons: list[str]) -> _Explained:
    adapter, ev = ctx.adapter, ctx.dataset("eval")
    out = _Explained()
    device = adapter.device
    inputs = ev.inputs  # only the rows used are read and converted, never the whole set at once
    x_sel = np.asarray(inputs[idx], dtype=np.float32)
    x = torch.from_numpy(x_sel).to(device)
    target = torch.from_numpy(target_np).to(device)
    has_module = adapter.capabilities.module
    fwd = adapter.as_module() if has_module else adapter.logits
    gradients = adapter.differentiable and has_module
    if adapter.input_kind == "image" and adapter.input_range is not None:
        hide: float | None = float(adapter.input_range[0])
        baseline = torch.full_like(x[:1], hide)
        baseline_text = f"a constant image at the bottom of the input range ({hide:g})"
    else:
        hide = None
        baseline = torch.from_numpy(_mean_rows(inputs, bs)).to(device)
        baseline_text = "the mean of the evaluation set"
    bg_rng = np.random.default_rng(seed)
    bg_np = np.asarray(inputs[bg_rng.choice(len(inputs), min(cfg.n_background, len(inputs)), replace=False)],
                       dtype=np.float32)
    background = torch.from_numpy(bg_np).to(device)
    reference = ctx.datasets["reference"].inputs if "reference" in ctx.datasets else inputs
    seg_text = ""

    def gradient_method(f: Any, method: str, inputs: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        if method == "integrated_gradients":
            return E.integrated_gradients(f, inputs, tgt, baseline, cfg.n_steps, bs)[0]
        if method == "saliency":
            return E.saliency(f, inputs, tgt, baseline, bs)
        if method == "gradient_shap":
            return E.gradient_shap(f, inputs, tgt, background, cfg.n_shap_samples, seed, bs)
        return E.shap_gradient(f, inputs, tgt, background, cfg.n_shap_samples, seed, bs).to(device)

    def attribute(f: Any, method: str) -> torch.Tensor:
        nonlocal seg_text
        if method in GRADIENT_METHODS:
            return gradient_method(f, method, x, target)
        if method == "lime" and x.dim() == 4:
            a, seg_text = B.lime_image(f, x_sel, target_np, device, n_samples=cfg.n_lime_samples, hide_value=hide,
                                       segmentation=cfg.lime_segmentation, cell=cfg.lime_cell, seed=seed, batch_size=bs)
            return torch.from_numpy(a).to(device)
        if method == "lime":
            return torch.from_numpy(B.lime_tabular(f, x_sel, target_np, device, training_data=as_array(reference),
                                                   feature_names=ev.feature_names, n_samples=cfg.n_lime_samples,
                                                   seed=seed, batch_size=bs)).to(device)
        values, expected = B.kernel_shap(f, x_sel, target_np, device, background=bg_np, n_samples=cfg.n_kernel_samples,
                                         seed=seed, batch_size=bs)
        if f is fwd:
            fx = B.batched_logits(f, x_sel, device, bs)[np.arange(len(x_sel)), target_np]
            out.head.append(Metric(
                name="shap_efficiency_error", n=len(x_sel), higher_is_better=False,
                value=_relative_error(values.sum(1) - (fx - expected), fx - expected),
                method=f"KernelSHAP: mean |sum of SHAP values - (f(x) - E[f(background)])| relative to mean "
                       f"|f(x) - E[f(background)]| on the target logit ({len(bg_np)} background rows)"))
        return torch.from_numpy(values).to(device)

    for method in cfg.methods:
        if method in GRADIENT_METHODS and not gradients:
            out.skipped[method] = (f"needs input gradients, which this model ({adapter.format}) does not have; "
                                   "the gradient-free methods (lime, kernel_shap) explain it instead")
        elif method == "lime" and x.dim() not in (2, 4):
            out.skipped[method] = f"LIME takes images (N, C, H, W) or tables (N, F); these inputs are {tuple(x.shape[1:])}"
        elif method == "kernel_shap" and x.dim() != 2:
            out.skipped[method] = ("KernelSHAP is run on tabular inputs; images get SHAP's GradientExplainer and LIME "
                                   "over superpixels")
    methods = [m for m in dict.fromkeys(cfg.methods) if m not in out.skipped]
    attrs: dict[str, torch.Tensor] = {}
    for method in methods:
        if method == "integrated_gradients":
            attrs[method], delta = E.integrated_gradients(fwd, x, target, baseline, cfg.n_steps, bs)
            gap = (E.batched_forward(fwd, x, bs) - E.batched_forward(fwd, baseline, bs)).gather(1, target[:, None]).squeeze(1)
            out.head.append(Metric(
                name="ig_completeness_error", n=len(x), higher_is_better=False,
                value=_relative_error(delta.cpu().numpy(), gap.cpu().numpy()),
                method=f"mean |sum of IG attributions - (f(x) - f(baseline))| relative to mean |f(x) - f(baseline)| "
                       f"on the target logit, {cfg.n_steps} steps (Captum convergence delta)"))
        else:
            attrs[method] = attribute(fwd, method)

    randomized, why_not = None, ""
    if has_module:
        try:
            randomized = E.randomized_copy(fwd, seed)
        except (RuntimeError, TypeError) as exc:  # packed (quantised) weights cannot be re-drawn
            why_not = f"its weights cannot be re-initialised ({type(exc).__name__})"
    else:
        why_not = f"its weights are not accessible ({adapter.format})"
    if why_not:
        out.limitations.append(f"The randomisation sanity check was not run: {why_not}.")

    noise_scale = 0.05 * float(x.std().clamp_min(1e-6))
    lo_hi = adapter.input_range or (float(x.min()), float(x.max()))
    radius = 0.02 * max(float(lo_hi[1] - lo_hi[0]), 1e-6)
    for method, a in attrs.items():
        dele, ins = E.deletion_insertion(fwd, x, target, a, baseline, cfg.curve_steps, bs)
        infid = float(E.infidelity(fwd, x, target, a, noise_scale, cfg.n_perturb, seed, bs).mean())
        sens = None
        if method in GRADIENT_METHODS and method != "shap":
            sens = float(E.sensitivity(lambda inp, tgt, m=method: gradient_method(fwd, m, inp, tgt), x, target, radius,
                                       cfg.n_perturb, seed, bs).mean())
        rand_sim = (E.rank_agreement(a.abs(), attribute(randomized, method).abs(), mask=(x - baseline).abs() > 1e-8)
                    if randomized is not None else None)
        out.methods[method] = _Method(a, dele, ins, infid, rand_sim, sens)
    if {"lime", "kernel_shap", "shap"} & set(attrs):
        out.limitations.append(f"Max-sensitivity is computed for Captum's methods only (L∞ radius {radius:.3g}, "
                               f"{cfg.n_perturb} perturbations): for SHAP, LIME and KernelSHAP each perturbation would "
                               "re-run the whole sampler.")

    n = len(idx)
    if x.dim() == 2:  # tabular (the input kind of a black box may be unknown)
        src = next((m for m in ("kernel_shap", "shap") if m in attrs), next(iter(attrs)))
        names_f = ev.feature_names or [f"x{j}" for j in range(x.shape[1])]
        importance = attrs[src].abs().mean(0).cpu().numpy()
        order = np.argsort(-importance, kind="stable")[:30]
        out.evidence.append(Figure(kind="bar", title=f"Global importance: mean |{src}| per feature",
                                   data={"labels": [names_f[j] for j in order], "values": [float(importance[j]) for j in order],
                                         "ylabel": f"mean |attribution| ({src})"},
                                   caption=f"Features ranked by mean |{src}| over the {n} explained samples: a ranking of what "
                                           "the model relies on. Computed on the samples chosen for explanation, not the whole set."))
    if adapter.input_kind == "image" and x.dim() == 4 and x.shape[1] in (1, 3):
        lo, hi = adapter.input_range or (float(x.min()), float(x.max()))
        images, titles = [], []
        for i in range(min(3, n)):
            images.append(figure_image(((x[i] - lo) / max(hi - lo, 1e-12)).clamp(0, 1)))
            titles.append(f"input ({reasons[i]})")
            for method, a in attrs.items():
                images.append(figure_heatmap(a[i].abs().sum(0)))
                titles.append(method)
        out.evidence.append(Figure(kind="image_grid", title="Attribution heatmaps", data={"images": images, "titles": titles},
                                   caption="Each row: an input, then |attribution| per method (brighter = more important)."
                                           + downsampled_note(tuple(x.shape))))
    parts = [f"on raw inputs (preprocessing inside the model), at most {bs} inputs per model call; curves replace "
             f"features with {baseline_text}"]
    if "integrated_gradients" in attrs:
        parts.append(f"Integrated Gradients: {cfg.n_steps} steps from the same baseline")
    if {"gradient_shap", "shap"} & set(attrs):
        parts.append(f"GradientSHAP and SHAP's GradientExplainer: {len(bg_np)} background rows, {cfg.n_shap_samples} samples")
    if "lime" in attrs:
        parts.append(f"LIME: {cfg.n_lime_samples} perturbations per sample"
                     + (f" over {seg_text}, hidden superpixels set to {'the segment mean' if hide is None else f'{hide:g}'}"
                        if seg_text else ", quartile-discretised features with statistics from the "
                        + ("reference set" if "reference" in ctx.datasets else "evaluation set")))
    if "kernel_shap" in attrs:
        parts.append(f"KernelSHAP: {cfg.n_kernel_samples} coalitions per sample, {len(bg_np)} background rows, no L1 selection")
    out.method_text = "; ".join(parts)
    out.limitations.append(f"Deletion and insertion replace features with {baseline_text}; another baseline gives other curves.")
    return out


def _explain_text(ctx: AuditContext, cfg: ExplanationsConfig, idx: np.ndarray, target: np.ndarray, seed: int,
                  bs: int) -> _Explained:
    adapter, ev = ctx.adapter, ctx.dataset("eval")
    out = _Explained()
    texts = [str(ev.inputs[i]) for i in idx]
    mask = cfg.text_mask if cfg.text_mask is not None else T.mask_token_of(adapter)
    tok = adapter.tokenizer
    base_id = next((getattr(tok, a) for a in ("mask_token_id", "pad_token_id") if isinstance(getattr(tok, a, None), int)), None)
    embeddings = adapter.differentiable and T.supports_embeddings(adapter)
    probe = T.token_words(adapter, texts[:1], adapter.encode(texts[:1])) if embeddings else None

    for method in cfg.methods:
        if method in ("gradient_shap", "shap"):
            out.skipped[method] = ("not run on text: sampled backgrounds of other sentences' embeddings are not a "
                                   "meaningful reference; kernel_shap (word masking) and IG on embeddings are run instead")
        elif method in ("integrated_gradients", "saliency") and not embeddings:
            out.skipped[method] = ("needs gradients with respect to the input embeddings, which this text adapter "
                                   f"({adapter.format}) does not expose; the gradient-free methods explain it instead")
        elif method in ("integrated_gradients", "saliency") and probe is None:
            out.skipped[method] = ("the tokenizer gives no character offsets (a Hugging Face fast tokenizer, or "
                                   "adapter.token_offsets), so token attributions cannot be mapped to words; the "
                                   "gradient-free methods explain it instead")

    # One memoising scorer per model state for this run: LIME, KernelSHAP and the curves share the
    # model's scores of repeated texts; the randomised copy gets its own (see audit.text_scorer).
    scorers: dict[int, TextScorer] = {}

    def scorer_of(a: Any) -> TextScorer:
        if id(a) not in scorers:
            scorers[id(a)] = TextScorer(a, bs)
        return scorers[id(a)]

    def attribute(a: Any, method: str, record: bool) -> list[np.ndarray]:
        if method in ("integrated_gradients", "saliency"):
            words, delta, gap = T.embedding_attributions(a, texts, target, method, n_steps=cfg.n_steps,
                                                         internal_batch_size=bs,
                                                         baseline_token_id=base_id)
            if record and delta is not None:
                out.head.append(Metric(
                    name="ig_completeness_error", n=len(texts), higher_is_better=False, value=_relative_error(delta, gap),
                    method=f"mean |sum of IG attributions - (f(x) - f(baseline))| relative to mean |f(x) - f(baseline)| "
                           f"on the target logit, over the input embeddings, {cfg.n_steps} steps (Captum convergence delta)"))
            return words
        scorer = scorer_of(a)
        if method == "lime":
            return T.lime_text(scorer, texts, target, mask_token=mask, n_samples=cfg.n_lime_samples, seed=seed)
        values, base, fx = T.kernel_shap(scorer, texts, target, mask_token=mask, n_samples=cfg.n_kernel_samples,
                                         seed=seed)
        if record:
            out.head.append(Metric(
                name="shap_efficiency_error", n=len(texts), higher_is_better=False,
                value=_relative_error(np.array([v.sum() for v in values]) - (fx - base), fx - base),
                method="KernelSHAP over words: mean |sum of SHAP values - (f(x) - f(all words masked))| relative to "
                       "mean |f(x) - f(all words masked)| on the target logit"))
        return values

    randomized = T.randomized_adapter(adapter, seed)
    if randomized is None:
        out.limitations.append("The randomisation sanity check was not run: the adapter does not expose its torch model.")
    for method in dict.fromkeys(cfg.methods):
        if method in out.skipped:
            continue
        words = attribute(adapter, method, True)
        dele, ins = T.deletion_insertion(scorer_of(adapter), texts, target, words, mask, cfg.curve_steps)
        rand_sim = None
        if randomized is not None:
            rand_sim = _agreement(_abs(words), _abs(attribute(randomized, method, False)))
        out.methods[method] = _Method(words, dele, ins, None, rand_sim)

    rows = []
    for method, m in out.methods.items():
        for i, text in enumerate(texts[:6]):
            spans = T.word_spans(text)[:40]
            rows.append({"label": f"row {int(idx[i])} · {method} · predicted {ctx.class_names[int(target[i])]}",
                         "row": int(idx[i]), "method": method, "words": [text[a:b] for a, b in spans],
                         "scores": [float(w) for w in m.attr[i][:len(spans)]]})
    out.evidence.append(Figure(
        kind="text_highlights", title="Token highlights",
        data={"rows": rows, "score": "attribution to the predicted class", "signed": True},
        caption="Each word shaded by its attribution to the predicted class, with the attribution after it. Gradient "
                "methods sum their token scores over the tokens of each word; at most 40 words are shown."))
    first = next(iter(out.methods))
    spans = T.word_spans(texts[0])[:40]
    if spans:
        out.evidence.append(Figure(
            kind="bar", title=f"Word attributions ({first}) for row {int(idx[0])}",
            data={"labels": [texts[0][a:b] for a, b in spans], "values": [float(w) for w in out.methods[first].attr[0][:40]],
                  "ylabel": f"attribution to '{ctx.class_names[int(target[0])]}'"},
            caption="Bars above zero push the model towards its prediction; below zero, away from it."))
    out.method_text = (f"over the words of the raw strings; a removed word becomes {mask!r}; LIME: {cfg.n_lime_samples} "
                       f"perturbations per text; KernelSHAP: {cfg.n_kernel_samples} coalitions per text with the fully "
                       f"masked text as background; Integrated Gradients: {cfg.n_steps} steps on the input embeddings from "
                       f"the embeddings of {'the mask token' if base_id is not None else 'zeros'}, summed per word")
    out.limitations.append("Captum's infidelity and max-sensitivity are not computed for text: they perturb inputs with "
                           "continuous noise, which raw strings do not admit.")
    return out


def _assemble(ctx: AuditContext, cfg: ExplanationsConfig, out: _Explained, idx: np.ndarray, reasons: list[str],
              target: np.ndarray) -> CheckOutput:
    ev = ctx.dataset("eval")
    n = len(idx)
    metrics: list[Metric] = []
    rows: list[list[Any]] = []
    gaps: dict[str, float] = {}
    failing: list[str] = []
    for method, m in out.methods.items():
        del_auc, ins_auc = float(m.deletion.mean()), float(m.insertion.mean())
        gaps[method] = ins_auc - del_auc
        rand_sim = m.rand_sim
        flagged = rand_sim is not None and not np.isnan(rand_sim) and rand_sim > cfg.randomization_threshold
        if flagged:
            failing.append(method)
        base = f"{method} on {n} samples"
        metrics += [
            Metric(name="deletion_auc", group=method, value=del_auc, n=n, higher_is_better=False,
                   method=f"mean target probability as features are removed (set to the baseline), most important "
                          f"first ({cfg.curve_steps} steps); {base}"),
            Metric(name="insertion_auc", group=method, value=ins_auc, n=n, higher_is_better=True,
                   method=f"mean target probability as features are restored from the baseline, most important first; {base}"),
        ]
        if m.infidelity is not None:
            metrics.append(Metric(name="infidelity", group=method, value=m.infidelity, n=n, higher_is_better=False,
                                  method=f"captum.metrics.infidelity, Gaussian perturbations, {cfg.n_perturb} per sample; {base}"))
        if m.sensitivity is not None:
            metrics.append(Metric(name="sensitivity", group=method, value=m.sensitivity, n=n, higher_is_better=False,
                                  method=f"captum.metrics.sensitivity_max: largest relative change of the attributions "
                                         f"under uniform L∞ input noise, {cfg.n_perturb} draws per sample; {base}"))
        if rand_sim is not None:
            metrics.append(Metric(name="randomization_similarity", group=method, value=rand_sim, n=n, higher_is_better=False,
                                  method=f"Spearman correlation of |attributions| before and after re-initialising every "
                                         f"weight (Adebayo et al. 2018), over the input positions that differ from the "
                                         f"baseline (where path methods are zero whatever the weights) for image and "
                                         f"tabular inputs; above {cfg.randomization_threshold} fails; {base}"))
        sanity = "not run" if rand_sim is None else ("FAIL" if flagged else "pass")
        rows.append([method, round(del_auc, 4), round(ins_auc, 4), round(ins_auc - del_auc, 4),
                     None if m.infidelity is None else round(m.infidelity, 6),
                     None if m.sensitivity is None else round(m.sensitivity, 4),
                     None if rand_sim is None or np.isnan(rand_sim) else round(rand_sim, 4), sanity])
    ranked = sorted(gaps, key=lambda k: (k in failing, -gaps[k]))
    rows.sort(key=lambda r: ranked.index(r[0]))
    for r in rows:
        r.insert(0, ranked.index(r[0]) + 1)

    names = list(out.methods)
    agreement_rows = []
    for i, a_name in enumerate(names):
        for b_name in names[i + 1 :]:
            rho = _agreement(out.methods[a_name].attr, out.methods[b_name].attr)
            metrics.append(Metric(name="agreement", group=f"{a_name} vs {b_name}", value=rho, n=n,
                                  method="mean Spearman rank correlation of the two methods' attributions per sample"))
            agreement_rows.append([a_name, b_name, None if np.isnan(rho) else round(rho, 4)])

    best = ranked[0]
    checked = [k for k, m in out.methods.items() if m.rand_sim is not None and not np.isnan(m.rand_sim)]
    not_run = next((t for t in out.limitations if t.startswith("The randomisation sanity check was not run")),
                   "The randomisation sanity check gave no similarity for any method.")
    head = [
        Metric(name="faithfulness_gap", value=gaps[best], n=n, higher_is_better=True,
               method=f"insertion AUC minus deletion AUC of the most faithful method ({best})"),
        Metric(name="methods_failing_sanity", value=float(len(failing)) if checked else None, n=n, higher_is_better=False,
               method=(f"methods whose attributions survive weight randomisation (Adebayo et al. 2018), of the "
                       f"{len(checked)} checked ({', '.join(checked)})" if checked else f"not measured: {not_run}")),
    ] + out.head
    evidence: list[Any] = [
        Table(title="Methods ranked by faithfulness for this model",
              columns=["rank", "method", "deletion AUC", "insertion AUC", "gap", "infidelity", "max-sensitivity",
                       "randomisation similarity", "sanity check"], rows=rows,
              caption="Deletion AUC: lower is better; insertion AUC: higher is better; the gap (insertion − deletion) "
                      "ranks the methods. A method that fails the sanity check explains the input, not the model, and is "
                      "ranked last."),
        Table(title="Agreement between methods", columns=["method A", "method B", "Spearman ρ"], rows=agreement_rows,
              caption="1: the methods rank features alike; near 0: they disagree, and at most one of them can be right."),
        Table(title="Explained samples", columns=["row", "why chosen", "predicted", "true"],
              rows=[[int(i), why, ctx.class_names[int(t)], None if ev.target is None else ctx.class_names[int(ev.target[i])]]
                    for i, why, t in zip(idx, reasons, target)]),
    ]
    if out.skipped:
        evidence.append(Table(title="Methods not run", columns=["method", "reason"],
                              rows=[[m, r] for m, r in out.skipped.items()]))
    limitations = [f"Explanations computed for {n} samples chosen to include confident errors and uncertain predictions; "
                   "they describe those samples, not the model everywhere."] + out.limitations
    limitations += [f"{m} was not run: {r}." for m, r in out.skipped.items()]
    sanity = (f"{len(failing)} method(s) failed the randomisation sanity check ({', '.join(failing)})." if failing else
              "the randomisation sanity check did not run, so no method is known to explain the model rather than the "
              "input." if not checked else
              f"no method failed the randomisation sanity check ({len(checked)} of {len(out.methods)} checked).")
    summary = f"Most faithful method for this model: {best} (insertion − deletion AUC {gaps[best]:.3f}); " + sanity
    return CheckOutput(summary=summary, metrics=head + metrics, evidence=evidence + out.evidence,
                       dataset="eval", n_samples=n, limitations=limitations, status_floor="warn" if failing else "pass",
                       method=f"Attributions for the predicted class, seeded; {out.method_text}.")
