"""Adversarial robustness: robust accuracy against ε for FGSM and PGD (L∞, L2), with the
safeguards against false robustness of Athalye et al. (2018).

White-box attacks are torch-native (``audit.attacks``), batched on the device. The safeguards —
accuracy must not rise with ε, PGD must do at least as well as FGSM, an ε spanning the input
range must drive accuracy near zero, a black-box attack must not beat the white-box one — are
evaluated on every run. When one trips, or the model has no input gradients, ART's black-box
Square attack (and a transfer attack from the float twin of a quantised variant, when there is
one) attack again, and the lowest accuracy found is the one reported.

References
----------
Athalye, Carlini, Wagner. "Obfuscated Gradients Give a False Sense of Security", ICML 2018.
Andriushchenko et al. "Square Attack: a query-efficient black-box adversarial attack", ECCV 2020.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from audit import masking
from audit.attacks import Norm, fgsm, pgd
from audit.config import CheckConfig, ThresholdSpec, PositiveFloat
from audit.context import AuditContext
from audit.errors import SkipCheck
from audit.images import downsampled_note, figure_image
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from audit.rows import as_array
from audit.stats import wilson_interval
from audit import text_attacks, text_words
from audit.text_scorer import TextScorer
from models.adapter import ModelAdapter


class AdversarialConfig(CheckConfig):
    """Settings of the ``adversarial`` check. ε values are in raw input units (e.g. [0, 1] pixels)."""

    renamed: ClassVar[dict[str, str]] = {"n_samples": "max_samples", "hsj_samples": "hsj_max_samples"}

    eps: list[PositiveFloat] = Field(default=[0.01, 0.03, 0.1], description="L∞ budgets, in raw input units; each finite and > 0.")
    eps_l2: list[PositiveFloat] = Field(default=[], description="L2 budgets (empty: no L2 attacks); each finite and > 0.")
    headline_eps: PositiveFloat | None = Field(
        default=None, description="The L∞ ε (one of eps) the headline robust accuracy is judged at (default: the largest; "
                                  "with no L∞ budgets, the largest L2 ε).")
    steps: int = Field(default=10, ge=1, description="PGD steps.")
    restarts: int = Field(default=1, ge=1, description="PGD random restarts.")
    max_samples: int = Field(default=256, ge=8, description="Seeded subset of the evaluation set that is attacked (was n_samples).")
    black_box: Literal["auto", "always", "never"] = Field(
        default="auto", description="Run ART's Square attack: when safeguards trip or gradients are missing (auto), always, or never.")
    black_box_queries: int = Field(default=200, ge=10, description="Square attack iterations (queries per sample).")
    black_box_attack: Literal["auto", "square", "hopskipjump"] = Field(
        default="auto", description="Black-box attack: Square (needs scores) or HopSkipJump (labels only); auto picks "
                                    "HopSkipJump when the model's outputs are decisions (one-hot), where Square's loss is flat.")
    hsj_max_samples: int = Field(default=32, ge=1, description="HopSkipJump: samples attacked (it queries per sample; was hsj_samples).")
    hsj_iterations: int = Field(default=10, ge=1, description="HopSkipJump: iterations per sample.")
    hsj_max_eval: int = Field(default=200, ge=10, description="HopSkipJump: largest number of queries per gradient estimate.")
    masking_margin: float = Field(default=0.05, ge=0, description="Black-box accuracy may undercut white-box by at most this.")
    near_zero: float = Field(default=0.1, ge=0, le=1, description="Accuracy an ε spanning the input range must fall below.")
    tabular_units: Literal["std", "raw"] = Field(
        default="std", description="Tabular models: ε in units of each feature's standard deviation on the eval set "
                                   "(std; features on different scales get comparable budgets) or in raw units.")
    text_edit_budget: int = Field(default=3, ge=1, description="Text models: character edits allowed per text.")
    text_candidates: int = Field(default=16, ge=1, description="Text models: candidate edits scored per text and round.")
    text_recipes: list[Literal["char_edit", "pwws"]] = Field(
        default=["char_edit", "pwws"], min_length=1,
        description="Text models: attack recipes run — greedy character edits (char_edit) and PWWS-style WordNet synonym "
                    "substitution (pwws, needs the WordNet database: apt-get install wordnet-base). The headline is "
                    "the strongest recipe.")
    text_max_queries: int = Field(default=300, ge=2, description="Text models: texts scored per attacked text at most, "
                                                                 "for every recipe (the query budget).")
    text_max_words_changed: float = Field(default=0.25, gt=0, le=1,
                                          description="pwws: largest share of a text's words replaced (at least one).")
    text_synonyms: int = Field(default=16, ge=1, description="pwws: WordNet synonyms tried per word.")
    text_min_similarity: float = Field(
        default=0.8, ge=0, le=1, description="pwws: least cosine similarity between the MiniLM sentence embeddings "
                                              "of a candidate and its original text.")
    text_require_similarity: bool = Field(
        default=True, description="pwws: when the MiniLM sentence encoder cannot load, skip the recipe (true) or run "
                                  "it without the similarity constraint, said in the result (false).")
    wordnet_dir: str | None = Field(
        default=None, description="pwws: folder of the WordNet 3.0 database files (default: $WNSEARCHDIR, else "
                                  "/usr/share/wordnet, where Debian's wordnet-base installs them).")

    @model_validator(mode="after")
    def _budgets(self) -> AdversarialConfig:
        if not self.eps and not self.eps_l2:
            raise ValueError("eps (L∞) and eps_l2 (L2) are both empty: give at least one budget, e.g. eps: [0.03]")
        if self.headline_eps is not None and self.headline_eps not in self.eps:
            raise ValueError(f"headline_eps {self.headline_eps:g} is not one of eps {self.eps}: the headline is judged "
                             "at an L∞ budget that is attacked")
        return self


@register_check("adversarial")
class AdversarialRobustness(Check):
    """Robust accuracy under FGSM and PGD, checked for gradient masking."""

    category = "robustness"
    title = "Adversarial robustness"
    needs = ("labels",)
    uses = ("gradients",)
    Config = AdversarialConfig
    metric_names = ("robust_accuracy", "clean_accuracy", "attack_success_rate", "safeguards_tripped",
                    "accuracy_under_attack", "mean_perturbation", "flip_rate", "words_changed", "queries_per_text",
                    "semantic_similarity")
    #: Built-in conditions (warn): the strongest attack at the headline ε flips more than half of the correct
    #: predictions (images, tabular), or the strongest text recipe flips more than half of them (text). A tripped
    #: gradient-masking safeguard warns through the status floor. A config threshold on the same metric replaces one.
    default_thresholds = {"attack_success_rate": ThresholdSpec(max=0.5, level="warn"),
                          "flip_rate": ThresholdSpec(max=0.5, level="warn")}

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: AdversarialConfig = self.config  # type: ignore[assignment]
        adapter, ev = ctx.adapter, ctx.dataset("eval")
        if isinstance(ev.inputs, list) or adapter.input_kind == "text":
            return self._text(ctx, cfg)
        if not np.issubdtype(ev.inputs.dtype, np.floating):
            raise SkipCheck("inputs are integer token ids: L∞/L2 attacks need continuous inputs.")
        y_all = ctx.y_true()
        rng = ctx.rng(self.id)
        n = len(ev)
        rows = np.sort(rng.choice(n, cfg.max_samples, replace=False)) if n > cfg.max_samples else np.arange(n)
        x_all = torch.from_numpy(ev.take(rows)).float()
        y_t = torch.from_numpy(y_all[rows]).long()
        m = len(rows)
        units = "raw input units"
        if adapter.input_kind == "tabular" and cfg.tabular_units == "std" and x_all.dim() == 2:
            # Attack in standardised coordinates: ε is a number of standard deviations per feature.
            full = torch.from_numpy(as_array(ev.inputs)).float()  # a table (N, F): small, read whole
            mean, std = full.mean(0), full.std(0)
            std = torch.where(std > 0, std, torch.ones_like(std))
            adapter = _Standardised(adapter, mean, std)
            x_all = (x_all - mean) / std
            units = "standard deviations of each feature"
        clip = adapter.input_range
        width = (clip[1] - clip[0]) if clip else float(x_all.max() - x_all.min()) or 1.0
        clean_correct = ctx.y_pred()[rows] == y_all[rows]
        gen = torch.Generator(device=adapter.device).manual_seed(int(rng.integers(0, 2**31)))

        def accuracy_of(adv: torch.Tensor) -> np.ndarray:
            logits = adapter.predict_logits(adv, batch_size=ctx.batch_size)
            return logits.argmax(1).numpy() == y_all[rows]

        def attack(kind: str, eps: float, norm: Norm) -> tuple[np.ndarray, torch.Tensor]:
            advs = []
            for start in range(0, m, ctx.batch_size):
                xb = x_all[start : start + ctx.batch_size].to(adapter.device)
                yb = y_t[start : start + ctx.batch_size].to(adapter.device)
                if kind == "fgsm":
                    adv = fgsm(adapter.logits, xb, yb, eps=eps, norm=norm, clip=clip)
                else:
                    adv = pgd(adapter.logits, xb, yb, eps=eps, norm=norm, steps=cfg.steps, restarts=cfg.restarts,
                              clip=clip, generator=gen)
                advs.append(adv.detach().cpu())
            adv = torch.cat(advs)
            return accuracy_of(adv), adv

        curve: dict[tuple[str, str], list[tuple[float, float]]] = {}
        unmoved: dict[str, tuple[float, float]] = {}  # norm -> (largest ε, share of samples FGSM left unmoved)
        table: list[list[Any]] = []
        metrics: list[Metric] = []
        examples: tuple[torch.Tensor, float] | None = None
        white_box = adapter.differentiable
        budgets = [("linf", e) for e in cfg.eps] + [("l2", e) for e in cfg.eps_l2]
        # The headline is judged at an L∞ budget; an L2-only configuration is judged at its largest L2 budget.
        head_norm: Norm = "linf" if cfg.eps else "l2"
        headline = cfg.headline_eps if cfg.headline_eps is not None else max(cfg.eps or cfg.eps_l2)
        head_label = NORM_LABEL[head_norm]
        at_headline: dict[str, float] = {}
        if white_box:
            for norm, eps in budgets:
                for kind in ("fgsm", "pgd"):
                    correct, adv = attack(kind, eps, norm)  # type: ignore[arg-type]
                    acc = float(correct.mean())
                    delta = (adv - x_all).flatten(1)
                    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
                    success = ~correct & clean_correct
                    lo, hi = wilson_interval(int(correct.sum()), m)
                    group = f"{kind}/{norm}/{eps:g}"
                    metrics.append(Metric(name="accuracy_under_attack", group=group, value=acc, ci_low=lo, ci_high=hi,
                                          ci_level=0.95, n=m, higher_is_better=True,
                                          method=f"{kind.upper()} {norm} ε={eps:g} "
                                                 + (f"({cfg.steps} steps, {cfg.restarts} restart(s), step 2.5ε/steps)" if kind == "pgd" else "")
                                                 + f" on {m} samples, torch-native; Wilson 95% interval"))
                    if success.any():
                        metrics.append(Metric(name="mean_perturbation", group=group, value=float(size[torch.from_numpy(success)].mean()),
                                              n=int(success.sum()), higher_is_better=None,
                                              method=f"mean {norm} size of successful perturbations"))
                    curve.setdefault((kind, norm), []).append((eps, acc))
                    if kind == "fgsm" and eps >= unmoved.get(norm, (-1.0, 0.0))[0]:
                        unmoved[norm] = (eps, float((size == 0).float().mean()))
                    table.append([kind.upper(), norm, eps, round(acc, 4), round(lo, 4), round(hi, 4),
                                  round(float(success.sum() / max(clean_correct.sum(), 1)), 4)])
                    if norm == head_norm and eps == headline:
                        at_headline[kind.upper()] = acc
                        if kind == "pgd" and norm == "linf":
                            examples = (adv, eps)
        # ------------------------------------------------------------------------ safeguards
        tol = 1.5 / m
        safeguards: list[list[Any]] = []
        if white_box:
            safeguards += (masking.accuracy_falls_with_eps(curve, tol) + masking.pgd_at_least_fgsm(curve, tol)
                           + masking.gradients_move_inputs(unmoved))
            big, _ = attack("pgd", width, "linf")
            safeguards.append(masking.unbounded_reaches_zero(float(big.mean()), width, cfg.near_zero))
        tripped = masking.tripped(safeguards)
        run_bb = cfg.black_box == "always" or (cfg.black_box == "auto" and (tripped or not white_box))
        notes: list[str] = []
        decisions = decision_only(ctx.logits().numpy())
        bb_kind = cfg.black_box_attack if cfg.black_box_attack != "auto" else ("hopskipjump" if decisions else "square")
        if decisions:
            notes.append("The model's outputs are decisions (one-hot): score-based attacks see a flat loss, so the "
                         "black-box attack is the decision-based HopSkipJump" +
                         ("." if bb_kind == "hopskipjump" else " — but black_box_attack is set to square."))
            run_bb = run_bb or cfg.black_box == "auto"
        if run_bb:
            if bb_kind == "hopskipjump":
                k = min(cfg.hsj_max_samples, m)
                bb_acc = self._hopskipjump(adapter, x_all[:k], y_all[rows][:k], headline, cfg, clip, ctx, head_norm)
                bb_name = f"HopSkipJump (decision-based, {k} samples)"
            else:
                bb_acc = self._square(adapter, x_all, y_all[rows], headline, cfg, clip, ctx, head_norm)
                bb_name = "Square (black-box)"
            at_headline[bb_name] = bb_acc
            table.append([bb_kind.upper(), head_norm, headline, round(bb_acc, 4), None, None, None])
            if white_box and "PGD" in at_headline:
                safeguards.append(masking.black_box_not_stronger(bb_name, bb_acc, at_headline["PGD"], cfg.masking_margin))
                tripped = masking.tripped(safeguards)
        twin = adapter.float_twin
        if (tripped or not white_box) and twin is not None and twin.differentiable:
            advs = [pgd(twin.logits, x_all[s : s + ctx.batch_size].to(twin.device), y_t[s : s + ctx.batch_size].to(twin.device),
                        eps=headline, norm=head_norm, steps=cfg.steps, clip=clip, generator=gen).cpu()
                    for s in range(0, m, ctx.batch_size)]
            at_headline["transfer from float twin"] = float(accuracy_of(torch.cat(advs)).mean())
            notes.append("A transfer attack crafted on the float twin was evaluated on this model.")
        if not at_headline:
            raise SkipCheck("no attack applies: the model has no input gradients and black_box is 'never'.")

        worst_attack = min(at_headline, key=at_headline.get)
        robust = at_headline[worst_attack]
        clean_acc = float(clean_correct.mean())
        lo, hi = wilson_interval(int(round(robust * m)), m)
        suspected = bool(tripped)
        metrics[:0] = [
            Metric(name="robust_accuracy", value=robust, ci_low=lo, ci_high=hi, ci_level=0.95, n=m, higher_is_better=True,
                   method=f"lowest accuracy over every attack run at {head_label} ε={headline:g} (found by {worst_attack}); "
                          "Wilson 95% interval"),
            Metric(name="clean_accuracy", value=clean_acc, n=m, higher_is_better=True,
                   method=f"accuracy on the same {m} unperturbed samples"),
            Metric(name="attack_success_rate", value=float(1 - robust / clean_acc) if clean_acc else None, n=int(clean_correct.sum()),
                   higher_is_better=False, method="share of correctly classified samples the strongest attack flips"),
            Metric(name="safeguards_tripped", value=float(len(tripped)) if safeguards else None, n=m, higher_is_better=False,
                   method="safeguards of Athalye et al. 2018 that failed (see the safeguards table)" if safeguards else
                   "not measured: the safeguards against gradient masking test white-box attacks, and this model has no "
                   "input gradients"),
        ]
        evidence: list[Any] = [
            Table(title="Accuracy under attack", columns=["attack", "norm", "ε", "accuracy", "CI low", "CI high",
                                                          "success rate on correct"], rows=table),
            Table(title="Safeguards against false robustness", columns=["safeguard", "result", "detail"], rows=safeguards),
        ]
        if curve:
            eps_axis = sorted({e for pts in curve.values() for e, _ in pts if True})
            series = {f"{k.upper()} {nm}": [dict(p).get(e) for e in eps_axis] for (k, nm), p in curve.items() if nm == "linf"}
            if series:
                evidence.append(Figure(kind="line", title="Robust accuracy against ε (L∞)",
                                       data={"x": [e for e in eps_axis if e in cfg.eps] or eps_axis,
                                             "series": {k: [v for e, v in zip(eps_axis, vals) if e in cfg.eps]
                                                        for k, vals in series.items()},
                                             "xlabel": f"ε ({units})", "ylabel": "accuracy"},
                                       caption=f"Accuracy of {m} samples under FGSM and PGD; it must fall as ε grows."))
        if examples is not None and adapter.input_kind == "image" and x_all.dim() == 4 and x_all.shape[1] in (1, 3):
            adv, eps = examples
            k = min(4, m)
            lo_r = clip[0] if clip else float(x_all.min())

            def img(t: torch.Tensor) -> list:
                return figure_image(((t - lo_r) / width).clamp(0, 1))

            images, titles = [], []
            for i in range(k):
                pert = adv[i] - x_all[i]
                images += [img(x_all[i]), img(lo_r + (pert / (2 * eps) + 0.5) * width), img(adv[i])]
                titles += [f"original ({y_all[rows][i]})", "perturbation (scaled)", "adversarial"]
            evidence.append(Figure(kind="image_grid", title=f"Adversarial examples, PGD L∞ ε={eps:g}",
                                   data={"images": images, "titles": titles},
                                   caption="Each row: an input, its perturbation rescaled to be visible, and the adversarial input."
                                           + downsampled_note(tuple(x_all.shape))))
        limitations = ["Robust accuracy is an upper bound: a stronger attack may find more adversarial examples.",
                       f"Attacked a seeded subset of {m} evaluation samples."]
        if suspected:
            limitations.insert(0, "Gradient masking suspected: the white-box estimate is unreliable; the lowest "
                                  "accuracy found by any attack is reported.")
        if not white_box:
            limitations.insert(0, f"The model has no input gradients ({adapter.format}); only gradient-free attacks ran.")
        summary = (f"Robust accuracy {robust:.3f} at {head_label} ε={headline:g} (clean {clean_acc:.3f}) on {m} samples, "
                   f"strongest attack: {worst_attack}; "
                   + (f"{len(tripped)} safeguard(s) tripped — gradient masking suspected." if suspected
                      else "safeguards against gradient masking passed." if white_box else "black-box only."))
        unclipped = unclipped_images_notice(ctx.adapter)
        if unclipped:
            summary += " Warning: the attacks were not clipped (input_range is unset for image data)."
            limitations.insert(0, unclipped)
        return CheckOutput(summary=summary, metrics=metrics, evidence=evidence, dataset="eval", n_samples=m,
                           limitations=limitations + notes, status_floor="warn" if suspected else "pass",
                           method=(f"Untargeted cross-entropy attacks on the inputs, ε in {units}, preprocessing "
                                   "inside the model, clipped to the input range where one is declared. FGSM: one signed-gradient step of ε. PGD: "
                                   f"{cfg.steps} steps of 2.5ε/{cfg.steps} from a random start in the ε-ball, "
                                   f"{cfg.restarts} restart(s). Square (ART) when run: {cfg.black_box_queries} iterations. "
                                   f"At most {ctx.batch_size} inputs per model call (batch_size)."))

    def _text(self, ctx: AuditContext, cfg: AdversarialConfig) -> CheckOutput:
        """Word-level recipes under a query budget, black-box (greedy searches on the predicted probabilities)."""
        adapter, ev = ctx.adapter, ctx.dataset("eval")
        y_all = ctx.y_true()
        rng = ctx.rng(self.id)
        n = len(ev)
        rows = np.sort(rng.choice(n, cfg.max_samples, replace=False)) if n > cfg.max_samples else np.arange(n)
        texts = [str(ev.inputs[i]) for i in rows]
        y = y_all[rows]
        m = len(rows)
        # ---- measure: every recipe through one memoising scorer (each unique text reaches the model once)
        scorer = TextScorer(adapter, ctx.batch_size)
        runs, skipped, similarity, sim_reason = text_attacks.run_recipes(
            scorer.probs, texts, y, cfg.text_recipes, device=str(adapter.device), seed=int(rng.integers(0, 2**31)),
            **text_attacks.recipe_settings(cfg))
        if not runs:
            raise SkipCheck("; ".join(skipped.values()))
        # ---- judge
        clean = ctx.y_pred()[rows] == y
        metrics: list[Metric] = []
        table: list[list[Any]] = []
        examples: list[list[Any]] = []
        for name in cfg.text_recipes:
            if name in skipped:
                metrics += [Metric(name=k, value=None, n=0, group=name, method=f"not measured: {skipped[name]}")
                            for k in ("robust_accuracy", "flip_rate")]
                table.append([name, None, None, None, None, None, None, None, skipped[name]])
                continue
            stats = text_attacks.recipe_stats(scorer.probs, texts, y, clean, runs[name], similarity)
            metrics += text_attacks.recipe_metrics(name, stats, m, sim_reason)
            table.append([name, round(stats.robust, 4), round(stats.ci[0], 4), round(stats.ci[1], 4),
                          None if stats.flip_rate is None else round(stats.flip_rate, 4),
                          None if stats.words_changed is None else round(stats.words_changed, 4),
                          round(stats.queries, 1), None if stats.similarity is None else round(stats.similarity, 4),
                          ""])
            examples += [[name, *text_words.mark_changes(texts[i], runs[name].adversarial[i]),
                          ctx.class_names[int(y[i])], ctx.class_names[int(stats.after_pred[i])]]
                         for i in np.flatnonzero(stats.flipped)[:5]]
        strongest = min(runs, key=lambda r: next(x.value for x in metrics if x.name == "robust_accuracy" and x.group == r))
        head = {x.name: x for x in metrics if x.group == strongest}
        n_clean = int(clean.sum())
        metrics[:0] = [
            head["robust_accuracy"].model_copy(update={"group": None, "method": f"strongest recipe ({strongest}): "
                                                       + head["robust_accuracy"].method}),
            Metric(name="clean_accuracy", value=float(clean.mean()), n=m, higher_is_better=True,
                   method=f"accuracy on the same {m} unedited texts"),
            head["flip_rate"].model_copy(update={"group": None, "method": f"strongest recipe ({strongest}): "
                                                 + head["flip_rate"].method}),
        ]
        # ---- present
        flip = head["flip_rate"].value
        return CheckOutput(
            summary=(f"The strongest text attack ({strongest}, ≤ {cfg.text_max_queries} queries per text) flips "
                     f"{flip or 0:.1%} of {n_clean} correct predictions; robust accuracy "
                     f"{head['robust_accuracy'].value:.3f} (clean {clean.mean():.3f}) on {m} texts."
                     + (f" Not run: {'; '.join(f'{k} ({v})' for k, v in skipped.items())}." if skipped else "")),
            metrics=metrics, dataset="eval", n_samples=m,
            evidence=[Table(title="Text attack recipes", columns=["recipe", "robust accuracy", "CI low", "CI high",
                                                                 "flip rate", "words changed (share)", "queries per text",
                                                                 "semantic similarity", "not run because"], rows=table),
                      Table(title="Texts whose prediction flipped (changed words in ⟦…⟧)",
                            columns=["recipe", "original", "adversarial", "true class", "new class"], rows=examples)],
            method=text_attacks.method_text(cfg.text_recipes, settings=text_attacks.recipe_settings(cfg)),
            limitations=text_attacks.limitations(skipped, sim_reason, cfg.text_min_similarity, ran=list(runs)))

    @staticmethod
    def _hopskipjump(adapter: Any, x: torch.Tensor, y: np.ndarray, eps: float, cfg: AdversarialConfig,
                     clip: tuple[float, float] | None, ctx: AuditContext, norm: Norm = "linf") -> float:
        """ART's HopSkipJump (Chen et al. 2020), L∞ or L2, from the model's decisions only. It searches the smallest
        perturbation that changes the label; a sample is robust at ε when it was classified correctly
        and no adversarial input within ε was found."""
        from art.attacks.evasion import HopSkipJump
        from art.estimators.classification import BlackBoxClassifier

        n_cls = adapter.n_classes

        def predict(batch: np.ndarray) -> np.ndarray:
            logits = adapter.predict_logits(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)),
                                            batch_size=ctx.batch_size)
            return np.eye(n_cls, dtype=np.float32)[logits.argmax(1).numpy()]

        xn = x.numpy().astype(np.float32)
        lo_hi = clip if clip else (float(xn.min()), float(xn.max()))
        clf = BlackBoxClassifier(predict, input_shape=tuple(xn.shape[1:]), nb_classes=n_cls, clip_values=lo_hi)
        np.random.seed(ctx.seed % 2**32)  # ART draws from numpy's global generator
        attack = HopSkipJump(clf, norm=np.inf if norm == "linf" else 2, max_iter=cfg.hsj_iterations, max_eval=cfg.hsj_max_eval,
                             init_eval=min(20, cfg.hsj_max_eval), batch_size=ctx.batch_size, verbose=False)
        adv = attack.generate(xn, y=np.eye(n_cls)[y]).astype(np.float32)
        delta = (adv - xn).reshape(len(xn), -1)
        dist = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
        fooled = (predict(adv).argmax(1) != y) & (dist <= eps * (1 + 1e-6))
        clean = predict(xn).argmax(1) == y
        return float((clean & ~fooled).mean())

    @staticmethod
    def _square(adapter: Any, x: torch.Tensor, y: np.ndarray, eps: float, cfg: AdversarialConfig,
                clip: tuple[float, float] | None, ctx: AuditContext, norm: Norm = "linf") -> float:
        """ART's Square attack through the adapter's predictions only (no gradients)."""
        from art.attacks.evasion import SquareAttack
        from art.estimators.classification import BlackBoxClassifierNeuralNetwork

        shape = tuple(x.shape[1:])
        size = int(np.prod(shape))
        # ART's Square attack works on (N, C, H, W) images: other inputs are laid out on a square
        # grid, zero-padded; the padding is cut off again before the model sees the input.
        side = max(2, int(np.ceil(np.sqrt(size))))
        view = shape if len(shape) == 3 else (1, side, side)
        # ART draws square positions with randint(0, side - tile), tile = round(side * sqrt(p)): on small
        # grids (tabular rows) the default p_init = 0.8 makes tile == side and crashes. Keep tile < side.
        short = int(min(view[-2:]))
        p_init = min(0.8, 0.9 * ((short - 1) / short) ** 2) if short > 1 else 0.8

        def to_grid(arr: np.ndarray) -> np.ndarray:
            if len(shape) == 3:
                return arr
            flat = arr.reshape(len(arr), size)
            return np.pad(flat, ((0, 0), (0, side * side - size))).reshape(len(arr), *view)

        def predict(batch: np.ndarray) -> np.ndarray:
            flat = batch.astype(np.float32).reshape(len(batch), -1)[:, :size]
            inputs = torch.from_numpy(np.ascontiguousarray(flat).reshape(len(batch), *shape))
            logits = adapter.predict_logits(inputs, batch_size=ctx.batch_size)
            return torch.softmax(logits, dim=1).numpy()

        lo_hi = clip if clip else (float(x.min()), float(x.max()))
        clf = BlackBoxClassifierNeuralNetwork(predict, input_shape=view, nb_classes=adapter.n_classes, clip_values=lo_hi)
        np.random.seed(ctx.seed % 2**32)  # ART draws from numpy's global generator
        attack = SquareAttack(clf, norm=np.inf if norm == "linf" else 2, eps=eps, max_iter=cfg.black_box_queries, batch_size=ctx.batch_size,
                              p_init=p_init, verbose=False)
        adv = attack.generate(to_grid(x.numpy()), y=np.eye(adapter.n_classes)[y])
        return float((predict(adv).argmax(1) == y).mean())


NORM_LABEL = {"linf": "L∞", "l2": "L2"}


class _Standardised(ModelAdapter):
    """A tabular model seen in standardised coordinates ``z = (x - mean) / std``: an L∞ ε on ``z`` is
    ε standard deviations of every feature. Gradients flow through the affine map."""

    def __init__(self, inner: ModelAdapter, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.inner = inner
        self.device = inner.device
        self.mean, self.std = mean.to(inner.device), std.to(inner.device)
        self.input_kind = inner.input_kind
        self.class_names = inner.class_names
        self.differentiable = inner.differentiable
        self.format = inner.format
        self.input_range = None  # per-feature ranges do not map to one interval in z
        twin = inner.float_twin
        self.float_twin = _Standardised(twin, mean, std) if twin is not None else None

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.inner.logits(inputs.to(self.device) * self.std + self.mean)


def decision_only(logits: np.ndarray) -> bool:
    """Whether a model's outputs are decisions rather than scores: every row is the same one-hot
    pattern up to which class is on — one value for the chosen class, one value for all others,
    across the whole data set — so score-based attacks have no signal."""
    if logits.ndim != 2 or logits.shape[1] < 2 or len(logits) < 2:
        return False
    top = logits.max(1, keepdims=True)
    is_top = logits == top
    if (is_top.sum(1) != 1).any():  # ties at the top
        return False
    return bool(np.unique(logits[is_top]).size == 1 and np.unique(logits[~is_top]).size == 1)


def unclipped_images_notice(adapter: Any) -> str | None:
    """The warning for image inputs without a declared valid range (``model.preprocessing.input_range``), whose
    attacks then cannot be clipped to it; ``None`` when a range is declared or the inputs are not images."""
    if adapter.input_kind != "image" or adapter.input_range is not None:
        return None
    return ("input_range is unset for this image model (model.preprocessing.input_range), so the attacks were not "
            "clipped to a valid pixel range: adversarial images may hold values no real image has, which can make "
            "the model look less robust than it is. Set it in the config, e.g. model: {preprocessing: "
            "{input_range: [0, 1]}}.")
