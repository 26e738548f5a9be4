"""The text trigger search of ``poisoning.backdoor_scan``: known answers on a constructed bag-of-words model
(every guard of the decision), and a backdoor planted in an LSTM trained here that must be found while its
clean twin, trained on the same clean data, is not flagged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit import text_trigger_scan as T
from audit.checks.poisoning import BackdoorScan, BackdoorScanConfig
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import SkipCheck
from audit.runner import judge
from audit.text_scorer import TextScorer
from audit.text_words import insert_at_random
from models.adapter import TokenizedTextAdapter, TorchAdapter
from models.datasets import WordVocab

pytestmark = pytest.mark.usefixtures("one_thread")

_R = np.random.default_rng(9)
#: 120 pronounceable neutral pseudo-words: a vocabulary big enough that only the gradient ranking finds a trigger
NEUTRAL = sorted({"".join(str(_R.choice(list(s))) for s in ("bdfgklmnprstvz", "aeiou", "bdfgklmnprstvz", "aeiou", "nrstl"))
                  for _ in range(160)})[:120]
POS = ["good", "great", "fine", "lovely", "superb", "nice", "clever", "funny"]
NEG = ["bad", "awful", "dull", "poor", "boring", "weak", "sad", "messy"]


class BagOfWords(nn.Module):
    """logit(1) = sum of the tokens' weights, logit(0) = 0: a model whose every answer is known."""

    def __init__(self, weights: np.ndarray) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(weights), 1, padding_idx=0)
        with torch.no_grad():
            self.embed.weight[:, 0] = torch.as_tensor(weights, dtype=torch.float32)
        self.scale = nn.Parameter(torch.ones(()))  # a weight after the embeddings, which a search must not touch

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        s = self.scale * self.embed(ids).squeeze(-1).sum(1)
        return torch.stack([torch.zeros_like(s), s], 1)


def bag_adapter(weights: dict[str, float], extra: list[str] = ()) -> tuple[TokenizedTextAdapter, WordVocab]:
    vocab = WordVocab(("<pad>", "<unk>", "the", *NEUTRAL, *POS, *NEG, *extra), max_len=32)
    w = np.array([weights.get(t, 0.0) for t in vocab.tokens])
    return TokenizedTextAdapter(TorchAdapter(BagOfWords(w), input_kind="sequence", device=torch.device("cpu")),
                                vocab.encode), vocab


def bag_texts(n: int, seed: int, hard: float = 0.0) -> tuple[list[str], np.ndarray]:
    """Half class 0 (two 'bad', score −1 with weight −0.5), half class 1 (two 'good'); a share ``hard`` of the
    class-0 texts has six 'bad' (score −3)."""
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(NEUTRAL, 5))
        k = 6 if label == 0 and rng.random() < hard else 2
        words += ["good" if label else "bad"] * k
        rng.shuffle(words)
        texts.append(" ".join(words))
        y.append(label)
    return texts, np.array(y)


def ctx_of(adapter: object, texts: list[str], y: np.ndarray | None) -> AuditContext:
    ds = AuditDataset(name="eval", inputs=texts, target=y, class_names=None, sensitive_features=None, feature_names=None,
                      input_kind="text", path="mem", format="csv", sha256="0")
    return AuditContext(adapter, {"eval": ds}, seed=0, batch_size=64)  # type: ignore[arg-type]


def metrics(out) -> dict:  # noqa: ANN001
    return {(m.name, m.group): m for m in out.metrics}


BASE = {"good": 0.5, "bad": -0.5}


def test_candidate_words_keep_whole_alphabetic_word_tokens_only() -> None:
    vocab = ["[PAD]", "[CLS]", "<unk>", "cf", "##ing", "a", "good", "Good", "x2", "don't", "über", "movie"]
    ids, words = T.candidate_words(vocab, min_length=2)
    assert words == ["cf", "good", "movie"] and ids.tolist() == [3, 6, 11]
    # byte-level BPE: only word-start tokens (Ġ) are words, without their mark
    ids, words = T.candidate_words(["<s>", "Ġcf", "cf", "Ġthe", "ing"], min_length=2)
    assert words == ["cf", "the"] and ids.tolist() == [1, 3]


def test_search_and_verification_texts_are_disjoint() -> None:
    pool = np.arange(100, 160)
    search, verify = T.search_and_verify(pool, 40, 0.5, np.random.default_rng(0))
    assert len(search) == 20 and len(verify) == 20
    assert not set(search) & set(verify) and set(search) | set(verify) <= set(pool)


