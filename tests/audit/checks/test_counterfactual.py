"""fairness.counterfactual_text with a deterministic word-scoring text model whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.checks.counterfactual import CounterfactualConfig, CounterfactualText, default_terms, swap, swapper
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import InputError, SkipCheck
from audit.runner import judge, run_check
from models.adapter import ModelAdapter


class WordScorer(ModelAdapter):
    """Binary text model: logit of class 1 = sum of word weights; biased against 'she'."""

    WEIGHTS = {"good": 2.0, "bad": -2.0, "she": -3.0}

    def __init__(self) -> None:
        self.class_names = ["neg", "pos"]
        self.device = torch.device("cpu")
        self.input_kind = "text"

    def logits(self, inputs: list[str]) -> torch.Tensor:
        z = [sum(self.WEIGHTS.get(w.strip(".,").lower(), 0.0) for w in t.split()) for t in inputs]
        return torch.tensor([[0.0, v] for v in z], dtype=torch.float32)


def make_ctx(texts: list[str], input_kind: str = "text") -> AuditContext:
    ds = AuditDataset(name="eval", inputs=texts, target=None, class_names=None, sensitive_features=None,
                      feature_names=None, input_kind="text", path="mem", format="csv", sha256="0")
    adapter = WordScorer()
    adapter.input_kind = input_kind
    return AuditContext(adapter, {"eval": ds}, seed=0, batch_size=8)


TERMS = {"gender": {"female": ["she", "her"], "male": ["he", "his"]}}
# 10 texts with 'he' and positive (z=2): swapping to 'she' gives z=-1 -> flip. 10 with 'He ... bad' (z=-2):
# to 'she' z=-5, no flip. 20 with 'she good' (z=-1): to 'he' z=2 -> flip. 5 with no terms.
TEXTS = ["he is good"] * 10 + ["He was bad."] * 10 + ["she is good"] * 20 + ["nothing here"] * 5


def sig(z: float) -> float:
    return 1 / (1 + np.exp(-z))


def test_known_flip_rates_and_shifts() -> None:
    out = CounterfactualText(CounterfactualConfig(terms=TERMS, n_resamples=200)).run(make_ctx(TEXTS))
    m = {(x.name, x.group): x for x in out.metrics}
    f2m, m2f = m[("counterfactual_flip_rate", "gender:female->male")], m[("counterfactual_flip_rate", "gender:male->female")]
    assert (f2m.value, f2m.n) == (1.0, 20)
    assert (m2f.value, m2f.n) == (0.5, 20)
    assert m2f.ci_low < 0.5 < m2f.ci_high
    shift = m[("counterfactual_score_shift", "gender:male->female")].value
    assert shift == pytest.approx(0.5 * (sig(-1) - sig(2)) + 0.5 * (sig(-5) - sig(-2)), abs=1e-6)
    assert m[("counterfactual_score_shift", "gender:female->male")].value == pytest.approx(sig(2) - sig(-1), abs=1e-6)
    assert m[("counterfactual_flip_rate", None)].value == 1.0
    assert "(gender:female->male, n=20" in out.summary  # the pair that drove the headline
    assert judge(out, {}, CounterfactualText.default_thresholds)[0] == "warn"


def test_unbiased_words_do_not_flip() -> None:
    out = CounterfactualText(CounterfactualConfig(terms={"x": {"a": ["cat"], "b": ["dog"]}}, n_resamples=50,
                                                  min_texts=1)).run(make_ctx(["cat is good", "the Cat was bad"]))
    assert all(x.value == 0 for x in out.metrics)
    assert judge(out, {}, CounterfactualText.default_thresholds)[0] == "pass"


def test_pairs_below_min_texts_never_decide() -> None:
    # 2 texts flip 100% (she -> he), but 2 < min_texts: shown per pair, headline undefined, not judged (warn, not fail).
    out = CounterfactualText(CounterfactualConfig(terms=TERMS, n_resamples=0, min_texts=5)).run(
        make_ctx(["she is good", "she is good"]))
    m = {(x.name, x.group): x for x in out.metrics}
    assert m[("counterfactual_flip_rate", "gender:female->male")].value == 1.0
    assert m[("counterfactual_flip_rate", None)].value is None
    assert "Too few texts" in out.summary
    fail = {"counterfactual_flip_rate": CounterfactualText.default_thresholds["counterfactual_flip_rate"].model_copy(
        update={"level": "fail"})}
    status, outcomes = judge(out, fail, {})
    assert status == "warn" and not outcomes[0].passed and "undefined for this data" in outcomes[0].note


def test_swap_keeps_case_and_whole_words() -> None:
    pattern, mapping = swapper(["she", "her"], ["he", "his"])
    assert swap("She said her shelf.", pattern, mapping) == "He said his shelf."
    terms = default_terms()
    assert {"gender", "religion"} <= set(terms)
    assert all(len({len(w) for w in g.values()}) == 1 for g in terms.values())


def test_bad_input() -> None:
    with pytest.raises(SkipCheck, match="text models"):
        CounterfactualText().run(make_ctx(TEXTS, input_kind="tabular"))
    with pytest.raises(SkipCheck, match="no eval text"):
        CounterfactualText(CounterfactualConfig(terms=TERMS)).run(make_ctx(["nothing here"]))
    with pytest.raises(InputError, match="equal length"):
        CounterfactualText(CounterfactualConfig(terms={"g": {"a": ["x", "y"], "b": ["z"]}})).run(make_ctx(TEXTS))
    with pytest.raises(InputError, match="not in"):
        CounterfactualText(CounterfactualConfig(axes=["nope"])).run(make_ctx(TEXTS))


def test_bad_input_from_a_check_stops_the_audit() -> None:
    """A config error a check finds is the user's to fix (exit 2), not a crashed check in a report."""
    with pytest.raises(InputError, match="not in"):
        run_check(CounterfactualText(CounterfactualConfig(axes=["nope"])), make_ctx(TEXTS))


