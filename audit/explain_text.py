"""Attributions for raw-string text models, over words, and their faithfulness.

Every method reports one score per *word* of the raw string (maximal runs of ``\\w`` characters,
the words LIME finds when it splits on ``\\W+``), so methods can be compared and checked on the
same features:

- LIME's text explainer (word positions, ``bow=False``; a removed word becomes the mask token);
- SHAP's KernelExplainer over the same words (a word is present or replaced by the mask token);
- Integrated Gradients and Saliency from Captum on the input *embeddings* (for adapters with
  ``encode`` / ``embed`` / ``logits_from_embeddings``): summed over the hidden dimension per
  token, then over the tokens of each word (token → word through the tokenizer's character
  offsets).

Deletion and insertion curves replace words by the mask token (the model's own ``[MASK]`` or
``[UNK]`` where its tokenizer has one), most important first; all texts of all steps go through
the adapter in batches.

References
----------
Ribeiro et al. 2016 (LIME); Lundberg & Lee 2017 (SHAP); Sundararajan et al. 2017 (IG);
Petsiuk et al. 2018 (deletion / insertion).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from audit.text_scorer import text_scorer

_WORD = re.compile(r"\w+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``text``."""
    return [m.span() for m in _WORD.finditer(text)]


def mask_words(text: str, spans: Sequence[tuple[int, int]], keep: np.ndarray, mask_token: str) -> str:
    """``text`` with every word whose ``keep`` is False replaced by ``mask_token``."""
    parts, pos = [], 0
    for (a, b), k in zip(spans, keep):
        parts.append(text[pos:a])
        parts.append(text[a:b] if k else mask_token)
        pos = b
    parts.append(text[pos:])
    return "".join(parts)


def mask_token_of(adapter: Any) -> str:
    """The string that stands for a removed word: the tokenizer's mask or unknown token, else ``...``."""
    tok = adapter.tokenizer
    for name in ("mask_token", "unk_token"):
        value = getattr(tok, name, None)
        if isinstance(value, str) and value:
            return value
    return "..."


def predict_texts(adapter: Any, texts: Sequence[str], batch_size: int = 256,
                  output: Literal["logits", "probs"] = "probs") -> np.ndarray:
    """Logits or probabilities of raw strings, float64, each unique string scored once, in batches.

    ``adapter`` is a text adapter, or a :class:`~audit.text_scorer.TextScorer` over one whose cache
    the caller shares between calls (then ``batch_size`` is the scorer's).
    """
    scorer = text_scorer(adapter, batch_size)
    return scorer.probs(texts) if output == "probs" else scorer.logits(texts)