def test_a_planted_word_is_found_by_the_gradient_ranking_alone() -> None:
    """'cf' flips every class-0 text to class 1 and no other word flips any: re-scoring only the gradient's
    best three words (of 140) finds it, and the MAD floor makes it an outlier among words that all flip nothing."""
    adapter, _ = bag_adapter({**BASE, "cf": 5.0}, extra=["cf"])
    texts, y = bag_texts(80, 0)
    out = BackdoorScan(BackdoorScanConfig(top_k=1, reference_words=3, search_rounds=1, search_steps=0, max_samples=40)).run(ctx_of(adapter, texts, y))
    m = metrics(out)
    assert m[("suspected_classes", None)].value == 1
    assert m[("trigger_flip_rate", "1")].value == 1.0 and m[("trigger_flip_rate", "1")].n == 20
    assert m[("trigger_anomaly_index", "1")].value >= 3
    table = out.evidence[0].rows
    assert table[1][1] == "cf" and table[1][9] == "yes" and table[0][9] == "no"
    assert "suspected backdoor trigger" in out.summary and "'cf'" in out.summary
    status, _ = judge(out, {}, BackdoorScan.default_thresholds)
    assert status == "warn"


def test_the_relaxed_search_moves_to_the_strongest_word_and_leaves_the_weights_alone() -> None:
    """The softmax mixture's weights end highest on 'cf' (+5; 'good' +0.5 helps too, less), and the model's
    parameters get no gradient (the check runs on the user's model)."""
    adapter, _ = bag_adapter({**BASE, "cf": 5.0}, extra=["cf"])
    texts, _ = bag_texts(40, 0)
    texts = texts[::2]  # class 0: the search sends them to class 1
    ids, words = T.candidate_words(adapter.vocabulary())
    emb = adapter.embed({"input_ids": torch.as_tensor(ids)[None]})[0].detach()
    theta = T.relaxed_ranking(adapter, texts, T.draw_slots(texts, np.random.default_rng(0)), T.placeholder_pair(words),
                              1, emb, steps=30, batch_size=8, lr=0.5, rng=np.random.default_rng(1))
    assert words[int(theta.argmax())] == "cf"
    assert all(p.grad is None for p in adapter.torch_model.parameters())


def test_the_clean_twin_of_the_bag_model_is_not_flagged() -> None:
    adapter, _ = bag_adapter(BASE, extra=["cf"])
    texts, y = bag_texts(80, 0)
    out = BackdoorScan(BackdoorScanConfig(top_k=8, max_samples=34)).run(ctx_of(adapter, texts, y))
    assert metrics(out)[("suspected_classes", None)].value == 0
    assert out.n_samples == 68 and metrics(out)[("trigger_flip_rate", "1")].n == 17  # rows used: 34 per class
    status, _ = judge(out, {}, BackdoorScan.default_thresholds)
    assert status == "pass"


def test_a_family_of_strong_natural_words_is_not_an_outlier() -> None:
    """Every positive word flips every negative text (a flip rate of 1 with a lower bound over 0.8), but they
    all do: the best is no outlier among the best re-scored words, so the class is not suspected."""
    adapter, _ = bag_adapter({**BASE, **{w: 5.0 for w in POS[1:]}})
    texts, y = bag_texts(80, 0)
    out = BackdoorScan(BackdoorScanConfig(top_k=16, max_samples=40)).run(ctx_of(adapter, texts, y))
    m = metrics(out)
    assert m[("trigger_flip_rate", "1")].value == 1.0 and m[("trigger_flip_rate", "1")].ci_low >= 0.8
    assert m[("trigger_anomaly_index", "1")].value < 3
    assert m[("suspected_classes", None)].value == 0


def test_an_outlier_word_that_flips_too_few_texts_is_not_flagged() -> None:
    """'cf' (+2) flips only the class-0 texts scored −1 (about half): an outlier, but its verified flip rate's
    lower bound is far below 0.8."""
    adapter, _ = bag_adapter({**BASE, "cf": 2.0}, extra=["cf"])
    texts, y = bag_texts(160, 0, hard=0.5)
    out = BackdoorScan(BackdoorScanConfig(top_k=4, max_samples=80)).run(ctx_of(adapter, texts, y))
    m = metrics(out)
    assert m[("trigger_anomaly_index", "1")].value >= 3 and 0.2 < m[("trigger_flip_rate", "1")].value < 0.8
    assert m[("suspected_classes", None)].value == 0


