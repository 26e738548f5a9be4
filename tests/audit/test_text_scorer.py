"""The memoising text scorer: each unique text reaches the model once per check and model state, the
numbers equal an uncached run, the cache stays within its memory bound, and the randomised model of
the sanity check is scored by itself, never answered from the original model's cache."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch

from audit import explain_text as T
from audit.attacks import char_edit_attack
from audit.checks import adversarial, counterfactual, explanations
from audit.checks.adversarial import AdversarialConfig, AdversarialRobustness
from audit.checks.counterfactual import CounterfactualConfig, CounterfactualText
from audit.checks.explanations import Explanations, ExplanationsConfig
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.text_scorer import TextScorer
from models.adapter import HFTextAdapter
from tiny_text import KeywordTextAdapter, sentences, tiny_bert

pytestmark = pytest.mark.usefixtures("one_thread")


def count_texts(adapter: object) -> Counter:
    """Make ``adapter.logits`` (one batch) record every text it scores; returns the record."""
    seen: Counter = Counter()
    batch = type(adapter).logits.__get__(adapter)  # the class's method, bound to this very object

    def logits(inputs: Sequence[str]) -> torch.Tensor:
        seen.update(inputs)
        seen["<batches>"] += 1
        seen["<largest batch>"] = max(seen["<largest batch>"], len(inputs))
        return batch(inputs)

    adapter.logits = logits  # type: ignore[method-assign]
    return seen


class CountingBert(HFTextAdapter):
    """The tiny BERT, recording every text its model scores in ``self.seen``."""

    def logits(self, inputs: Sequence[str]) -> torch.Tensor:
        self.seen.update(inputs)
        return super().logits(inputs)


def counted_bert(monkeypatch: pytest.MonkeyPatch) -> tuple[CountingBert, list[Counter]]:
    """A counting tiny BERT, and the records of the randomised copies the sanity check makes of it
    (each copy gets its own record: ``copy.copy`` would otherwise share the original's)."""
    model, tok = tiny_bert()
    bert = CountingBert(model, tok, device=torch.device("cpu"))
    bert.seen = Counter()
    made: list[Counter] = []
    original: Callable = T.randomized_adapter

    def randomized(adapter: object, seed: int = 0) -> object:
        clone = original(adapter, seed)
        clone.seen = Counter()
        made.append(clone.seen)
        return clone

    monkeypatch.setattr(T, "randomized_adapter", randomized)
    return bert, made


def warm(ctx: AuditContext, seen: Counter) -> AuditContext:
    """The context's own predictions on the eval set, made before the check (they are not the check's work)."""
    ctx.probs()
    seen.clear()
    return ctx


def scored(seen: Counter) -> Counter:
    return Counter({t: c for t, c in seen.items() if not t.startswith("<")})


def _ctx(adapter: object, texts: list[str], y: np.ndarray, batch_size: int = 64) -> AuditContext:
    ds = AuditDataset(name="eval", inputs=texts, target=y, class_names=None, sensitive_features=None, feature_names=None,
                      input_kind="text", path="mem", format="csv", sha256="0")
    return AuditContext(adapter, {"eval": ds}, seed=0, batch_size=batch_size)  # type: ignore[arg-type]


def uncached(monkeypatch: pytest.MonkeyPatch, *modules: object) -> None:
    for module in modules:
        monkeypatch.setattr(module, "TextScorer", functools.partial(TextScorer, cache=False))


def test_each_unique_text_reaches_the_model_once_in_batches_of_batch_size() -> None:
    adapter = KeywordTextAdapter()
    seen = count_texts(adapter)
    scorer = TextScorer(adapter, batch_size=3)
    texts = ["good", "bad", "good", "a good", "the", "bad bad", "a", "good"]
    first = scorer.logits(texts)
    ref = KeywordTextAdapter()  # the same model, not counted
    np.testing.assert_array_equal(first, ref.predict_logits(texts).numpy())  # row order kept, repeats included
    again = scorer.probs(["the", "good", "bad bad"])
    np.testing.assert_array_equal(again, torch.softmax(ref.predict_logits(["the", "good", "bad bad"]), 1).numpy())
    assert set(scored(seen).values()) == {1} and len(scored(seen)) == 6  # 6 unique texts, each once
    assert seen["<batches>"] == 2 and seen["<largest batch>"] == 3  # 6 unique texts in batches of 3
    assert (scorer.asked, scorer.scored) == (11, 6)


def test_the_cache_stays_within_its_memory_bound_and_rescores_what_it_dropped() -> None:
    adapter = KeywordTextAdapter()
    seen = count_texts(adapter)
    scorer = TextScorer(adapter, batch_size=64, max_bytes=4000)
    texts = [f"good {'a ' * i}bad {'good ' * (i % 3)}" for i in range(200)]
    out = scorer.logits(texts)
    np.testing.assert_array_equal(out, KeywordTextAdapter().predict_logits(texts).numpy())
    assert 0 < scorer.cached_bytes <= 4000 and 0 < len(scorer) < 200
    kept = len(scorer)
    scorer.logits(texts[:1])  # the oldest entry was dropped: scored again, not answered wrongly
    assert scored(seen)[texts[0]] == 2 and scored(seen)[texts[-1]] == 1
    assert len(scorer) <= kept


def test_text_explanations_are_identical_with_and_without_the_cache() -> None:
    adapter = KeywordTextAdapter()
    texts = ["good movie but bad plot good", "bad bad good", "the good", "a"]
    target = np.array([1, 0, 1, 0])
    results = []
    for cache in (True, False):
        s = TextScorer(adapter, 4, cache=cache)
        lime = T.lime_text(s, texts, target, mask_token="...", n_samples=64, seed=3)
        shap_values, base, fx = T.kernel_shap(s, texts, target, mask_token="...", n_samples=40, seed=3)
        curves = T.deletion_insertion(s, texts, target, shap_values, "...", n_steps=4)
        results.append((lime, shap_values, base, fx, curves, s.scored, s.asked))
    (lime, sv, base, fx, curves, n_cached, asked), (lime0, sv0, base0, fx0, curves0, n_uncached, _) = results
    for a, b in zip(lime + sv, lime0 + sv0):
        np.testing.assert_array_equal(a, b)
    for a, b in zip((base, fx, *curves), (base0, fx0, *curves0)):
        np.testing.assert_array_equal(a, b)
    assert n_uncached == asked and n_cached < asked / 3  # most texts these methods ask for are repeats


def test_the_explanations_check_scores_each_text_once_and_matches_an_uncached_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    texts = sentences(20, seed=2)
    y = np.zeros(20, dtype=np.int64)
    cfg = ExplanationsConfig(methods=["lime", "kernel_shap"], max_samples=4, n_lime_samples=48, n_kernel_samples=48,
                             curve_steps=4)
    bert, made = counted_bert(monkeypatch)
    cached = Explanations(cfg).run(warm(_ctx(bert, texts, y), bert.seen))
    # LIME, KernelSHAP and the curves share one cache per model state; the randomised copy has its own
    assert set(bert.seen.values()) == {1} and set(made[0].values()) == {1}
    uncached(monkeypatch, explanations)
    plain = Explanations(cfg).run(warm(_ctx(bert, texts, y), bert.seen))
    assert max(bert.seen.values()) > 1  # the same work without the cache repeats texts
    got = {(m.name, m.group): m.value for m in cached.metrics}
    want = {(m.name, m.group): m.value for m in plain.metrics}
    assert got.keys() == want.keys()
    for key, value in want.items():  # the batches differ (padding): equal to float32 rounding
        assert (got[key] is None) == (value is None)
        if value is not None:
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_the_randomised_model_is_scored_by_itself_not_from_the_original_models_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    texts = sentences(20, seed=3)
    bert, made = counted_bert(monkeypatch)
    cfg = ExplanationsConfig(methods=["lime", "kernel_shap"], max_samples=3, n_lime_samples=32, n_kernel_samples=32,
                             curve_steps=4)
    out = Explanations(cfg).run(warm(_ctx(bert, texts, np.zeros(20, dtype=np.int64)), bert.seen))
    rand = made[0]
    # Same seeds, same masked texts: the randomised model must itself score the texts LIME and KernelSHAP
    # asked the original about (a cache shared across model states would answer them with the original's scores).
    assert len(rand) > 12 and set(rand) <= set(bert.seen)
    sims = [m.value for m in out.metrics if m.name == "randomization_similarity"]
    assert sims and all(v is not None and v < 0.999 for v in sims)


class WordModel(KeywordTextAdapter):
    """The keyword model with a per-text score that depends on every character (no ties, every edit counts)."""

    def logits(self, inputs: Sequence[str]) -> torch.Tensor:
        base = super().logits(inputs)
        return base + torch.tensor([[0.0, (sum(map(ord, t)) % 97) / 500.0] for t in inputs])


def test_the_character_edit_search_scores_each_proposal_once_and_finds_the_same_edits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["a good film", "good", "dull and good", "good good bad", "the good plot", "bad"]
    y = np.array([1, 1, 1, 1, 1, 0])
    adapter = WordModel()
    seen = count_texts(adapter)
    cfg = AdversarialConfig(text_edit_budget=3, text_candidates=24)
    cached = AdversarialRobustness(cfg).run(warm(_ctx(adapter, texts, y, batch_size=16), seen))
    assert set(scored(seen).values()) == {1}
    uncached(monkeypatch, adversarial)
    plain = AdversarialRobustness(cfg).run(warm(_ctx(adapter, texts, y, batch_size=16), seen))
    assert max(scored(seen).values()) > 1  # without the cache the search scores texts again
    assert [(m.name, m.value) for m in cached.metrics] == [(m.name, m.value) for m in plain.metrics]
    assert cached.evidence[0].rows == plain.evidence[0].rows
    # and the search itself, called with the scorer or with the bare model, returns the same texts
    bare = lambda batch: torch.softmax(adapter.predict_logits(batch), 1).numpy()  # noqa: E731
    adv, edits, _ = char_edit_attack(TextScorer(adapter, 4).probs, texts, y, seed=5)
    adv_bare, edits_bare, _ = char_edit_attack(bare, texts, y, seed=5)
    assert adv == adv_bare and edits.tolist() == edits_bare.tolist() and edits.sum() > 0


def test_counterfactual_swaps_score_repeated_texts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["he is good", "he is good", "she is bad", "he was bad", "she is good", "he is good"] * 4
    terms = {"gender": {"male": ["he"], "female": ["she"]}}
    adapter = WordModel()
    seen = count_texts(adapter)
    cfg = CounterfactualConfig(terms=terms, n_resamples=50, min_texts=1)
    y = np.zeros(len(texts), dtype=np.int64)
    cached = CounterfactualText(cfg).run(warm(_ctx(adapter, texts, y), seen))
    cf_texts = scored(seen)
    uncached(monkeypatch, counterfactual)
    plain = CounterfactualText(cfg).run(warm(_ctx(adapter, texts, y), seen))
    assert [(m.name, m.group, m.value, m.ci_low) for m in cached.metrics] == \
        [(m.name, m.group, m.value, m.ci_low) for m in plain.metrics]
    # "he is good" appears 12 times: its swap "she is good" is scored once, not 12 times
    assert set(cf_texts.values()) == {1} and scored(seen)["she is good"] == 12


def test_the_caches_traced_memory_stays_near_its_bound() -> None:
    import tracemalloc

    scorer = TextScorer(KeywordTextAdapter(), batch_size=2048, max_bytes=2**20)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, 20_000, 2048):  # 20,000 unique texts, made here and kept only by the cache
            scorer.logits([f"good movie number {i} with a plot" for i in range(start, min(start + 2048, 20_000))])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The bound counts keys, rows and a per-entry overhead; what Python really holds (tracemalloc) stays
    # within 1.5× of it (unbounded, these texts would hold about 5.5 MiB).
    assert held < 1.5 * scorer.max_bytes, held
    assert 0 < len(scorer) < 20_000
