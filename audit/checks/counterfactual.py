"""Counterfactual fairness for text models: swap identity terms and see whether the prediction moves.

For every axis (gender, race, religion, ...) and every ordered pair of groups (A, B), each eval
text that contains a term of group A has every such term replaced by its aligned term of group B
(whole words, case-insensitive, capitalisation kept). The model scores the original and the
counterfactual text; the check reports, per pair:

* ``counterfactual_flip_rate`` — share of texts whose predicted class changes;
* ``counterfactual_score_shift`` — mean change of the probability of the positive class
  (binary: ``positive_class``, default index 1; multiclass: the originally predicted class);

with a Wilson score interval for the flip rate (a binomial proportion; a percentile bootstrap of 0 flips
would give the degenerate [0, 0]), percentile-bootstrap intervals over the texts for the shifts, and ``n``
the number of texts swapped. For a model with a tokenizer, a swapped text that encodes to the same input
ids as its original (the swapped words are unknown to the tokenizer, or cut off by its max length) is no
evidence: it is left out of ``n`` and of every rate, and counted in the summary. The
headline (``group=None``) is the worst pair; ``counterfactual_abs_score_shift`` is its mean
absolute shift. Default threshold: flip rate at most 0.05, level ``warn`` — a swap can make a text
ungrammatical or implausible, so it is evidence to look at, not a verdict on its own.

References
----------
Garg et al. "Counterfactual Fairness in Text Classification through Robustness", AIES 2019.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm
import yaml
from pydantic import Field

from audit.config import CheckConfig, ThresholdSpec, safe_yaml
from audit.context import AuditContext
from audit.errors import InputError, SkipCheck
from audit.registry import Check, CheckOutput, register_check
from audit.results import Figure, Metric, Table
from audit.stats import bootstrap_index_chunks, percentile_interval, wilson_interval
from audit.text_scorer import TextScorer
from audit.text_words import swap, swapper


class CounterfactualConfig(CheckConfig):
    """Settings of the ``fairness.counterfactual_text`` check."""

    terms: dict[str, dict[str, list[str]]] | None = Field(
        default=None, description="Axis -> group -> words aligned by position; default: the shipped identity_terms.yaml.")
    terms_file: str | None = Field(default=None,
                                   description="A YAML file of terms in the same shape (used when 'terms' is not set).")
    axes: list[str] | None = Field(default=None, min_length=1, description="Only these axes (default: all).")
    positive_class: int | None = Field(
        default=None, ge=0, description="Class whose probability shift is reported (binary default: 1; multiclass "
                                        "default: the originally predicted class).")
    max_samples: int = Field(default=2000, ge=1, description="At most this many texts per pair (seeded subset).")
    min_texts: int = Field(default=20, ge=1, description="Pairs with fewer texts to swap are shown but never decide "
                                                         "the headline or the status on their own.")
    n_resamples: int = Field(default=1000, ge=0, description="Bootstrap resamples for the score-shift intervals "
                                                             "(0: none; the flip rate's Wilson interval needs none).")
    ci_level: float = Field(default=0.95, gt=0, lt=1, description="Confidence level of the intervals.")


def encodes_identically(adapter: object, originals: list[str], swapped: list[str], batch_size: int) -> np.ndarray:
    """Per pair, whether the model's tokenizer turns the swapped text into exactly the original's inputs.

    Each original is encoded in the same batch as its swap, so padding is the same for both."""
    same = np.zeros(len(originals), dtype=bool)
    step = max(1, batch_size // 2)
    for start in range(0, len(originals), step):
        o, w = originals[start : start + step], swapped[start : start + step]
        enc = adapter.encode([t for pair in zip(o, w) for t in pair])  # type: ignore[attr-defined]
        rows = np.ones(len(o), dtype=bool)
        for v in enc.values():
            v = v.detach().cpu()
            rows &= (v[0::2] == v[1::2]).reshape(len(o), -1).all(1).numpy()
        same[start : start + len(o)] = rows
    return same


def default_terms() -> dict[str, dict[str, list[str]]]:
    text = resources.files("audit.fairness").joinpath("identity_terms.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def load_terms(cfg: CounterfactualConfig) -> dict[str, dict[str, list[str]]]:
    if cfg.terms is not None:
        terms, source = cfg.terms, "checks.fairness.counterfactual_text.terms"
    elif cfg.terms_file:
        path = Path(cfg.terms_file)
        if not path.is_file():
            raise InputError(f"terms_file {cfg.terms_file!r} of fairness.counterfactual_text does not exist.")
        terms, source = safe_yaml(path.read_text(encoding="utf-8"), cfg.terms_file), cfg.terms_file
    else:
        terms, source = default_terms(), "identity_terms.yaml"
    if cfg.axes:
        unknown = sorted(set(cfg.axes) - set(terms))
        if unknown:
            raise InputError(f"axes {unknown} of fairness.counterfactual_text are not in {source}; known: {sorted(terms)}.")
        terms = {a: terms[a] for a in cfg.axes}
    for axis, groups in terms.items():
        lengths = {g: len(w) for g, w in groups.items()}
        if len(groups) < 2 or len(set(lengths.values())) != 1:
            raise InputError(f"identity terms axis {axis!r} in {source} needs at least two groups with word lists of "
                             f"equal length (aligned by position); got {lengths}.")
    return terms


@register_check("fairness.counterfactual_text")
class CounterfactualText(Check):
    """Prediction flip rate and score shift when identity terms in the texts are swapped."""

    category = "fairness"
    title = "Counterfactual identity-term swaps (text)"
    needs = ("raw_text",)
    input_kinds = ("text",)
    Config = CounterfactualConfig
    metric_names = ("counterfactual_flip_rate", "counterfactual_score_shift", "counterfactual_abs_score_shift")
    default_thresholds = {"counterfactual_flip_rate": ThresholdSpec(max=0.05, level="warn")}

    def run(self, ctx: AuditContext) -> CheckOutput:
        cfg: CounterfactualConfig = self.config  # type: ignore[assignment]
        adapter = ctx.adapter
        if adapter.input_kind != "text":
            raise SkipCheck(f"counterfactual identity-term swaps apply to text models; this model's input is "
                            f"{adapter.input_kind}.")
        texts = ctx.dataset().inputs
        if not isinstance(texts, list):
            raise SkipCheck("the eval inputs are not raw text (token ids cannot be swapped word by word).")
        terms = load_terms(cfg)
        k = len(ctx.class_names)
        probs = ctx.probs()
        pred = probs.argmax(1)
        rng = ctx.rng(self.id)
        level = cfg.ci_level if cfg.n_resamples else None
        ci_text = (f"{cfg.ci_level:.0%} percentile bootstrap over the swapped texts, {cfg.n_resamples} resamples"
                   if cfg.n_resamples else "no interval (n_resamples = 0)")
        wilson_text = f"{cfg.ci_level:.0%} Wilson score interval"
        z = float(norm.ppf(0.5 + cfg.ci_level / 2))
        tokenized = adapter.capabilities.tokenizer
        n_same = n_swapped = 0  # swapped texts encoding identically to their original / all swapped texts
        metrics: list[Metric] = []
        rows: list[list] = []
        examples: list[list] = []
        scorer = TextScorer(adapter, ctx.batch_size)  # a swapped text repeated in the data is scored once
        used: set[int] = set()  # evaluation rows swapped in at least one pair: the rows the check used
        for axis, groups in terms.items():
            for a, words_a in groups.items():
                for b, words_b in groups.items():
                    if a == b:
                        continue
                    pattern, mapping = swapper(words_a, words_b)
                    idx = np.array([i for i, t in enumerate(texts) if pattern.search(t)], dtype=np.int64)
                    if idx.size > cfg.max_samples:
                        idx = np.sort(rng.choice(idx, cfg.max_samples, replace=False))
                    label = f"{axis}:{a}->{b}"
                    if idx.size == 0:
                        rows.append([axis, a, b, 0, 0, None, None, None])
                        continue
                    swapped = [swap(texts[i], pattern, mapping) for i in idx]
                    n_swapped += idx.size
                    if tokenized:  # identical model inputs are no evidence either way: leave them out
                        same = encodes_identically(adapter, [texts[i] for i in idx], swapped, ctx.batch_size)
                        n_same += int(same.sum())
                        idx, swapped = idx[~same], [t for t, s in zip(swapped, same) if not s]
                        if idx.size == 0:
                            rows.append([axis, a, b, 0, int(same.sum()), None, None, None])
                            metrics.extend(Metric(name=name, group=label, value=None, n=0, higher_is_better=False,
                                                  method=f"undefined: all {same.size} swapped texts encode identically "
                                                         "to their original (the swapped words are unknown to the "
                                                         "tokenizer)") for name in self.metric_names)
                            continue
                    else:
                        same = np.zeros(idx.size, dtype=bool)
                    used.update(idx.tolist())
                    cf = torch.softmax(torch.from_numpy(scorer.logits(swapped)), 1).numpy()
                    if cfg.positive_class is not None and cfg.positive_class >= k:
                        raise InputError(f"The 'positive_class' parameter of fairness.counterfactual_text must be "
                                         f"below {k}. Got {cfg.positive_class} instead.")
                    cls = (np.full(idx.size, cfg.positive_class if cfg.positive_class is not None else 1)
                           if k == 2 or cfg.positive_class is not None else pred[idx])
                    flip = (cf.argmax(1) != pred[idx]).astype(np.float64)
                    shift = cf[np.arange(idx.size), cls] - probs[idx, cls]
                    stats = {"counterfactual_flip_rate": flip, "counterfactual_score_shift": shift,
                             "counterfactual_abs_score_shift": np.abs(shift)}
                    for name, v in stats.items():
                        if name == "counterfactual_flip_rate":  # a proportion: Wilson, never a degenerate [0, 0]
                            lo, hi = wilson_interval(int(v.sum()), v.size, z)
                            lvl, how = cfg.ci_level, wilson_text
                        else:
                            reps = [v[r].mean(axis=1) for r in bootstrap_index_chunks(v.size, cfg.n_resamples, rng)]
                            lo, hi = percentile_interval(np.concatenate(reps), cfg.ci_level) if reps else (None, None)
                            lvl, how = level, ci_text
                        metrics.append(Metric(name=name, group=label, value=float(v.mean()), ci_low=lo, ci_high=hi,
                                              ci_level=lvl if lo is not None else None, n=int(idx.size),
                                              higher_is_better=False,
                                              method=f"{name.replace('_', ' ')} when {a} terms are replaced by their "
                                                     f"aligned {b} terms ({axis}); {how}"))
                    rows.append([axis, a, b, int(idx.size), int(same.sum()), round(float(flip.mean()), 6),
                                 round(float(shift.mean()), 6), round(float(np.abs(shift).mean()), 6)])
                    for j in np.flatnonzero(flip)[:3]:
                        examples.append([label, texts[idx[j]][:200], swapped[j][:200]])
        if not metrics:
            raise SkipCheck("no eval text contains any identity term of the configured lists; nothing to swap.")
        left_out = (f"{n_same} of {n_swapped} swapped texts encode identically to their original (the swapped words "
                    "are unknown to the tokenizer) and were left out" if n_same else "")
        small = sorted({f"{m.group} (n={m.n})" for m in metrics if (m.n or 0) < cfg.min_texts})
        worst_pair: dict[str, str | None] = {}
        for name in self.metric_names:
            cands = [m for m in metrics if m.name == name and (m.n or 0) >= cfg.min_texts]
            worst_pair[name] = None
            if cands:
                worst = max(cands, key=lambda m: abs(m.value))
                worst_pair[name] = worst.group
                metrics.append(worst.model_copy(update={"group": None,
                                                        "method": f"worst pair ({worst.group}): " + worst.method}))
            else:
                metrics.append(Metric(name=name, value=None, n=0, higher_is_better=False,
                                      method=f"undefined: no pair of groups has at least min_texts={cfg.min_texts} "
                                             "texts to swap" + (f"; {left_out}" if left_out else "")))
        head = {m.name: m for m in metrics if m.group is None}
        per_pair = [m for m in metrics if m.name == "counterfactual_flip_rate" and m.group]
        evidence = [
            Table(title="Counterfactual swaps per pair of groups",
                  columns=["axis", "from", "to", "n", "encode identically", "flip rate", "mean score shift",
                           "mean |score shift|"], rows=rows,
                  caption="n: eval texts containing a term of the 'from' group whose swap changes the model's input; "
                          "encode identically: swapped texts the tokenizer turns into the original's input ids (left "
                          "out); n = 0 rows had nothing to swap."),
            Figure(kind="bar", title="Prediction flip rate per swap",
                   data={"labels": [f"{m.group} (n={m.n})" for m in per_pair], "values": [m.value for m in per_pair],
                         "ci_low": [m.ci_low for m in per_pair], "ci_high": [m.ci_high for m in per_pair],
                         "ylabel": "flip rate"},
                   caption=wilson_text),
        ]
        if examples:
            evidence.append(Table(title="Examples of flipped predictions", columns=["swap", "original", "counterfactual"],
                                  rows=examples[:20]))
        fr = head["counterfactual_flip_rate"]
        if fr.value is None and n_same == n_swapped:
            summary = f"No flip rate: all {left_out}."
        elif fr.value is None:
            summary = (f"Too few texts mention identity terms to judge: every pair has fewer than min_texts="
                       f"{cfg.min_texts} texts ({', '.join(small[:4])}); per-pair results are shown.")
        else:
            flip_pair = worst_pair["counterfactual_flip_rate"]
            ci = (f", {fr.ci_level:.0%} CI {fr.ci_low:.1%}–{fr.ci_high:.1%}"
                  if fr.ci_low is not None and fr.ci_level is not None else "")
            summary = (f"Swapping identity terms flips up to {fr.value:.1%} of predictions ({flip_pair}, n={fr.n}{ci}); "
                       f"largest mean |score shift| {head['counterfactual_abs_score_shift'].value:.3f}.")
        if left_out and not (fr.value is None and n_same == n_swapped):
            summary += f" {left_out[0].upper()}{left_out[1:]}."
        limitations = [
            "Word lists are short and English-only; a swap can produce ungrammatical or implausible text "
            "(e.g. 'her' maps to one of 'him'/'his').",
            "Only texts that mention a group are tested; the result says nothing about implicit signals."]
        if left_out:
            limitations.append(f"{left_out[0].upper()}{left_out[1:]}: a change the model cannot see is no evidence.")
        if small:
            limitations.append(f"Pairs with fewer than min_texts={cfg.min_texts} texts are shown but do not decide "
                               f"the result: {', '.join(small[:10])}.")
        return CheckOutput(
            summary=summary,
            metrics=metrics, evidence=evidence, dataset="eval", n_samples=len(used),
            method=("Whole-word, case-insensitive replacement of each group's terms by the aligned terms of the other "
                    "group, every ordered pair of groups per axis; the model scores both texts in batches."),
            limitations=limitations)
