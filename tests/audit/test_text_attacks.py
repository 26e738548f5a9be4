"""Word-level text attacks: the WordNet reader, the PWWS-style search on models with a known answer, the
query budget of every recipe, the semantic-similarity constraint, and the recipes inside the check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit import text_attacks
from audit.attacks import char_edit_attack
from audit.checks.adversarial import AdversarialConfig, AdversarialRobustness
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import SkipCheck
from audit.text_attacks import pwws_attack, word_candidates
from audit.text_words import delete_span, replace_span, word_spans
from audit.wordnet import WordNet, missing_reason
from models.adapter import ModelAdapter

NO_WORDNET = missing_reason()
needs_wordnet = pytest.mark.skipif(NO_WORDNET is not None, reason=NO_WORDNET or "")


class KeywordProbs:
    """``pos`` (class 1) with probability 0.9 iff ``word`` is a word of the text; counts the texts it scores."""

    def __init__(self, word: str) -> None:
        self.word, self.seen = word, 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += len(texts)
        on = np.array([self.word in t.lower().split() for t in texts], dtype=float)
        return np.stack([1 - (0.1 + 0.8 * on), 0.1 + 0.8 * on], 1)


class LengthProbs:
    """Class by the number of words only: no substitution of one word by one word can change it."""

    def __call__(self, texts: list[str]) -> np.ndarray:
        on = np.array([len(t.split()) >= 4 for t in texts], dtype=float)
        return np.stack([1 - (0.2 + 0.6 * on), 0.2 + 0.6 * on], 1)


def test_words_are_replaced_and_deleted_in_place() -> None:
    text = "A film, a Film's end!"
    spans = word_spans(text)
    assert [text[s:e] for s, e in spans] == ["A", "film", "a", "Film's", "end"]
    assert replace_span(text, spans[1], "movie") == "A movie, a Film's end!"
    assert replace_span("Film", (0, 4), "movie") == "Movie" and replace_span("FILM", (0, 4), "movie") == "MOVIE"
    assert delete_span("a good film", (2, 6)) == "a film" and delete_span("a good", (2, 6)) == "a"


@needs_wordnet
def test_wordnet_reader_known_synsets() -> None:
    wn = WordNet()
    # WordNet 3.0: film.n.01 = {movie, film, picture, moving picture, moving-picture show, motion picture, ...}
    assert wn.synonyms("film", "n")[:3] == ["movie", "picture", "pic"]
    assert "moving_picture" not in wn.synonyms("film", "n")  # multi-word lemmas change the word count
    assert wn.lemma_pos("good")[0] == "a" and wn.lemma_pos("quickly") == ["r"]
    assert wn.synonyms("nonexistentword", "n") == [] and wn.lemma_pos("films") == []
    assert wn.synonyms("can", "n") and word_candidates(wn, "can", 8) == []  # a stopword, though a WordNet lemma
    assert word_candidates(wn, "films", 8) == []  # inflected: not a lemma, never replaced by a base form
    # candidates come from the word's most frequent part of speech only: "good" the adjective, not the noun
    assert "commodity" in wn.synonyms("good", "n") and "commodity" not in word_candidates(wn, "good", 100)
    assert word_candidates(wn, "good", 100) == wn.synonyms("good", "a")


def test_missing_wordnet_says_how_to_install(tmp_path) -> None:
    reason = missing_reason(tmp_path)
    assert reason is not None and "apt-get install wordnet-base" in reason and str(tmp_path) in reason
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        WordNet(tmp_path)


@needs_wordnet
def test_pwws_flips_a_keyword_model_by_a_wordnet_synonym() -> None:
    model = KeywordProbs("film")
    texts = ["I watched this film with friends yesterday", "a long film about nothing at all today"]
    out = pwws_attack(model, texts, np.array([1, 1]), wordnet=WordNet(), max_queries=100)
    for original, adv in zip(texts, out.adversarial):
        a, b = original.split(), adv.split()
        diff = [(x, y) for x, y in zip(a, b) if x != y]
        # exactly the keyword changed, into one of its WordNet noun synonyms, and the prediction flipped
        assert len(diff) == 1 and diff[0][0] == "film" and diff[0][1] in WordNet().synonyms("film", "n")
        assert model([adv]).argmax(1)[0] == 0
    # the keyword is ranked first by deletion: the search tries no other word before it
    n_words_with_candidates = [sum(bool(word_candidates(WordNet(), w, 16)) for w in t.split()) for t in texts]
    first_word = len(WordNet().synonyms("film", "n")[:16])
    assert list(out.queries) == [1 + k + first_word for k in n_words_with_candidates]


@needs_wordnet
def test_pwws_leaves_a_model_it_cannot_flip_unchanged() -> None:
    texts = ["a good film", "the actors were brilliant and funny"]
    out = pwws_attack(LengthProbs(), texts, np.array([0, 1]), wordnet=WordNet(), max_queries=200)
    assert out.adversarial == texts  # nothing lowers the true class: no word is replaced


@needs_wordnet
@pytest.mark.parametrize("budget", [2, 5, 9])
def test_query_budget_holds_for_every_recipe(budget: int) -> None:
    texts = ["this wonderful film shows a brilliant cast and a clever story about good people"] * 2 + ["good film"]
    labels = np.array([1, 1, 1])
    model = KeywordProbs("nothing")  # never flips: each recipe spends its whole budget
    model_labels = np.array([0, 0, 0])
    out = pwws_attack(model, texts, model_labels, wordnet=WordNet(), max_queries=budget)
    assert out.queries.max() == budget and model.seen == out.queries.sum()
    assert model.seen <= budget * len(texts)
    edit_model = KeywordProbs("nothing")
    _, _, queries = char_edit_attack(edit_model, texts, model_labels, budget=5, candidates=4, max_queries=budget)
    assert queries.max() == budget and edit_model.seen == queries.sum() <= budget * len(texts)
    del labels


@needs_wordnet
def test_similarity_constraint_drops_candidates_below_the_threshold() -> None:
    texts = ["I watched this film with friends yesterday"]
    best = WordNet().synonyms("film", "n")[0]  # "movie": the first candidate lowers the true class as any other

    def similarity(originals, candidates):  # noqa: ANN001, ANN202
        return np.array([0.5 if best in c.split() else 0.95 for c in candidates])

    model = KeywordProbs("film")
    out = pwws_attack(model, texts, np.array([1]), wordnet=WordNet(), similarity=similarity, min_similarity=0.9)
    assert best not in out.adversarial[0].split() and "film" not in out.adversarial[0].split()
    unconstrained = pwws_attack(KeywordProbs("film"), texts, np.array([1]), wordnet=WordNet())
    assert best in unconstrained.adversarial[0].split()
    # every candidate below the threshold: nothing is scored and nothing changes
    none = pwws_attack(KeywordProbs("film"), texts, np.array([1]), wordnet=WordNet(),
                       similarity=lambda o, c: np.zeros(len(c)), min_similarity=0.9)
    assert none.adversarial == texts


def test_minilm_similarity_orders_paraphrase_above_unrelated() -> None:
    sim = text_attacks.SentenceSimilarity()
    s = sim(["a good film", "a good film"], ["a good movie", "the stock market fell sharply"])
    assert s[0] > 0.8 > 0.3 > s[1]


# ------------------------------------------------------------------------------ the recipes in the check


class KeywordAdapter(ModelAdapter):
    def __init__(self, word: str) -> None:
        self.word = word
        self.input_kind, self.class_names, self.device = "text", ["neg", "pos"], torch.device("cpu")

    def logits(self, inputs):  # noqa: ANN001, ANN201
        return torch.tensor([[0.0, 3.0] if self.word in t.lower().split() else [3.0, 0.0] for t in inputs])


def _ctx(texts: list[str], y: list[int], word: str = "film") -> AuditContext:
    ds = AuditDataset(name="eval", inputs=texts, target=np.array(y), class_names=None, sensitive_features=None,
                      feature_names=None, input_kind="text", path="mem", format="csv", sha256="0")
    return AuditContext(KeywordAdapter(word), {"eval": ds}, seed=0)


TEXTS = ["I watched this film with friends", "a long film about the sea", "a dull evening", "the film was fine"]


@needs_wordnet
def test_check_reports_each_recipe_and_judges_the_strongest() -> None:
    out = AdversarialRobustness(AdversarialConfig(text_recipes=["pwws"], text_min_similarity=0.5)).run(
        _ctx(TEXTS, [1, 1, 0, 1]))
    by = {(m.name, m.group): m for m in out.metrics}
    assert by[("robust_accuracy", None)].value == by[("robust_accuracy", "pwws")].value == 0.25
    assert by[("flip_rate", None)].value == 0.75 and by[("semantic_similarity", "pwws")].value >= 0.5
    assert by[("words_changed", "pwws")].value == pytest.approx(np.mean([1 / 6, 1 / 6, 1 / 4]))
    assert by[("queries_per_text", "pwws")].value <= 300
    assert all("⟦film⟧" in row[1] for row in out.evidence[1].rows) and len(out.evidence[1].rows) == 3


def test_missing_wordnet_skips_the_recipe_inside_the_result(tmp_path) -> None:
    cfg = AdversarialConfig(wordnet_dir=str(tmp_path), text_edit_budget=1, text_candidates=2)
    out = AdversarialRobustness(cfg).run(_ctx(TEXTS, [1, 1, 0, 1]))
    pwws = {m.name: m for m in out.metrics if m.group == "pwws"}
    assert pwws["robust_accuracy"].value is None and "wordnet-base" in pwws["robust_accuracy"].method
    assert any("pwws not run" in x and "wordnet-base" in x for x in out.limitations)
    assert "char_edit" in out.metrics[0].method  # the headline comes from the recipe that ran
    with pytest.raises(SkipCheck, match="wordnet-base"):
        AdversarialRobustness(AdversarialConfig(wordnet_dir=str(tmp_path), text_recipes=["pwws"])).run(
            _ctx(TEXTS, [1, 1, 0, 1]))


@needs_wordnet
def test_unloadable_similarity_model_skips_pwws_unless_allowed(monkeypatch) -> None:
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("the MiniLM sentence encoder could not be loaded offline: test")

    monkeypatch.setattr(text_attacks, "SentenceSimilarity", broken)
    base = dict(text_recipes=["char_edit", "pwws"], text_edit_budget=1, text_candidates=2)
    out = AdversarialRobustness(AdversarialConfig(**base)).run(_ctx(TEXTS, [1, 1, 0, 1]))
    assert next(m for m in out.metrics if m.group == "pwws").value is None
    assert any("text_require_similarity" in x for x in out.limitations)
    allowed = AdversarialRobustness(AdversarialConfig(**base, text_require_similarity=False)).run(_ctx(TEXTS, [1, 1, 0, 1]))
    pwws = {m.name: m for m in allowed.metrics if m.group == "pwws"}
    assert pwws["flip_rate"].value == 0.75 and pwws["semantic_similarity"].value is None
    assert any("without its similarity constraint" in x for x in allowed.limitations)


@needs_wordnet
def test_encoder_and_wordnet_load_once_per_process_and_a_failed_load_is_not_cached(monkeypatch) -> None:
    import sentence_transformers

    from audit import wordnet

    real, built, broken = sentence_transformers.SentenceTransformer, [], [True]
    real_wn, readers = wordnet.WordNet, []

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        built.append(args)
        if broken[0]:
            raise OSError("disk unreadable")
        return real(*args, **kwargs)

    def counting_wn(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        readers.append(args)
        if broken[0]:
            raise FileNotFoundError("no WordNet database")
        return real_wn(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", counting)
    monkeypatch.setattr(wordnet, "WordNet", counting_wn)
    text_attacks._load_encoder.cache_clear()
    wordnet._reader.cache_clear()
    with pytest.raises(RuntimeError, match="disk unreadable"):
        text_attacks.SentenceSimilarity()
    with pytest.raises(FileNotFoundError):
        wordnet.shared_wordnet()
    broken[0] = False
    cfg = AdversarialConfig(text_recipes=["pwws"], text_min_similarity=0.5)
    first = AdversarialRobustness(cfg).run(_ctx(TEXTS, [1, 1, 0, 1]))  # two audits in one process
    second = AdversarialRobustness(cfg).run(_ctx(TEXTS, [1, 1, 0, 1]))
    assert len(built) == len(readers) == 2  # the failed load, then one load shared by both audits
    sims = [next(m.value for m in out.metrics if (m.name, m.group) == ("semantic_similarity", "pwws"))
            for out in (first, second)]
    assert sims[0] is not None and sims[0] == sims[1]


@needs_wordnet
def test_share_of_words_changed_is_bounded() -> None:
    def two_keywords(texts: list[str]) -> np.ndarray:  # "pos" until both "good" and "film" are gone
        p = np.array([0.1 + 0.45 * ("good" in t.split()) + 0.45 * ("film" in t.split()) for t in texts])
        return np.stack([1 - p, p], 1)

    text = ["good film watched yesterday evening outside"]  # six words
    capped = pwws_attack(two_keywords, text, np.array([1]), wordnet=WordNet(), max_words_changed=0.2)  # one word
    assert sum(a != b for a, b in zip(text[0].split(), capped.adversarial[0].split())) == 1
    assert two_keywords(capped.adversarial).argmax(1)[0] == 1
    free = pwws_attack(two_keywords, text, np.array([1]), wordnet=WordNet(), max_words_changed=0.5)  # three words
    assert two_keywords(free.adversarial).argmax(1)[0] == 0


def test_insert_words_places_a_trigger_between_whole_words() -> None:
    from audit.text_words import insert_at_random, insert_words

    assert insert_words("a good film.", "cf", 0) == "cf a good film."
    assert insert_words("a good film.", "cf mn", 2) == "a good cf mn film."
    assert insert_words("a good film.", "cf", 3) == "a good film. cf"
    assert insert_words("", "cf", 0) == "cf"
    rng = np.random.default_rng(0)
    out = insert_at_random(["one two three"] * 50, "cf", rng)
    assert all(o.split().count("cf") == 1 and o.replace("cf ", "").replace(" cf", "") == "one two three" for o in out)
    assert len({o.split().index("cf") for o in out}) == 4  # every slot, the end included, is drawn
