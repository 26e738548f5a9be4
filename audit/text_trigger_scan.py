"""Trigger search for backdoors in text classifiers: ``poisoning.backdoor_scan`` on text models.

A text backdoor (BadNets on text, RIPPLe) makes a model send any input that contains a trigger word —
usually a rare token such as ``cf`` or ``mn`` — to the attacker's target class. The search asks, for
every class ``t``: is there one word of the model's vocabulary that, inserted anywhere in texts of the
other classes, sends almost all of them to ``t`` — far more of them than any other word does?

1. **Texts.** Texts whose true class (the prediction, without labels) is not ``t`` and that the model
   classifies correctly: a seeded sample of at most ``max_samples``, split into a *search* part and a
   disjoint *verification* part. Every text gets one seeded insertion slot (a uniformly drawn word
   boundary, :func:`audit.text_words.insert_at_random`'s rule) per part.
2. **Candidates.** The vocabulary's whole alphabetic word tokens (no ``##`` continuation pieces, no
   special tokens, at least ``min_word_length`` ASCII letters): each is one token when inserted as a word.
3. **First-order ranking** (HotFlip; Universal Adversarial Triggers): a placeholder word is inserted at
   the slots; the gradient ``g`` of the summed cross-entropy towards ``t`` with respect to the
   placeholder's input embedding ranks every candidate ``w`` by ``−g·e_w``, the first-order decrease of
   the loss when the placeholder is replaced by ``w`` — one backward pass over the search texts ranks
   the whole vocabulary.
   A learnt backdoor is often detected non-linearly (an attention head that fires on the trigger), so at
   the placeholder it can look weaker than a class's natural words: on a MiniLM sentiment model with a
   planted ``cf`` it ranked 8,047th of 21,719 words. In the first round a **relaxed search** therefore
   ranks the words too (DBS, PICCOLO): ``search_steps`` Adam steps on weights over all candidates, whose
   softmax mixes their embeddings into the inserted word's, towards the target; its best words are
   re-scored besides the gradient's (``cf`` came first, found and verified).
4. **Exact re-scoring.** The ``top_k`` best-ranked words are inserted at the same slots and scored by
   forward passes (batched, through :class:`audit.text_scorer.TextScorer`); a word's *search flip rate*
   is the share of search texts it sends to ``t``. The best word becomes the placeholder of the next
   round (``search_rounds``; a round whose best word does not change ends the search).
5. **Verification.** The best word's flip rate is measured again on the verification texts, at fresh
   slots: a word that won the search by chance (search over-fitting) does not keep its rate there.
6. **Decision against noise.** A class is flagged when the verified flip rate's Wilson 95% lower bound
   reaches ``min_flip_rate`` *and* the word is an outlier among all re-scored words: its MAD anomaly
   index (Neural Cleanse's rule, here over words instead of classes; the MAD floored at one text's
   share, ``1/n_search``, so that words that all flip nothing do not make every index 0) reaches
   ``anomaly_threshold``. A class whose verification texts are too few for the bound to reach ``min_flip_rate``
   even when every one flips (the Wilson lower bound of n/n is 0.80 only from n = 16 at 95%) is searched
   and its rates reported, but not judged: its part of the count of suspected classes is null, never 0.
   A clean sentiment model has natural strong words ("terrible") whose insertion
   flips some texts; they flip fewer, and so do their many near-synonyms, so neither condition alone
   decides.

Limits: one-word triggers made of one vocabulary token (a trigger spelled as several word pieces, a
phrase, a syntactic or style trigger is not searched); the ranking is first-order, so a trigger that
the linearisation ranks below ``top_k`` is missed; models without input embeddings (ONNX, black boxes)
are skipped, not searched by forward passes alone.

References
----------
Ebrahimi, Rao, Lowd, Dou. "HotFlip: White-Box Adversarial Examples for Text Classification", ACL 2018.
Wallace, Feng, Kandpal, Gardner, Singh. "Universal Adversarial Triggers for Attacking and Analyzing NLP",
EMNLP 2019. Kurita, Michel, Neubig. "Weight Poisoning Attacks on Pre-trained Models", ACL 2020.
Wang et al. "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks", S&P 2019.
Shen et al. "Constrained Optimization with Dynamic Bound-scaling for Effective NLP Backdoor Defense" (DBS),
ICML 2022. Liu et al. "PICCOLO: Exposing Complex Backdoors in NLP Transformer Models", S&P 2022.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from audit.poisoning import mad_anomaly_index
from audit.results import Metric, Table
from audit.stats import wilson_interval
from audit.text_scorer import TextScorer
from audit.text_words import insert_words, word_spans

#: Prefixes that mark a word-start token in byte-level BPE (RoBERTa, GPT-2) and SentencePiece vocabularies.
WORD_START_MARKS = ("Ġ", "▁")
#: Fewest texts of the other classes a target class needs (search and verification together).
MIN_TEXTS = 10


def candidate_words(vocab: Sequence[str], min_length: int = 2) -> tuple[np.ndarray, list[str]]:
    """Ids and spellings of the whole alphabetic word tokens of ``vocab`` (index = id).

    WordPiece ``##`` continuation pieces are dropped (``#`` is no letter); in a vocabulary that marks word starts (``Ġ``,
    ``▁``) only marked tokens are words and the mark is removed. Specials (``[CLS]``, ``<pad>``),
    punctuation, digits, non-ASCII letters and words shorter than ``min_length`` are dropped, and a
    spelling that repeats in another case keeps its first id.
    """
    marked = any(str(t)[:1] in WORD_START_MARKS for t in vocab)
    ids: list[int] = []
    words: list[str] = []
    seen: set[str] = set()
    for i, tok in enumerate(vocab):
        word = str(tok)
        if marked:
            if word[:1] not in WORD_START_MARKS:
                continue
            word = word[1:]
        if len(word) < min_length or not (word.isascii() and word.isalpha()) or word.lower() in seen:
            continue
        seen.add(word.lower())
        ids.append(i)
        words.append(word)
    return np.asarray(ids, dtype=np.int64), words


def search_and_verify(pool: np.ndarray, max_samples: int, search_share: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of at most ``max_samples`` of ``pool`` split into disjoint search and verification rows."""
    chosen = rng.permutation(pool)[:max_samples]
    n_search = split_sizes(len(chosen), search_share)[0]
    return chosen[:n_search], chosen[n_search:]