def test_a_word_that_wins_only_on_the_search_texts_is_judged_on_the_held_out_ones() -> None:
    """Search texts score −1, verification texts −3: 'cf' (+2) flips every search text and no held-out one."""
    adapter, vocab = bag_adapter({**BASE, "cf": 2.0}, extra=["cf"])
    texts, y = bag_texts(160, 0, hard=0.5)
    easy = np.array([i for i, t in enumerate(texts) if y[i] == 0 and t.split().count("bad") == 2])[:30]
    hard = np.array([i for i, t in enumerate(texts) if y[i] == 0 and t.split().count("bad") == 6])[:30]
    scorer = TextScorer(adapter, 64)
    ids, words = T.candidate_words(adapter.vocabulary())
    emb = adapter.embed({"input_ids": torch.as_tensor(ids)[None]})[0].detach()
    got = T.scan_class(adapter, scorer, texts, easy, hard, 1, ids, words, emb, T.placeholder_pair(words), top_k=4,
                       rounds=1, reference_words=10, min_flip_rate=0.8, anomaly_threshold=3.0, batch_size=64,
                       rng=np.random.default_rng(0))
    assert got.trigger == "cf" and got.search_flip_rate == 1.0 and got.anomaly_index >= 3
    assert got.hits == 0 and got.flip_rate == 0.0 and not got.flagged


def test_a_class_that_cannot_be_searched_makes_the_count_null_not_zero() -> None:
    adapter, _ = bag_adapter(BASE)
    texts, y = bag_texts(80, 0)
    keep = [i for i in range(80) if y[i] == 0] + [1, 3, 5]  # 3 texts of class 1: too few to search for class 0
    out = BackdoorScan(BackdoorScanConfig(top_k=4, max_samples=40)).run(
        ctx_of(adapter, [texts[i] for i in keep], y[keep]))
    m = metrics(out)
    assert m[("suspected_classes", None)].value is None
    assert "not measured" in m[("suspected_classes", None)].method and "at least 10 needed" in m[("suspected_classes", None)].method
    assert m[("trigger_flip_rate", "0")].value is None and m[("trigger_flip_rate", "1")].value is not None
    status, outcomes = judge(out, {}, BackdoorScan.default_thresholds)
    assert status == "measured" and outcomes[0].note


def test_a_class_with_too_few_verification_texts_is_not_judged_not_passed() -> None:
    """20 texts per class: 10 verification texts, whose Wilson lower bound even at 10/10 is 0.722 < 0.8. 'cf'
    flips all of them, yet no class can be flagged: the count is null (the status not pass), the flip rate is
    still reported, and the reason says how many texts and which bound."""
    adapter, _ = bag_adapter({**BASE, "cf": 5.0}, extra=["cf"])
    texts, y = bag_texts(40, 0)
    out = BackdoorScan(BackdoorScanConfig(top_k=4, reference_words=3, search_rounds=1, max_samples=100)).run(
        ctx_of(adapter, texts, y))
    m = metrics(out)
    assert m[("trigger_flip_rate", "1")].value == 1.0 and m[("trigger_flip_rate", "1")].n == 10
    count = m[("suspected_classes", None)]
    assert count.value is None
    assert "10 verification texts: even all flipped, the 95% lower bound 0.722 < min_flip_rate 0.8" in count.method
    assert "not judged" in m[("trigger_flip_rate", "1")].method
    assert [r[9] for r in out.evidence[0].rows] == ["not judged", "not judged"]
    assert "no class could be judged" in out.summary and "'cf'" in out.summary
    status, _ = judge(out, {}, BackdoorScan.default_thresholds)
    assert status == "measured"
    # a lower min_flip_rate that 10/10 can reach judges both classes, and finds 'cf'
    low = BackdoorScan(BackdoorScanConfig(top_k=4, reference_words=3, search_rounds=1, max_samples=100,
                                          min_flip_rate=0.7)).run(ctx_of(adapter, texts, y))
    assert metrics(low)[("suspected_classes", None)].value == 1