def deletion_insertion(adapter: Any, texts: Sequence[str], target: np.ndarray, attrs: Sequence[np.ndarray],
                       mask_token: str, n_steps: int = 16, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Target probability as words are masked (deletion) or unmasked (insertion), most important first.

    ``adapter`` may be a :class:`~audit.text_scorer.TextScorer` (texts it has scored are not scored again).
    Returns two ``(n_steps + 1, n)`` arrays, like :func:`audit.explain.deletion_insertion`.
    """
    fractions = np.linspace(0, 1, n_steps + 1)
    deleted: list[str] = []
    inserted: list[str] = []
    for text, a in zip(texts, attrs):
        spans = word_spans(text)
        ranks = np.empty(len(spans), dtype=np.int64)
        ranks[np.argsort(-np.asarray(a), kind="stable")] = np.arange(len(spans))
        for frac in fractions:
            top = ranks < int(round(frac * len(spans)))
            deleted.append(mask_words(text, spans, ~top, mask_token))
            inserted.append(mask_words(text, spans, top, mask_token))
    probs = predict_texts(adapter, deleted + inserted, batch_size)
    n, s = len(texts), n_steps + 1
    tgt = np.tile(np.repeat(target, s), 2)
    p = probs[np.arange(len(probs)), tgt].reshape(2, n, s)
    return p[0].T, p[1].T


# ------------------------------------------------------------------------------- gradient-free
def lime_text(adapter: Any, texts: Sequence[str], target: np.ndarray, *, mask_token: str, n_samples: int = 256,
              seed: int = 0, batch_size: int = 256) -> list[np.ndarray]:
    """LIME's text explainer over word positions; one weight per word of each text.

    The perturbed texts go through one :class:`~audit.text_scorer.TextScorer` (``adapter`` itself when it
    is one): a text LIME draws again, or that another text's perturbations already gave, is not scored again.
    """
    from lime.lime_text import LimeTextExplainer

    explainer = LimeTextExplainer(class_names=None, split_expression=r"\W+", bow=False, mask_string=mask_token,
                                  feature_selection="none", random_state=seed)
    scorer = text_scorer(adapter, batch_size)
    out = []
    for text, t in zip(texts, target):
        n_words = len(word_spans(text))
        weights = np.zeros(n_words)
        if n_words:
            exp = explainer.explain_instance(text, scorer.probs,
                                             labels=(int(t),), num_features=n_words, num_samples=n_samples)
            if len(exp.domain_mapper.indexed_string.inverse_vocab) != n_words:
                raise RuntimeError("LIME split the text into other words than the audit's word splitter")
            for j, wt in exp.local_exp[int(t)]:
                weights[j] = wt
        out.append(weights)
    return out


def kernel_shap(adapter: Any, texts: Sequence[str], target: np.ndarray, *, mask_token: str, n_samples: int = 256,
                seed: int = 0, batch_size: int = 256) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """SHAP's KernelExplainer over the words of each text, on the target logit.

    The explained "features" are word-presence indicators: the model sees the text with absent
    words replaced by ``mask_token``; the background is the fully masked text. Returns the per-word
    values, the base values (the logit of the fully masked text) and the logits of the texts, so that
    ``values[i].sum() == fx[i] - base[i]`` (SHAP's efficiency). With ``n_samples >= 2**words - 2``
    the coalitions are enumerated and the values are the exact Shapley values.

    Every model call goes through one :class:`~audit.text_scorer.TextScorer` (``adapter`` itself when
    it is one): the fully masked text (the background), the text itself and a coalition met before are
    answered from its cache.
    """
    import shap

    from audit.explain_blackbox import pick_class, quiet_shap, seeded_numpy

    scorer = text_scorer(adapter, batch_size)
    values: list[np.ndarray] = []
    base: list[float] = []
    with seeded_numpy(seed), quiet_shap():
        for text, t in zip(texts, target):
            spans = word_spans(text)
            if not spans:
                logit = scorer.logits([text])[0, int(t)]
                values.append(np.zeros(0))
                base.append(float(logit))
                continue

            def f(masks: np.ndarray, text: str = text, spans: list[tuple[int, int]] = spans) -> np.ndarray:
                return scorer.logits([mask_words(text, spans, row > 0.5, mask_token) for row in masks])

            explainer = shap.KernelExplainer(f, np.zeros((1, len(spans))))
            v = explainer.shap_values(np.ones((1, len(spans))), nsamples=n_samples, l1_reg=0, silent=True)
            values.append(pick_class(v, np.array([int(t)]))[0].astype(np.float64))
            base.append(float(np.asarray(explainer.expected_value).reshape(-1)[int(t)]))
    fx_arr = scorer.logits(list(texts))[np.arange(len(texts)), target]
    return values, np.array(base), fx_arr


# ------------------------------------------------------------------------------- gradients
def supports_embeddings(adapter: Any) -> bool:
    """Whether the adapter exposes the embedding interface gradient methods need."""
    caps = adapter.capabilities
    return caps.tokenizer and caps.embeddings


def token_words(adapter: Any, texts: Sequence[str], encoded: dict[str, torch.Tensor]) -> np.ndarray | None:
    """For each token of ``encoded``, the index of the word it belongs to (-1 for special and padding
    tokens, or tokens outside any word); ``None`` when the tokenizer gives no character offsets.

    Offsets come from ``adapter.token_offsets(texts)`` when the adapter has it (one ``(start, end)``
    character span per token of ``encode(texts)``, ``(0, 0)`` for special and padding tokens), else
    from a Hugging Face fast tokenizer's ``return_offsets_mapping``, else by tokenising each word on
    its own and finding its pieces in order (:func:`_align_by_retokenising`).
    """
    ids = encoded["input_ids"].cpu().numpy()
    tok = adapter.tokenizer
    given = adapter.token_offsets(list(texts))
    if given is not None:
        offsets = [list(o) for o in given]
    elif tok is not None and getattr(tok, "is_fast", False):
        enc = tok(list(texts), padding=True, truncation=True, max_length=adapter.max_length,
                  return_offsets_mapping=True, return_tensors="np")
        if not np.array_equal(enc["input_ids"], ids):
            return None
        offsets = [list(o) for o in enc["offset_mapping"]]
    elif adapter.capabilities.tokenizer:
        return _align_by_retokenising(adapter, texts, ids)
    else:
        return None
    if len(offsets) != len(texts) or any(len(o) > ids.shape[1] for o in offsets):
        return None
    out = np.full(ids.shape, -1, dtype=np.int64)
    for i, text in enumerate(texts):
        spans = word_spans(text)
        starts = np.array([a for a, _ in spans])
        for j, (a, b) in enumerate(offsets[i]):
            if b > a and len(spans):
                w = int(np.searchsorted(starts, a, side="right")) - 1
                if w >= 0 and a < spans[w][1]:
                    out[i, j] = w
    return out


def _align_by_retokenising(adapter: Any, texts: Sequence[str], ids: np.ndarray) -> np.ndarray:
    """Token → word map for tokenizers without character offsets (e.g. a word vocabulary): every word
    is tokenised on its own (one batched call on the host), and its pieces are found, in order, in
    the text's token ids. Tokens that also appear in the encoding of the empty string (padding,
    special tokens) are never word pieces; a word whose pieces are not found (normalised away,
    truncated) keeps no tokens."""
    spans = [word_spans(t) for t in texts]
    flat = [t[a:b] for t, sp in zip(texts, spans) for a, b in sp]
    special = set(np.asarray(adapter.encode([""])["input_ids"].cpu()).ravel().tolist())
    pieces: list[list[int]] = []
    if flat:
        word_ids = adapter.encode(flat)["input_ids"].cpu().numpy()
        pieces = [[int(t) for t in row if int(t) not in special] for row in word_ids]
    out = np.full(ids.shape, -1, dtype=np.int64)
    k = 0
    for i, sp in enumerate(spans):
        row = ids[i].tolist()
        pos = 0
        for w in range(len(sp)):
            piece = pieces[k]
            k += 1
            if not piece:
                continue
            for q in range(pos, len(row) - len(piece) + 1):
                if row[q : q + len(piece)] == piece:
                    out[i, q : q + len(piece)] = w
                    pos = q + len(piece)
                    break
    return out


def embedding_attributions(adapter: Any, texts: Sequence[str], target: np.ndarray,
                           method: Literal["integrated_gradients", "saliency"], *, n_steps: int = 32,
                           internal_batch_size: int | None = None,
                           baseline_token_id: int | None = None) -> tuple[list[np.ndarray], np.ndarray | None, np.ndarray | None]:
    """Captum IG or Saliency on the input embeddings, per word.

    Returns the per-word attributions, the IG convergence delta per text (``None`` for Saliency)
    and ``|f(x) - f(baseline)|`` of the target logit per text (``None`` for Saliency). The IG
    baseline replaces every word token by ``baseline_token_id`` (special tokens stay); without one
    it is the zero embedding.
    """
    encoded = adapter.encode(list(texts))
    words = token_words(adapter, texts, encoded)
    if words is None:
        raise ValueError("the tokenizer gives no character offsets; token attributions cannot be mapped to words")
    keys = list(encoded)
    extra = tuple(encoded[k] for k in keys)

    def forward(emb: torch.Tensor, *vals: torch.Tensor) -> torch.Tensor:
        return adapter.logits_from_embeddings(emb, dict(zip(keys, vals)))

    emb = adapter.embed(encoded).detach()
    tgt = torch.as_tensor(target, device=emb.device)
    # cuDNN's RNN kernels have no backward pass in eval mode: use the native ones for the gradients.
    with torch.backends.cudnn.flags(enabled=emb.device.type != "cuda"):
        return _embedding_attributions(adapter, texts, method, words, forward, encoded, extra, emb, tgt,
                                       n_steps, internal_batch_size, baseline_token_id)


def _embedding_attributions(adapter: Any, texts: Sequence[str], method: str, words: np.ndarray,
                            forward: Any, encoded: dict[str, torch.Tensor], extra: tuple[torch.Tensor, ...],
                            emb: torch.Tensor, tgt: torch.Tensor, n_steps: int, internal_batch_size: int | None,
                            baseline_token_id: int | None) -> tuple[list[np.ndarray], np.ndarray | None, np.ndarray | None]:
    from captum.attr import IntegratedGradients, Saliency

    delta = gap = None
    if method == "integrated_gradients":
        if baseline_token_id is None:
            base = torch.zeros_like(emb)
        else:
            ids = encoded["input_ids"].clone()
            ids[torch.from_numpy(words >= 0).to(ids.device)] = baseline_token_id
            base = adapter.embed({**encoded, "input_ids": ids}).detach()
        attr, d = IntegratedGradients(forward).attribute(emb, baselines=base, target=tgt, additional_forward_args=extra,
                                                         n_steps=n_steps, internal_batch_size=internal_batch_size,
                                                         return_convergence_delta=True)
        with torch.no_grad():
            gap = (forward(emb, *extra) - forward(base, *extra)).gather(1, tgt[:, None]).squeeze(1).abs()
        delta, gap = d.detach().abs().cpu().numpy(), gap.cpu().numpy()
    else:
        attr = Saliency(forward).attribute(emb, target=tgt, abs=True, additional_forward_args=extra)
    per_token = attr.detach().sum(-1).float().cpu().numpy()
    out = []
    for i, text in enumerate(texts):
        w = np.zeros(len(word_spans(text)))
        mask = words[i] >= 0
        np.add.at(w, words[i][mask], per_token[i][mask])
        out.append(w)
    return out, delta, gap


def randomized_adapter(adapter: Any, seed: int = 0) -> Any | None:
    """A shallow copy of a text adapter whose model has re-initialised weights (for the randomisation
    sanity check); ``None`` when the adapter does not expose its torch model."""
    from audit.explain import randomized_copy

    module = adapter.torch_model
    if module is None:
        return None
    try:  # derived again over the randomised module, so that its hooks point at it
        return adapter.with_torch_model(randomized_copy(module, seed))
    except NotImplementedError:
        return None
    return None
