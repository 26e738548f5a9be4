"""Model scores of raw strings, memoised for one model within one check.

Black-box text methods ask the model about many identical strings: LIME and KernelSHAP over words
draw the same masked texts again and again (a 5-word sentence has 32 masks, LIME draws hundreds of
samples), every KernelSHAP explainer scores the fully masked text and the text itself once more,
deletion and insertion curves end on the same fully masked and unmasked texts, and a greedy
character-edit search proposes the same edit several times. A :class:`TextScorer` sends only the
texts it has not seen to the adapter, in batches of ``batch_size`` through
``ModelAdapter.predict_logits`` (so the adapter's shape checks still apply), and answers repeats
from memory: each unique text reaches the model once (while the memory bound keeps it).

Scope: a scorer is bound to one adapter object, i.e. one model state, and lives as long as the
check run that made it; a model with other weights (the randomised copy of the sanity check, a
variant) gets its own scorer. Functions that score texts take the scorer *in place of* the adapter,
so a cache cannot be paired with another model than the one that filled it. The cache is
keyed by the exact string and bounded by ``max_bytes`` (keys, rows and a per-entry overhead, least
recently used dropped first; what Python holds, traced, stays within 1.5× of it), so a long search
cannot grow it without limit.

Numbers: logits are cached as the float32 rows the adapter returned; probabilities are the float32
softmax of those rows, returned as float64. A text's logits can differ from those of an uncached
run by float32 rounding only, when the adapter pads a batch to its longest text.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

#: Default memory bound of one scorer's cache: 64 MiB of keys and logit rows.
DEFAULT_MAX_BYTES = 64 * 2**20
_ENTRY_OVERHEAD = 200  # bytes per entry beyond the key and the row: the dict slot and the row's array header


class TextScorer:
    """Logits and probabilities of raw strings through ``adapter``, each unique string scored once.

    Parameters
    ----------
    adapter : ModelAdapter
        A text adapter whose ``predict_logits`` takes a list of strings.
    batch_size : int
        Texts per model call (the audit's batch size).
    max_bytes : int
        Bound on the cache (keys and float32 rows); the least recently used entries go first.
    cache : bool
        ``False`` scores every text asked for, repeats included, as an uncached run does
        (for comparisons and benchmarks).
    """

    def __init__(self, adapter: Any, batch_size: int = 256, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 cache: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"The 'batch_size' parameter of TextScorer must be a positive int. Got {batch_size!r} instead.")
        self.adapter = adapter
        self.batch_size = int(batch_size)
        self.max_bytes = int(max_bytes)
        self.cache = cache
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        #: texts asked for, and texts the model scored (the difference was answered from the cache)
        self.asked = 0
        self.scored = 0

    @property
    def cached_bytes(self) -> int:
        """Estimated memory held by the cache (keys, rows and per-entry overhead)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._rows)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), classes)`` float64 logits (the model's float32 values)."""
        return self._float32(texts).astype(np.float64)

    def probs(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), classes)`` float64 softmax probabilities (computed in float32, as the logits)."""
        return torch.softmax(torch.from_numpy(self._float32(texts)), 1).numpy().astype(np.float64)

    def _float32(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        self.asked += len(texts)
        if not self.cache:
            self.scored += len(texts)
            return self._score(texts)
        rows: dict[str, np.ndarray] = {}
        for t in texts:
            row = self._rows.get(t)
            if row is not None:
                self._rows.move_to_end(t)
                rows[t] = row
        new = [t for t in dict.fromkeys(texts) if t not in rows]
        if new:
            self.scored += len(new)
            out = self._score(new)
            rows.update(zip(new, out))
            for t, row in zip(new, out):
                self._remember(t, row)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([rows[t] for t in texts])

    def _score(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self.adapter.predict_logits(texts, batch_size=self.batch_size).float().numpy()

    def _remember(self, text: str, row: np.ndarray) -> None:
        row = np.array(row, dtype=np.float32)  # its own copy: a view would keep the whole batch alive
        cost = sys.getsizeof(text) + row.nbytes + _ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        self._rows[text] = row
        self._bytes += cost
        while self._bytes > self.max_bytes:
            old, old_row = self._rows.popitem(last=False)
            self._bytes -= sys.getsizeof(old) + old_row.nbytes + _ENTRY_OVERHEAD


def text_scorer(model: Any, batch_size: int = 256) -> TextScorer:
    """``model`` itself when it is a :class:`TextScorer` (its cache is shared), else a new scorer over
    the adapter ``model`` whose cache lasts as long as the caller keeps it."""
    return model if isinstance(model, TextScorer) else TextScorer(model, batch_size)
