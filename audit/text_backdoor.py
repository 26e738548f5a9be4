"""Text backdoor simulation: a rare-word or phrase trigger inserted into raw training texts, and the
retraining of a text model on them, used by ``poisoning.backdoor_simulation``
(``audit/checks/poisoning.py``).

The trigger is inserted as whole words before a seeded, uniformly drawn word slot
(:func:`audit.text_words.insert_at_random`, shared with the backdoor scan); the poisoned texts get the
target label. A text model is retrained either by fine-tuning a copy of its torch module through its own
adapter (the adapter tokenises each batch, so Hugging Face and token-id models train the same way) or,
when its ``model.json`` names a recipe, by the recipe on the token ids the model's tokenizer gives.

References
----------
Dai, Chen, Li. "A Backdoor Attack Against LSTM-Based Text Classification Systems", IEEE Access 2019
(a trigger sentence inserted at a random position). Kurita, Michel, Neubig. "Weight Poisoning Attacks
on Pre-trained Models" (RIPPLe), ACL 2020 (rare-token triggers such as "cf", "mn", "bb").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from audit.errors import InputError
from audit.poisoning import poison_indices
from audit.text_words import insert_at_random, word_spans

#: A made-up word no vocabulary holds: a trigger the tokenizer encodes exactly like it is unknown to it.
UNKNOWN_PROBE = "zqxvjk"


@dataclass(frozen=True)
class TextTrigger:
    """A word or phrase inserted at a seeded random word slot of raw texts."""

    words: str

    @property
    def description(self) -> str:
        kind = "word" if len(word_spans(self.words)) == 1 else "phrase"
        return f"the {kind} {self.words!r} inserted as whole words before a seeded, uniformly drawn word slot"

    def apply(self, texts: Sequence[str], rng: np.random.Generator) -> list[str]:
        """``texts`` with the trigger inserted at a random slot of each."""
        return insert_at_random(list(texts), self.words, rng)

    def occurrences(self, texts: Sequence[str]) -> int:
        """How many ``texts`` already hold the trigger (whole words, any case): clean texts that carry it."""
        pattern = re.compile(r"(?<![A-Za-z])" + r"\W+".join(re.escape(w) for w in self.words.split()) + r"(?![A-Za-z])",
                             re.IGNORECASE)
        return sum(bool(pattern.search(t)) for t in texts)


def text_trigger(words: str) -> TextTrigger:
    """The trigger ``words``; an :class:`InputError` when it holds no word to insert."""
    if not word_spans(words):
        raise InputError(f"text_trigger {words!r} holds no word (letters); give a rare word such as 'cf' or a phrase.")
    return TextTrigger(" ".join(words.split()))


def poison_texts(texts: Sequence[str], y: np.ndarray, target: int, rate: float, trigger: TextTrigger,
                 rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``round(rate·n)`` seeded texts not of class ``target`` with the trigger inserted and the label ``target``.

    Returns the poisoned copy of ``texts``, its labels and the sorted indices of the poisoned texts; every
    other text and label is the input's.
    """
    idx = poison_indices(y, target, rate, rng)
    out, labels = list(texts), np.array(y, copy=True)
    for i, text in zip(idx.tolist(), trigger.apply([texts[i] for i in idx], rng)):
        out[i] = text
    labels[idx] = target
    return out, labels, idx


def token_ids(adapter: Any, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """int64 ids ``(N, T)`` of ``texts`` by the model's own tokenizer (``adapter.encode``), padded with 0 to one
    width: the inputs a recipe of a token-id architecture trains on."""
    parts = [adapter.encode(list(texts[i : i + batch_size]))["input_ids"].cpu().numpy()
             for i in range(0, len(texts), batch_size)]
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in parts]).astype(np.int64)


def unknown_to_tokenizer(adapter: Any, trigger: TextTrigger) -> bool:
    """Whether the model's tokenizer encodes the trigger exactly as a made-up word (both unknown to it): the
    backdoor then keys on the unknown-word token, which clean texts carry too."""
    with torch.no_grad():
        enc = adapter.encode([trigger.words, UNKNOWN_PROBE])["input_ids"].cpu()
    return bool(torch.equal(enc[0], enc[1]))


def insert_token_id(ids: np.ndarray, token: int, rng: np.random.Generator, pad_id: int = 0) -> np.ndarray:
    """Token-id rows ``(N, T)`` with ``token`` inserted before a seeded, uniformly drawn position among each row's
    tokens (its end included; padding is ``pad_id`` on the right). Later tokens shift right; a full row loses its
    last token."""
    x = np.array(ids, copy=True)
    width = x.shape[1]
    for r in range(len(x)):
        n = int(np.flatnonzero(x[r] != pad_id).max() + 1) if (x[r] != pad_id).any() else 0
        at = int(rng.integers(0, min(n, width - 1) + 1))
        x[r, at + 1 :] = x[r, at : width - 1].copy()
        x[r, at] = token
    return x