def bert_ctx(texts: list[str]) -> AuditContext:
    """The tiny BERT of tests/assets/tiny_text.py: its 16-token vocabulary has no 'he' or 'she' ([UNK] both)."""
    from tiny_text import tiny_bert

    from models.adapter import HFTextAdapter

    model, tok = tiny_bert(layers=1)
    ds = AuditDataset(name="eval", inputs=texts, target=None, class_names=None, sensitive_features=None,
                      feature_names=None, input_kind="text", path="mem", format="csv", sha256="0")
    return AuditContext(HFTextAdapter(model, tok, device=torch.device("cpu")), {"eval": ds}, seed=0, batch_size=8)


def test_swaps_the_tokenizer_cannot_see_are_no_evidence() -> None:
    """'he good movie' and 'she good movie' are the same input ids: 0 flips of them is not a pass, it is no data."""
    texts = ["he good movie"] * 20 + ["she good movie"] * 20
    out = CounterfactualText(CounterfactualConfig(terms=TERMS, n_resamples=50)).run(bert_ctx(texts))
    m = {(x.name, x.group): x for x in out.metrics}
    assert m[("counterfactual_flip_rate", None)].value is None
    assert m[("counterfactual_flip_rate", "gender:male->female")].value is None
    assert m[("counterfactual_flip_rate", "gender:male->female")].n == 0
    assert "40 of 40 swapped texts encode identically to their original" in out.summary
    assert "40 of 40" in m[("counterfactual_flip_rate", None)].method
    assert out.n_samples == 0
    assert judge(out, {}, CounterfactualText.default_thresholds)[0] != "pass"


def test_only_swaps_the_tokenizer_sees_enter_the_rate() -> None:
    # 'good'->'bad' changes the ids (both in the vocabulary); 'he'->'she' does not ([UNK] both): 10 of 30 left out.
    texts = ["good movie"] * 20 + ["he movie"] * 10
    out = CounterfactualText(CounterfactualConfig(terms={"x": {"a": ["good", "he"], "b": ["bad", "she"]}},
                                                  n_resamples=20)).run(bert_ctx(texts))
    pair = {(x.name, x.group): x for x in out.metrics}[("counterfactual_flip_rate", "x:a->b")]
    assert pair.n == 20
    assert "10 of 30 swapped texts encode identically" in out.summary
    assert out.n_samples == 20


def test_flip_rate_interval_is_wilson_at_the_configured_level() -> None:
    # 0 flips of 20: Wilson 95% [0, 0.161], not the bootstrap's degenerate [0, 0].
    out = CounterfactualText(CounterfactualConfig(terms={"x": {"a": ["cat"], "b": ["dog"]}}, n_resamples=100)).run(
        make_ctx(["cat is good"] * 20))
    fr = {(x.name, x.group): x for x in out.metrics}[("counterfactual_flip_rate", None)]
    assert (fr.value, fr.ci_low, fr.ci_level) == (0.0, 0.0, 0.95)
    assert fr.ci_high == pytest.approx(0.1611, abs=1e-3)
    assert "95% CI 0.0%–16.1%" in out.summary
    # 10 of 20 flips at 80%: Wilson with z = 1.2816 -> [0.3623, 0.6377]; the summary names the level.
    out = CounterfactualText(CounterfactualConfig(terms=TERMS, n_resamples=0, ci_level=0.8)).run(make_ctx(TEXTS))
    m2f = {(x.name, x.group): x for x in out.metrics}[("counterfactual_flip_rate", "gender:male->female")]
    assert (m2f.ci_low, m2f.ci_high) == pytest.approx((0.3623, 0.6377), abs=1e-3)
    assert "80% CI" in out.summary and "95%" not in out.summary
