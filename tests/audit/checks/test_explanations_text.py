"""Text explanations: word attributions against Captum and brute-force Shapley values, LIME against a
direct call of the lime package, word-level faithfulness on known cases, and the check end to end."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from audit import explain_text as T
from audit.checks.explanations import Explanations, ExplanationsConfig
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import SkipCheck
from models.adapter import HFTextAdapter
from tiny_text import KeywordTextAdapter, sentences, tiny_bert

TEXTS = ["good movie!", "the bad plots", "a great great movie, awful plot"]
TARGET = np.array([0, 1, 1])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bert() -> HFTextAdapter:
    model, tok = tiny_bert()
    return HFTextAdapter(model, tok, device=torch.device("cpu"))


def _ctx(adapter: object, texts: list[str], y: np.ndarray) -> AuditContext:
    ds = AuditDataset(name="eval", inputs=texts, target=y, class_names=None, sensitive_features=None, feature_names=None,
                      input_kind="text", path="mem", format="csv", sha256="0")
    return AuditContext(adapter, {"eval": ds}, seed=0, batch_size=64)  # type: ignore[arg-type]


def test_words_masking_and_token_to_word_map(bert: HFTextAdapter) -> None:
    assert T.word_spans("good movie, awful!") == [(0, 4), (5, 10), (12, 17)]
    assert T.mask_words("good movie, awful!", T.word_spans("good movie, awful!"), np.array([True, False, True]),
                        "[MASK]") == "good [MASK], awful!"
    words = T.token_words(bert, ["the bad plots!"], bert.encode(["the bad plots!"]))
    # [CLS] the bad plot ##s ! [SEP]: "plots" is two word pieces of word 2; "!" is no word.
    assert words.tolist() == [[-1, 0, 1, 2, 2, -1, -1]]
    assert T.mask_token_of(bert) == "[MASK]" and T.mask_token_of(KeywordTextAdapter()) == "..."


def test_integrated_gradients_on_embeddings_matches_captum_layer_ig(bert: HFTextAdapter) -> None:
    from captum.attr import LayerIntegratedGradients

    words, delta, gap = T.embedding_attributions(bert, TEXTS, TARGET, "integrated_gradients", n_steps=16,
                                                 baseline_token_id=bert.tokenizer.mask_token_id)
    # The reference: Captum's LayerIntegratedGradients on BERT's word-embedding layer, over token ids.
    enc = bert.encode(TEXTS)
    base_ids = enc["input_ids"].clone()
    word_of = T.token_words(bert, TEXTS, enc)
    base_ids[torch.from_numpy(word_of >= 0)] = bert.tokenizer.mask_token_id

    def forward(ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        return bert.model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits

    lig = LayerIntegratedGradients(forward, bert.model.get_input_embeddings())
    ref = lig.attribute(enc["input_ids"], baselines=base_ids, target=torch.from_numpy(TARGET), n_steps=16,
                        additional_forward_args=(enc["attention_mask"], enc["token_type_ids"])).sum(-1).detach().numpy()
    for i, w in enumerate(words):
        expected = np.zeros(len(w))
        np.add.at(expected, word_of[i][word_of[i] >= 0], ref[i][word_of[i] >= 0])
        np.testing.assert_allclose(w, expected, rtol=1e-4, atol=1e-6)
    # Completeness: the convergence delta is small next to f(x) - f(baseline).
    assert float(np.mean(delta) / np.mean(gap)) < 0.05


def test_kernel_shap_over_words_is_exact_shapley_and_efficient(bert: HFTextAdapter) -> None:
    values, base, fx = T.kernel_shap(bert, TEXTS, TARGET, mask_token="[MASK]", n_samples=256, seed=0)
    np.testing.assert_allclose([v.sum() for v in values], fx - base, atol=1e-5)  # SHAP efficiency
    text, t = TEXTS[2], 1
    spans = T.word_spans(text)
    m = len(spans)
    masks = np.array(list(itertools.product([False, True], repeat=m)))
    out = T.predict_texts(bert, [T.mask_words(text, spans, k, "[MASK]") for k in masks], output="logits")[:, t]
    value = {tuple(k): v for k, v in zip(masks.tolist(), out)}
    phi = np.zeros(m)
    for k in masks.tolist():
        for i in range(m):
            if not k[i]:
                with_i = list(k)
                with_i[i] = True
                s = sum(k)
                phi[i] += math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) * (value[tuple(with_i)] - value[tuple(k)])
    np.testing.assert_allclose(values[2], phi, atol=1e-5)  # 2**6 - 2 coalitions: enumerated, so exact


def test_lime_text_matches_a_direct_lime_call_and_is_seeded() -> None:
    from lime.lime_text import LimeTextExplainer

    adapter = KeywordTextAdapter()
    texts = ["good movie but bad plot good", "bad bad good"]
    target = np.array([1, 0])
    ours = T.lime_text(adapter, texts, target, mask_token="...", n_samples=64, seed=3)
    again = T.lime_text(adapter, texts, target, mask_token="...", n_samples=64, seed=3)
    for a, b in zip(ours, again):
        np.testing.assert_array_equal(a, b)
    ref = LimeTextExplainer(bow=False, mask_string="...", feature_selection="none", random_state=3)
    for text, t, mine in zip(texts, target, ours):
        probs = lambda batch: torch.softmax(adapter.logits(list(batch)), 1).numpy()  # noqa: E731
        exp = ref.explain_instance(text, probs, labels=(int(t),), num_features=len(text.split()), num_samples=64)
        expected = np.zeros(len(mine))
        for j, w in exp.local_exp[int(t)]:
            expected[j] = w
        np.testing.assert_allclose(mine, expected, rtol=1e-6, atol=1e-9)
    # Known answer: only "good" and "bad" move the keyword model.
    assert set(np.argsort(-np.abs(ours[0]))[:3]) == {0, 3, 5}


def test_word_deletion_curve_known_case() -> None:
    adapter = KeywordTextAdapter()
    text = ["good the good a"]
    good_first = [np.array([1.0, 0.0, 1.0, 0.0])]
    dele, ins = T.deletion_insertion(adapter, text, np.array([1]), good_first, "...", n_steps=4)
    p = lambda s: 1 / (1 + np.exp(-s))  # noqa: E731
    np.testing.assert_allclose(dele[:, 0], [p(4), p(2), p(0), p(0), p(0)], rtol=1e-6)
    np.testing.assert_allclose(ins[:, 0], [p(0), p(2), p(4), p(4), p(4)], rtol=1e-6)


def test_check_on_a_black_box_text_model() -> None:
    texts = sentences(30, seed=1)
    ctx = _ctx(KeywordTextAdapter(), texts, np.array([int(t.count("good") > t.count("bad")) for t in texts]))
    out = Explanations(ExplanationsConfig(max_samples=4, n_lime_samples=48, n_kernel_samples=64, curve_steps=4)).run(ctx)
    ranking = out.evidence[0]
    assert {r[1] for r in ranking.rows} == {"lime", "kernel_shap"}
    skipped = {r[0]: r[1] for t in out.evidence if t.title == "Methods not run" for r in t.rows}
    assert "does not expose" in skipped["integrated_gradients"] and "not run on text" in skipped["shap"]
    head = {m.name: m.value for m in out.metrics if m.group is None}
    assert head["shap_efficiency_error"] < 1e-6
    assert head["faithfulness_gap"] > 0.1  # the keywords are found: masking them first changes the prediction
    assert any("randomisation sanity check was not run" in s for s in out.limitations)
    # Not run is never zero: no method failed a check that did not run, and the summary does not say so.
    sanity = next(m for m in out.metrics if m.name == "methods_failing_sanity")
    assert sanity.value is None and "not measured" in sanity.method and "does not expose" in sanity.method
    assert "did not run" in out.summary and "no method failed" not in out.summary


def test_check_on_tiny_bert_is_seeded_and_highlights_tokens(bert: HFTextAdapter) -> None:
    texts = sentences(20, seed=2)
    cfg = ExplanationsConfig(methods=["integrated_gradients", "saliency", "lime", "kernel_shap"], max_samples=3, n_steps=24,
                             n_lime_samples=32, n_kernel_samples=32, curve_steps=4)
    first = Explanations(cfg).run(_ctx(bert, texts, np.zeros(20, dtype=np.int64)))
    second = Explanations(cfg).run(_ctx(bert, texts, np.zeros(20, dtype=np.int64)))
    assert [(m.name, m.group, m.value) for m in first.metrics] == [(m.name, m.group, m.value) for m in second.metrics]
    assert {r[1] for r in first.evidence[0].rows} == {"integrated_gradients", "saliency", "lime", "kernel_shap"}
    assert all(r[-1] in ("pass", "FAIL") for r in first.evidence[0].rows)  # the randomisation check ran
    highlights = next(e for e in first.evidence if e.title == "Token highlights")
    assert highlights.kind == "text_highlights" and highlights.data["signed"]
    first_row = highlights.data["rows"][0]
    assert first_row["method"] == "integrated_gradients" and first_row["words"] == texts[first_row["row"]].split()[:40]
    assert len(first_row["scores"]) == len(first_row["words"])
    head = {m.name: m.value for m in first.metrics if m.group is None}
    assert head["ig_completeness_error"] < 0.2 and head["shap_efficiency_error"] < 1e-5


def test_text_model_on_token_ids_is_skipped_with_the_reason(tiny_mlp: torch.nn.Module) -> None:
    from models.adapter import TorchAdapter

    adapter = TorchAdapter(tiny_mlp, input_kind="text", device=torch.device("cpu"))
    ds = AuditDataset(name="eval", inputs=np.zeros((4, 4), dtype=np.int64), target=None, class_names=None,
                      sensitive_features=None, feature_names=None, input_kind="text", path="mem", format="npz", sha256="0")
    with pytest.raises(SkipCheck, match="token ids"):
        Explanations().run(AuditContext(adapter, {"eval": ds}))


def test_token_offsets_hook_of_a_word_level_adapter(bert: HFTextAdapter) -> None:
    from models.adapter import ModelAdapter

    class WordLevel(ModelAdapter):  # reports its own token spans: one token per word, then padding
        def logits(self, inputs: list[str]) -> torch.Tensor:  # not called: token_words reads only the spans
            raise NotImplementedError

        def token_offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
            return [T.word_spans(t) + [(0, 0)] * (3 - len(T.word_spans(t))) for t in texts]

    encoded = {"input_ids": torch.zeros(2, 3, dtype=torch.long)}
    assert T.token_words(WordLevel(), ["good, bad", "movie"], encoded).tolist() == [[0, 1, -1], [0, -1, -1]]


def _word_vocab_adapter(arch: str = "transformer"):  # noqa: ANN202 - a TokenizedTextAdapter
    from models.adapter import TokenizedTextAdapter, TorchAdapter
    from models.datasets import WordVocab
    from models.zoo import create_model

    from tiny_text import WORDS

    vocab = WordVocab.build(WORDS, min_count=1, max_len=8)
    torch.manual_seed(0)
    model = create_model(arch, vocab_size=len(vocab), n_classes=2).eval()
    return TokenizedTextAdapter(TorchAdapter(model, input_kind="sequence", device=torch.device("cpu")), vocab.encode), vocab


def test_word_vocabulary_adapter_tokens_align_with_words() -> None:
    adapter, vocab = _word_vocab_adapter()
    texts = ["Good movie, the plot!", "awful zzz great"]
    words = T.token_words(adapter, texts, adapter.encode(texts))
    # one token per word; the unknown word "zzz" is token <unk>; padding is no word
    assert words.tolist() == [[0, 1, 2, 3, -1, -1, -1, -1], [0, 1, 2, -1, -1, -1, -1, -1]]


def test_check_on_a_tokenising_word_vocabulary_adapter() -> None:
    adapter, _ = _word_vocab_adapter()
    texts = sentences(20, seed=4)
    cfg = ExplanationsConfig(methods=["integrated_gradients", "kernel_shap"], max_samples=3, n_steps=64,
                             n_kernel_samples=32, curve_steps=4)
    out = Explanations(cfg).run(_ctx(adapter, texts, np.zeros(20, dtype=np.int64)))
    rows = {r[1]: r for r in out.evidence[0].rows}
    assert set(rows) == {"integrated_gradients", "kernel_shap"}
    assert all(r[-1] in ("pass", "FAIL") for r in rows.values())  # the randomisation check ran on a rebuilt adapter
    head = {m.name: m.value for m in out.metrics if m.group is None}
    assert head["ig_completeness_error"] < 0.1
