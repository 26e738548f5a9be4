"""fairness.counterfactual_text with a deterministic word-scoring text model whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.checks.counterfactual import CounterfactualConfig, CounterfactualText, default_terms, swap, swapper
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import InputError, SkipCheck
from audit.runner import judge
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
    assert judge(out, {}, CounterfactualText.default_thresholds)[0] == "warn"


def test_unbiased_words_do_not_flip() -> None:
    out = CounterfactualText(CounterfactualConfig(terms={"x": {"a": ["cat"], "b": ["dog"]}}, n_resamples=50)).run(
        make_ctx(["cat is good", "the Cat was bad"]))
    assert all(x.value == 0 for x in out.metrics)
    assert judge(out, {}, CounterfactualText.default_thresholds)[0] == "pass"


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