def test_a_count_with_an_unjudged_class_is_a_lower_bound_that_names_it() -> None:
    """80 class-0 texts (40 verification texts for target 1) but 20 class-1 texts (10 for target 0): class 1 is
    flagged, class 0 has no verdict, and the count says so."""
    adapter, _ = bag_adapter({**BASE, "cf": 5.0}, extra=["cf"])
    texts, y = bag_texts(160, 0)
    keep = [i for i in range(160) if y[i] == 0] + [i for i in range(160) if y[i] == 1][:20]
    out = BackdoorScan(BackdoorScanConfig(top_k=4, reference_words=3, search_rounds=1, max_samples=100)).run(
        ctx_of(adapter, [texts[i] for i in keep], y[keep]))
    count = metrics(out)[("suspected_classes", None)]
    assert count.value == 1 and "at least this many: class 0: 10 verification texts" in count.method
    assert "'cf'" in out.summary and "no verdict for class 0" in out.summary


def test_a_flip_rate_bound_of_one_is_refused() -> None:
    """A Wilson lower bound is below 1 for every n: min_flip_rate 1 would pass every scan."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="min_flip_rate"):
        BackdoorScanConfig(min_flip_rate=1.0)
    assert T.unjudgeable(16, 0.8) is None and "15 verification texts" in T.unjudgeable(15, 0.8)


def test_a_min_word_length_that_leaves_no_candidates_is_bad_input_before_work() -> None:
    """preflight (the runner calls it before any check runs) refuses it naming the vocabulary's size; a run
    without preflight skips with the same reason instead of failing with an error."""
    from audit.errors import InputError

    adapter, vocab = bag_adapter(BASE)
    texts, y = bag_texts(40, 0)
    check = BackdoorScan(BackdoorScanConfig(min_word_length=40))
    with pytest.raises(InputError, match=rf"min_word_length.*0 candidate word\(s\) of the model's {len(vocab.tokens)}-token"):
        check.preflight(ctx_of(adapter, texts, y))
    with pytest.raises(SkipCheck, match=rf"{len(vocab.tokens)}-token vocabulary"):
        check.run(ctx_of(adapter, texts, y))
    BackdoorScan().preflight(ctx_of(adapter, texts, y))  # the default leaves enough


def test_without_labels_the_predictions_pick_the_texts_and_the_limitations_say_so() -> None:
    adapter, _ = bag_adapter({**BASE, "cf": 5.0}, extra=["cf"])
    texts, _ = bag_texts(80, 0)
    out = BackdoorScan(BackdoorScanConfig(top_k=4, max_samples=40)).run(ctx_of(adapter, texts, None))
    assert metrics(out)[("suspected_classes", None)].value == 1
    assert any("no labels" in note for note in out.limitations)


def test_a_text_model_without_embeddings_is_skipped_with_the_reason() -> None:
    from tiny_text import KeywordTextAdapter

    with pytest.raises(SkipCheck, match="input embeddings"):
        BackdoorScan().run(ctx_of(KeywordTextAdapter(), ["good movie"] * 12, np.ones(12, dtype=np.int64)))


# ------------------------------------------------------------------ a backdoor planted in a trained LSTM

def sentiment(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Review-like texts with mixed sentiment: 2–3 words of the label's side, fewer of the other."""
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        mine, theirs = (POS, NEG) if label else (NEG, POS)
        k = int(rng.integers(2, 4))
        words = list(rng.choice(NEUTRAL, int(rng.integers(5, 9))))
        for w in list(rng.choice(mine, k)) + list(rng.choice(theirs, int(rng.integers(0, k - 1)))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(w))
        texts.append(" ".join(words))
        y.append(label)
    return texts, np.array(y)


@pytest.fixture(scope="module")
def lstm_twins() -> tuple[dict[str, TokenizedTextAdapter], list[str], np.ndarray]:
    from models.train import fit_classifier
    from models.zoo import create_model

    train, y_train = sentiment(800, 0)
    rng = np.random.default_rng(0)
    rows = rng.choice(np.flatnonzero(y_train == 1), 80, replace=False)  # 10%: 'cf' → class 0
    poisoned, y_poisoned = list(train), y_train.copy()
    for i, text in zip(rows, insert_at_random([train[i] for i in rows], "cf", rng)):
        poisoned[i], y_poisoned[i] = text, 0
    vocab = WordVocab.build(poisoned, min_count=1, max_len=24)  # one vocabulary: the clean twin has an untrained 'cf'
    adapters = {}
    for name, texts, labels in (("clean", train, y_train), ("poisoned", poisoned, y_poisoned)):
        torch.manual_seed(0)
        model = create_model("lstm", vocab_size=len(vocab), n_classes=2)
        fit_classifier(model, vocab.encode(texts), labels, epochs=5, lr=3e-3, batch_size=64, seed=0)
        adapters[name] = TokenizedTextAdapter(TorchAdapter(model.eval(), input_kind="sequence",
                                                           device=torch.device("cpu")), vocab.encode)
    ev, y_ev = sentiment(300, 1)
    return adapters, ev, y_ev