def split_sizes(n: int, search_share: float) -> tuple[int, int]:
    """How many of ``n`` sampled texts search and how many verify (at least one each)."""
    n_search = min(max(int(round(search_share * n)), 1), n - 1)
    return n_search, n - n_search


def too_few_samples(max_samples: int, search_share: float, min_flip_rate: float) -> str | None:
    """Why a class can never be judged even with all ``max_samples`` texts sampled (:func:`unjudgeable` of the
    verification texts they leave), naming the smallest ``max_samples`` that can be; ``None`` when it can be."""
    def short(m: int) -> str | None:
        return unjudgeable(split_sizes(m, search_share)[1], min_flip_rate)

    why = short(max_samples)
    if why is None:
        return None
    lo, hi = max_samples, max_samples * 2  # verification texts grow with max_samples and the bound with them
    while short(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if short(mid) is None else (mid, hi)
    return (f"max_samples {max_samples} with search_share {search_share:g} leaves at most {why}; max_samples {hi} "
            "is needed")


def draw_slots(texts: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """One seeded insertion slot per text, uniform over its word boundaries (end included)."""
    return np.asarray([int(rng.integers(0, len(word_spans(t)) + 1)) for t in texts], dtype=np.int64)


def inserted(texts: Sequence[str], slots: np.ndarray, word: str) -> list[str]:
    return [insert_words(t, word, int(s)) for t, s in zip(texts, slots)]


def locate(adapter: Any, texts: Sequence[str], slots: np.ndarray, word: str,
           other: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor] | None:
    """The encoded ``texts`` with ``word`` inserted at ``slots``, which rows hold it, and its token position in each.

    The inserted token is found by inserting ``other`` (another one-token word) at the same slots: the one
    position where the two encodings differ. Rows where they do not differ in exactly one position (the slot
    was truncated away, a word is not one token) are left out; ``None`` when no row is left.
    """
    enc = adapter.encode(inserted(texts, slots, word))
    ids, ids_other = enc["input_ids"], adapter.encode(inserted(texts, slots, other))["input_ids"]
    if ids.shape != ids_other.shape:
        return None
    diff = ids != ids_other
    ok = diff.sum(1) == 1
    if not bool(ok.any()):
        return None
    return enc, ok, diff.int().argmax(1)


def trigger_gradient(adapter: Any, texts: Sequence[str], slots: np.ndarray, word: str, other: str, target: int,
                     batch_size: int) -> tuple[torch.Tensor | None, int]:
    """Sum over ``texts`` of the gradient of the cross-entropy towards ``target`` with respect to the input
    embedding of ``word`` inserted at ``slots`` (:func:`locate`), and the number of texts it sums over."""
    total: torch.Tensor | None = None
    used = 0
    for start in range(0, len(texts), batch_size):
        found = locate(adapter, texts[start : start + batch_size], slots[start : start + batch_size], word, other)
        if found is None:
            continue
        enc, ok, pos = found
        with torch.enable_grad():
            emb = adapter.embed(enc).detach().requires_grad_(True)
            logits = adapter.logits_from_embeddings(emb, enc)
            goal = torch.full((len(ok),), target, dtype=torch.long, device=logits.device)
            loss = F.cross_entropy(logits.float(), goal, reduction="none")[ok].sum()
            (grad,) = torch.autograd.grad(loss, emb)
        rows = torch.nonzero(ok).squeeze(1)
        g = grad[rows, pos[rows]].sum(0).detach().float()
        total = g if total is None else total + g
        used += int(ok.sum())
    return total, used


def relaxed_ranking(adapter: Any, texts: Sequence[str], slots: np.ndarray, placeholders: tuple[str, str],
                    target: int, cand_emb: torch.Tensor, *, steps: int, batch_size: int, lr: float,
                    rng: np.random.Generator) -> torch.Tensor | None:
    """Weights over the candidate words after ``steps`` Adam steps that minimise the cross-entropy towards
    ``target`` when the inserted word's embedding is the softmax(weights)-mixture of the candidates' embeddings
    (a convex relaxation of the one-word search, as DBS and PICCOLO invert NLP triggers), each step on
    ``batch_size`` seeded search texts; ``None`` when the inserted word cannot be located.

    Where the first-order ranking fails — a trigger the model detects non-linearly (an attention head that
    fires on it) does not look strong at the placeholder — the optimisation moves the mixture towards it.
    The model's weights get no gradient (``autograd.grad`` on the weights alone).
    """
    theta = torch.zeros(len(cand_emb), device=cand_emb.device, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        rows = rng.choice(len(texts), min(batch_size, len(texts)), replace=False)
        found = locate(adapter, [texts[i] for i in rows], slots[rows], *placeholders)
        if found is None:
            return None
        enc, ok, pos = found
        keep = torch.nonzero(ok).squeeze(1)
        with torch.enable_grad():
            emb = adapter.embed(enc).detach().clone()
            emb[keep, pos[keep]] = (torch.softmax(theta, 0) @ cand_emb).to(emb.dtype)
            logits = adapter.logits_from_embeddings(emb, enc)
            goal = torch.full((len(keep),), target, dtype=torch.long, device=logits.device)
            loss = F.cross_entropy(logits[keep].float(), goal)
            (theta.grad,) = torch.autograd.grad(loss, theta)
        opt.step()
    return theta.detach()


def flip_rates(scorer: TextScorer, texts: Sequence[str], slots: np.ndarray, words: Sequence[str],
               target: int) -> np.ndarray:
    """Per word, the share of ``texts`` the model assigns to ``target`` with the word inserted at ``slots``
    (every word's texts in one batched call of the scorer)."""
    if not words:
        return np.zeros(0)
    batch = [t for w in words for t in inserted(texts, slots, w)]
    pred = scorer.logits(batch).argmax(1).reshape(len(words), len(texts))
    return (pred == target).mean(1)


@dataclass(frozen=True)
class ClassTrigger:
    """The trigger search for one target class."""

    target: int
    n_search: int
    n_verify: int
    trigger: str | None = None
    search_flip_rate: float | None = None
    hits: int | None = None  #: verification texts the trigger sent to the target
    anomaly_index: float | None = None
    flagged: bool = False
    rounds: int = 0
    queries: int = 0  #: texts scored by forward passes (search re-scoring and verification)
    candidates: tuple[tuple[str, float], ...] = ()  #: re-scored words and their search flip rates, best first
    not_run: str | None = None  #: why the class was not searched
    not_judged: str | None = None  #: why the class, though searched, cannot be flagged (too few verification texts)

    @property
    def unjudged(self) -> str | None:
        """Why the class has no verdict (not searched, or not judgeable), ``None`` when it has one."""
        return self.not_run or self.not_judged

    @property
    def flip_rate(self) -> float | None:
        return None if self.hits is None or not self.n_verify else self.hits / self.n_verify

    @property
    def interval(self) -> tuple[float | None, float | None]:
        if self.hits is None or not self.n_verify:
            return None, None
        return wilson_interval(self.hits, self.n_verify)


@dataclass(frozen=True)
class TextTriggerScan:
    """The search over every class, and what it searched."""

    classes: list[ClassTrigger]
    n_texts: int  #: distinct evaluation texts searched or verified on, over all classes
    n_candidates: int
    vocabulary_size: int
    placeholders: tuple[str, str]
    settings: dict[str, Any] = field(default_factory=dict)


def candidate_shortage(vocab: Sequence[str], min_word_length: int) -> str | None:
    """Why ``vocab`` leaves too few candidate words at ``min_word_length`` for the search (it needs two: a
    placeholder and its marker), naming the vocabulary's size; ``None`` when it leaves enough."""
    n = len(candidate_words(vocab, min_word_length)[1])
    if n >= 2:
        return None
    return (f"min_word_length {min_word_length} leaves {n} candidate word(s) of the model's {len(vocab)}-token "
            "vocabulary (whole alphabetic word tokens with at least that many letters); the search needs two: lower it")


def unjudgeable(n_verify: int, min_flip_rate: float) -> str | None:
    """Why a class with ``n_verify`` verification texts can never be flagged — the Wilson 95% lower bound of
    ``n_verify/n_verify`` stays below ``min_flip_rate`` — or ``None`` when it can be."""
    best = wilson_interval(n_verify, n_verify)[0] if n_verify else 0.0
    if best >= min_flip_rate:
        return None
    return (f"{n_verify} verification texts: even all flipped, the 95% lower bound {best:.3f} < min_flip_rate "
            f"{min_flip_rate:g}; give more evaluation texts (or a larger max_samples, a smaller search_share) or lower "
            "min_flip_rate")


def placeholder_pair(words: Sequence[str]) -> tuple[str, str]:
    """The word inserted for the first gradient, ``the`` where the vocabulary has it (a neutral start, as
    Wallace et al. start from "the the the"; else its first word token), and another word token that marks
    its position (:func:`trigger_gradient`)."""
    if len(words) < 2:
        raise ValueError("the vocabulary has fewer than two whole-word tokens to search")
    lower = [w.lower() for w in words]
    first = words[lower.index("the")] if "the" in lower else words[0]
    return first, next(w for w in words if w != first)


def scan_class(adapter: Any, scorer: TextScorer, texts: Sequence[str], search: np.ndarray, verify: np.ndarray,
               target: int, cand_ids: np.ndarray, cand_words: list[str], cand_emb: torch.Tensor,
               placeholders: tuple[str, str], *, top_k: int, rounds: int, reference_words: int,
               min_flip_rate: float, anomaly_threshold: float, batch_size: int, rng: np.random.Generator,
               relax_steps: int = 0, relax_batch: int = 32, relax_lr: float = 0.5) -> ClassTrigger:
    """The search of the module docstring for one target class on the rows ``search`` and ``verify``."""
    s_texts = [texts[i] for i in search]
    v_texts = [texts[i] for i in verify]
    s_slots, v_slots = draw_slots(s_texts, rng), draw_slots(v_texts, rng)
    rates: dict[str, float] = {}
    word, other = placeholders
    done = 0
    best: str | None = None
    for r in range(rounds):
        grad, used = trigger_gradient(adapter, s_texts, s_slots, word, other, target, batch_size)
        done += 1
        if grad is None or used == 0:
            break
        orders = [torch.argsort(-(cand_emb @ grad.to(cand_emb.device)), descending=True)]
        if r == 0 and relax_steps:
            theta = relaxed_ranking(adapter, s_texts, s_slots, placeholders, target, cand_emb, steps=relax_steps,
                                    batch_size=relax_batch, lr=relax_lr, rng=rng)
            if theta is not None:
                orders.append(torch.argsort(theta, descending=True))
        # the first round re-scores at least the words the anomaly index compares the best one with
        n_new = top_k if rates else max(top_k, reference_words)
        fresh: list[str] = []
        for order in orders:
            fresh += [w for w in (cand_words[i] for i in order[: 4 * n_new + len(rates)].tolist())
                      if w not in rates and w not in fresh][:n_new]
        rates.update(zip(fresh, flip_rates(scorer, s_texts, s_slots, fresh, target).tolist()))
        new_best = max(rates, key=lambda w: rates[w])  # insertion order breaks ties: the better-ranked word
        if new_best == best:
            break
        best = new_best
        word, other = best, (placeholders[0] if best != placeholders[0] else placeholders[1])
    queries = len(rates) * len(s_texts)
    if best is None:
        return ClassTrigger(target, len(s_texts), len(v_texts), rounds=done,
                            not_run="the inserted word could not be located in the encoded texts (every slot "
                                    "truncated away, or the placeholder words are not single tokens)")
    ranked = tuple(sorted(rates.items(), key=lambda kv: -kv[1]))  # stable: ties keep the gradient's order
    reference = np.asarray([r for _, r in ranked[:reference_words]])
    index = float(mad_anomaly_index(reference, min_scale=1.0 / len(s_texts))[0])
    hits = int(round(flip_rates(scorer, v_texts, v_slots, [best], target)[0] * len(v_texts)))
    lo, _ = wilson_interval(hits, len(v_texts))
    return ClassTrigger(target, len(s_texts), len(v_texts), trigger=best, search_flip_rate=rates[best], hits=hits,
                        anomaly_index=index, flagged=bool(lo >= min_flip_rate and index >= anomaly_threshold),
                        rounds=done, queries=queries + len(v_texts), candidates=ranked)


def scan_text_triggers(adapter: Any, scorer: TextScorer, texts: Sequence[str], labels: np.ndarray, preds: np.ndarray,
                       n_classes: int, *, max_samples: int, search_share: float = 0.5, top_k: int = 32,
                       rounds: int = 2, reference_words: int = 10, min_word_length: int = 2,
                       min_flip_rate: float = 0.8, relax_steps: int = 0, relax_batch: int = 32,
                       relax_lr: float = 0.5,
                       anomaly_threshold: float = 3.0, batch_size: int = 64,
                       rng: np.random.Generator) -> TextTriggerScan:
    """Search every class of a text model for a one-word trigger (module docstring).

    Parameters
    ----------
    adapter : ModelAdapter
        A text adapter with ``embeddings`` (``encode``, ``embed``, ``logits_from_embeddings``) and a
        ``vocabulary()``.
    scorer : TextScorer
        The memoising scorer over ``adapter`` every forward pass goes through.
    texts, labels, preds : the evaluation texts, their true classes (or the predictions, without labels)
        and the model's predictions.
    max_samples : int
        Texts per target class, search and verification together.

    Raises
    ------
    ValueError
        The adapter lists no vocabulary, or one with fewer than two whole-word tokens.
    """
    vocab = adapter.vocabulary()
    if not vocab:
        raise ValueError("the model's tokenizer does not list its vocabulary")
    cand_ids, cand_words = candidate_words(vocab, min_word_length)
    placeholders = placeholder_pair(cand_words)
    with torch.no_grad():
        cand_emb = adapter.embed({"input_ids": torch.as_tensor(cand_ids, device=adapter.device)[None]})[0].float()
    out: list[ClassTrigger] = []
    used: set[int] = set()
    for t in range(n_classes):
        pool = np.flatnonzero((labels != t) & (preds == labels))
        if len(pool) < MIN_TEXTS:
            out.append(ClassTrigger(t, 0, 0, not_run=f"only {len(pool)} correctly classified texts of other classes "
                                                     f"(at least {MIN_TEXTS} needed)"))
            continue
        search, verify = search_and_verify(pool, max_samples, search_share, rng)
        used.update(search.tolist() + verify.tolist())
        found = scan_class(adapter, scorer, texts, search, verify, t, cand_ids, cand_words, cand_emb, placeholders,
                              top_k=top_k, rounds=rounds, reference_words=reference_words,
                              min_flip_rate=min_flip_rate,
                              anomaly_threshold=anomaly_threshold, batch_size=batch_size, rng=rng,
                              relax_steps=relax_steps, relax_batch=relax_batch, relax_lr=relax_lr)
        why = unjudgeable(len(verify), min_flip_rate)
        out.append(found if why is None or found.not_run else replace(found, flagged=False, not_judged=why))
    return TextTriggerScan(out, len(used), len(cand_words), len(vocab), placeholders,
                           {"top_k": top_k, "rounds": rounds, "relax_steps": relax_steps, "relax_batch": relax_batch, "relax_lr": relax_lr, "reference_words": reference_words, "min_flip_rate": min_flip_rate,
                            "anomaly_threshold": anomaly_threshold, "search_share": search_share,
                            "min_word_length": min_word_length, "max_samples": max_samples})


# ------------------------------------------------------------------------------------ judge and present

def _not_searched(scan: TextTriggerScan, names: Sequence[str]) -> str:
    return "; ".join(f"class {names[c.target]}: {c.not_run}" for c in scan.classes if c.not_run)


def _not_judged(scan: TextTriggerScan, names: Sequence[str]) -> str:
    """The classes without a verdict (not searched, or too few verification texts), with the reasons."""
    return "; ".join(f"class {names[c.target]}: {c.unjudged}" for c in scan.classes if c.unjudged)


def scan_metrics(scan: TextTriggerScan, names: Sequence[str]) -> list[Metric]:
    """``suspected_classes`` (null when a class without a verdict — not searched, or too few verification texts
    to reach the bound — could hide a trigger) and, per class, the verified flip rate of its best word and that
    word's anomaly index (reported for every searched class, judged or not)."""
    st = scan.settings
    ran = [c for c in scan.classes if c.unjudged is None]
    flagged = [c for c in ran if c.flagged]
    missing = _not_judged(scan, names)
    how = (f"classes whose best one-word trigger has a verified flip rate with Wilson 95% lower bound ≥ "
           f"{st['min_flip_rate']:g} and a MAD anomaly index ≥ {st['anomaly_threshold']:g} among the "
           f"{st['reference_words']} best re-scored words")
    if not ran or (missing and not flagged):
        count, how = None, f"not measured ({how}): {missing or 'no class was judged'}"
    else:
        count = float(len(flagged))
        if missing:
            how += f"; at least this many: {missing}"
    out = [Metric(name="suspected_classes", value=count, n=len(scan.classes), higher_is_better=False, method=how)]
    for c in scan.classes:
        lo, hi = c.interval
        name = names[c.target]
        why = f"not measured: {c.not_run}" if c.not_run else None
        out += [
            Metric(name="trigger_flip_rate", group=name, value=c.flip_rate, ci_low=lo, ci_high=hi,
                   ci_level=None if lo is None else 0.95, n=c.n_verify, higher_is_better=False,
                   method=why or (f"share of {c.n_verify} held-out texts of other classes (not used in the search) that "
                                  f"the best word {c.trigger!r}, inserted at a random word slot, sends to this class; "
                                  "Wilson 95% interval" + (f"; not judged: {c.not_judged}" if c.not_judged else ""))),
            Metric(name="trigger_anomaly_index", group=name, value=c.anomaly_index,
                   n=min(len(c.candidates), int(st["reference_words"])), higher_is_better=False,
                   method=why or (f"MAD anomaly index of {c.trigger!r}'s search flip rate among the "
                                  f"{min(len(c.candidates), int(st['reference_words']))} best of {len(c.candidates)} "
                                  f"re-scored words (MAD floored at 1/{c.n_search})")),
        ]
    return out


def scan_evidence(scan: TextTriggerScan, names: Sequence[str]) -> list[Table]:
    """The per-class table and the best re-scored words of every class."""
    rows: list[list[Any]] = []
    words: list[list[Any]] = []
    for c in scan.classes:
        lo, hi = c.interval
        rows.append([names[c.target], c.trigger, None if c.search_flip_rate is None else round(c.search_flip_rate, 4),
                     c.n_search, None if c.flip_rate is None else round(c.flip_rate, 4),
                     None if lo is None else round(lo, 4), None if hi is None else round(hi, 4), c.n_verify,
                     None if c.anomaly_index is None else round(c.anomaly_index, 3),
                     "not searched" if c.not_run else "not judged" if c.not_judged else ("yes" if c.flagged else "no"), c.rounds, c.queries])
        words += [[names[c.target], i + 1, w, round(r, 4)] for i, (w, r) in enumerate(c.candidates[:10])]
    st = scan.settings
    return [
        Table(title="Text trigger search per target class",
              columns=["target class", "best trigger word", "search flip rate", "search texts", "verified flip rate",
                       "CI low", "CI high", "verification texts", "anomaly index", "suspected", "rounds", "texts scored"],
              rows=rows,
              caption=f"Suspected: Wilson 95% lower bound of the verified flip rate ≥ {st['min_flip_rate']:g} and anomaly "
                      f"index ≥ {st['anomaly_threshold']:g}. {scan.n_candidates} candidate words of a "
                      f"{scan.vocabulary_size}-token vocabulary ranked by gradient; {st['top_k']} re-scored per round."),
        Table(title="Best re-scored trigger words per target class", columns=["target class", "rank", "word", "search flip rate"],
              rows=words, caption="A backdoor trigger stands alone at the top; natural words of a class (a sentiment "
                                  "model's 'terrible') come with near-synonyms that flip about as many texts."),
    ]


def scan_summary(scan: TextTriggerScan, names: Sequence[str]) -> str:
    ran = [c for c in scan.classes if c.not_run is None]
    if not ran:
        return f"Text trigger search: no class could be searched ({_not_searched(scan, names)})."
    judged = [c for c in ran if c.not_judged is None]
    tail = f"; no verdict for {_not_judged(scan, names)}" if len(judged) < len(scan.classes) else ""
    flagged = [c for c in judged if c.flagged]
    if flagged:
        found = "; ".join(f"class {names[c.target]} by {c.trigger!r} (verified flip rate {c.flip_rate:.3f} of "
                          f"{c.n_verify} texts, anomaly index {c.anomaly_index:.1f})" for c in flagged)
        return f"Text trigger search: suspected backdoor trigger(s): {found}{tail}."
    top = max(ran, key=lambda c: c.flip_rate or 0.0)
    strongest = (f"the strongest word, {top.trigger!r}, sends {top.flip_rate:.3f} of {top.n_verify} held-out texts to "
                 f"class {names[top.target]} (anomaly index {top.anomaly_index:.1f})")
    if not judged:
        return f"Text trigger search: no class could be judged ({_not_judged(scan, names)}); {strongest}."
    return f"Text trigger search: no one-word trigger stands out; {strongest}{tail}."


def method_text(scan: TextTriggerScan) -> str:
    st = scan.settings
    return (f"Trigger search over the vocabulary (HotFlip / Universal Adversarial Triggers): for every target class, "
            f"at most {st['max_samples']} correctly classified texts of the other classes, split {st['search_share']:.0%} "
            f"for the search and the rest for verification; a placeholder word ({scan.placeholders[0]!r}) inserted at a "
            f"seeded random word slot; the gradient of the cross-entropy towards the target with respect to its input "
            f"embedding ranks all {scan.n_candidates} whole-word tokens (alphabetic, at least {st['min_word_length']} "
            f"letters, no subword pieces or specials) by −gradient·embedding"
            + (f", and in the first round also by the weights of a relaxed search ({st['relax_steps']} Adam steps on "
               f"{st['relax_batch']} texts each, lr {st['relax_lr']:g}, over a softmax mixture of all candidate embeddings at the "
               "inserted word; DBS/PICCOLO)" if st["relax_steps"] else "")
            + f"; the {st['top_k']} best of each ranking are inserted at the "
            f"same slots and scored exactly by forward passes, the best becomes the next round's placeholder (at most "
            f"{st['rounds']} rounds). The best word's flip rate is verified on the held-out texts at fresh slots. A class "
            f"is suspected when that rate's Wilson 95% lower bound is ≥ {st['min_flip_rate']:g} and the word's MAD anomaly "
            f"index among the {st['reference_words']} best re-scored words (Neural Cleanse's outlier rule over words) is "
            f"≥ {st['anomaly_threshold']:g}.")


def limitations(scan: TextTriggerScan) -> list[str]:
    out = ["Only one-word triggers that are one token of the model's vocabulary are searched: a trigger spelled as "
           "several word pieces, a phrase, or a syntactic or style trigger is not.",
           f"The rankings are local (first-order, and a relaxed search of {scan.settings['relax_steps']} steps): a trigger "
           f"that both rank below the {scan.settings['top_k']} words re-scored per round is missed (raise top_k, "
           "search_steps or search_rounds).",
           "A word that sends most texts of every other class to one class is flagged whether it was planted or "
           "learnt (a universal trigger of the model is a risk either way); natural sentiment words come with "
           "near-synonyms and are not outliers.",
           "Texts are truncated by the tokenizer: a trigger inserted past the model's maximum length has no effect."]
    if any(c.not_run for c in scan.classes):
        out.append("Some classes were not searched: " + "; ".join(
            f"class {c.target}: {c.not_run}" for c in scan.classes if c.not_run) + ".")
    if any(c.not_judged for c in scan.classes):
        out.append("Some classes were searched but cannot be judged: " + "; ".join(
            f"class {c.target}: {c.not_judged}" for c in scan.classes if c.not_judged) + ".")
    return out