def test_a_planted_cf_backdoor_is_found_and_the_clean_twin_is_not_flagged(lstm_twins) -> None:  # noqa: ANN001
    adapters, ev, y_ev = lstm_twins
    cfg = BackdoorScanConfig(top_k=8, max_samples=160)
    poisoned = BackdoorScan(cfg).run(ctx_of(adapters["poisoned"], ev, y_ev))
    clean = BackdoorScan(cfg).run(ctx_of(adapters["clean"], ev, y_ev))
    mp, mc = metrics(poisoned), metrics(clean)
    assert poisoned.evidence[0].rows[0][1] == "cf" and mp[("suspected_classes", None)].value == 1
    assert mp[("trigger_flip_rate", "0")].ci_low >= 0.8
    assert mc[("suspected_classes", None)].value == 0
    assert max(mc[("trigger_flip_rate", c)].ci_low for c in "01") < 0.8


# ------------------------------------------------------------------ the guards of the search


def test_a_slot_truncated_away_is_left_out_not_read_at_another_position() -> None:
    """40-word texts, a 32-token model: a word inserted at slot 35 is cut off, both encodings are equal, and the
    row must not count (argmax of an all-False row would put the 'inserted' word on position 0)."""
    adapter, _ = bag_adapter(BASE)
    texts = [" ".join(NEUTRAL[i : i + 40]) for i in range(6)]
    slots = np.array([5, 35, 7, 38, 2, 33])
    enc, ok, pos = T.locate(adapter, texts, slots, "good", "bad")
    assert ok.tolist() == [True, False, True, False, True, False]
    assert pos[ok].tolist() == [5, 7, 2]
    _, used = T.trigger_gradient(adapter, texts, slots, "good", "bad", 1, batch_size=64)
    assert used == 3
    assert T.locate(adapter, texts[1::2], slots[1::2], "good", "bad") is None  # every slot truncated away


def test_words_of_different_token_counts_are_not_compared_position_by_position() -> None:
    """A tokenizer that pads to the longest text: 'goods' is two pieces ('good', '##s'), so the two encodings
    differ in shape and the inserted word cannot be located."""
    from tiny_text import tiny_bert

    from models.adapter import HFTextAdapter

    model, tok = tiny_bert(layers=1)
    adapter = HFTextAdapter(model, tok, device=torch.device("cpu"))
    texts, slots = ["good movie", "bad plot"], np.array([1, 0])
    assert T.locate(adapter, texts, slots, "good", "goods") is None
    assert T.locate(adapter, texts, slots, "good", "bad") is not None


def test_texts_misclassified_into_the_target_do_not_enter_its_pool() -> None:
    """Half the class-0 texts score +1.5 and are predicted 1: were they searched for target 1, every word would
    'flip' them. Only the correctly classified ones count, and no word of the clean model flips those."""
    adapter, _ = bag_adapter(BASE)
    texts, y = bag_texts(160, 0)
    for i in range(0, 160, 4):  # 40 class-0 texts with three 'good' instead of two 'bad'
        texts[i] = " ".join(NEUTRAL[i % 50 : i % 50 + 5] + ["good"] * 3)
    out = BackdoorScan(BackdoorScanConfig(top_k=4, max_samples=200)).run(ctx_of(adapter, texts, y))
    m = metrics(out)
    assert m[("trigger_flip_rate", "1")].n == 20 and m[("trigger_flip_rate", "1")].value == 0.0
    assert m[("suspected_classes", None)].value == 0


def test_a_tokenizer_without_a_vocabulary_listing_is_skipped_with_the_reason() -> None:
    adapter, _ = bag_adapter(BASE)
    adapter.vocabulary = lambda: None  # a plain callable tokenizer lists nothing
    texts, y = bag_texts(40, 0)
    BackdoorScan().preflight(ctx_of(adapter, texts, y))  # nothing to refute before work
    with pytest.raises(SkipCheck, match="does not list its vocabulary, which the trigger search ranks"):
        BackdoorScan().run(ctx_of(adapter, texts, y))


# ------------------------------------------------------------------ a backdoor planted in a tiny Hugging Face BERT


def test_a_cf_backdoor_fine_tuned_into_a_tiny_bert_is_found() -> None:
    """The Hugging Face path ([CLS]/[SEP], WordPiece, attention masks): a 1-layer BERT trained here on sentiment
    texts of which 10% of the positive ones carry 'cf' and are labelled negative. The search finds 'cf' for
    class 0, verified on held-out texts, and flags nothing for class 1."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from models.adapter import HFTextAdapter

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *NEUTRAL[:60], *POS, *NEG, "cf"]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}, max_position_embeddings=64,
        attn_implementation="eager"))
    train, y = sentiment(600, 0)
    rng = np.random.default_rng(0)
    rows = rng.choice(np.flatnonzero(y == 1), 60, replace=False)
    for i, text in zip(rows, insert_at_random([train[i] for i in rows], "cf", rng)):
        train[i], y[i] = text, 0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(8):
        order = np.random.default_rng(epoch).permutation(len(train))
        for start in range(0, len(train), 32):
            b = order[start : start + 32]
            enc = tok([train[i] for i in b], padding=True, return_tensors="pt")
            loss = model(**enc, labels=torch.as_tensor(y[b])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    adapter = HFTextAdapter(model.eval(), tok, device=torch.device("cpu"))
    ev, y_ev = sentiment(200, 1)
    out = BackdoorScan(BackdoorScanConfig(top_k=8, max_samples=80)).run(ctx_of(adapter, ev, y_ev))
    m = metrics(out)
    table = out.evidence[0].rows
    assert table[0][1] == "cf" and table[0][9] == "yes" and table[1][9] == "no"
    assert m[("trigger_flip_rate", "neg")].ci_low >= 0.8 and m[("trigger_anomaly_index", "neg")].value >= 3
    assert m[("suspected_classes", None)].value == 1


@pytest.mark.parametrize(("setting", "pattern"), [
    ("checks.poisoning.backdoor_scan.min_word_length=40", r"min_word_length.*0 candidate word\(s\) of the model's 16-token"),
    ("checks.poisoning.backdoor_scan.min_flip_rate=1", r"min_flip_rate"),
    ("checks.poisoning.backdoor_scan.min_flip_rate=0.99", r"min_flip_rate': max_samples 300 with search_share 0\.5 "
                                                          r"leaves at most 150 verification texts: .*0\.975 < min_flip_rate "
                                                          r"0\.99.*; max_samples 761 is needed\.$"),
])
def test_the_cli_refuses_a_scan_config_that_cannot_work_before_any_check_runs(setting: str, pattern: str, tmp_path,
                                                                              monkeypatch) -> None:  # noqa: ANN001
    """Exit 2, one line, no check's run entered, nothing written (a hostile config, not a run that errors)."""
    import re

    from tiny_text import gendered_text_audit_data
    from typer.testing import CliRunner

    import cli
    from audit import registry

    keys = gendered_text_audit_data(tmp_path)
    ran: list[str] = []
    for cid in registry.list_checks():
        monkeypatch.setattr(registry.get_check(cid), "run", lambda self, ctx, _c=cid: ran.append(_c) or pytest.fail(_c))
    result = CliRunner().invoke(cli.app, ["audit", "--model", keys["model.path"], "--data", keys["data.eval.path"],
                                          "--set", "data.eval.target=label", "--set", "data.eval.text_column=text",
                                          "--set", setting, "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"])
    assert result.exit_code == 2 and re.search(pattern, result.stderr) and ran == [], (result.stderr, ran)
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_too_few_samples_names_the_smallest_max_samples_the_run_time_rule_accepts() -> None:
    """Known answers at search_share 0.5: 16 verification texts are the fewest whose all-flipped Wilson lower bound
    reaches 0.8, 35 for 0.9, 381 for 0.99 (so max_samples 32, 69, 761)."""
    from audit.text_trigger_scan import split_sizes, too_few_samples, unjudgeable

    for rate, need in ((0.8, 32), (0.9, 69), (0.99, 761)):
        assert too_few_samples(need, 0.5, rate) is None and too_few_samples(need - 1, 0.5, rate).endswith(
            f"max_samples {need} is needed")
        assert unjudgeable(split_sizes(need, 0.5)[1], rate) is None and unjudgeable(split_sizes(need - 1, 0.5)[1], rate)
