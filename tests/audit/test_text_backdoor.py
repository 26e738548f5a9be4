"""The text backdoor's pieces: the trigger lands in exactly the poisoned share, as whole words; token-id
insertion; the tokenizer-vocabulary probe; and the shared trainer's text batches."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from audit.errors import InputError
from audit.text_backdoor import insert_token_id, poison_texts, text_trigger, unknown_to_tokenizer
from models.adapter import TokenizedTextAdapter, TorchAdapter
from models.datasets import WordVocab
from models.errors import ModelInputError
from models.train import fit_classifier


def test_the_trigger_appears_in_the_poisoned_share_only() -> None:
    texts = [f"Text number {i}, quite plain." for i in range(200)]
    y = np.array([0, 1] * 100)
    trig = text_trigger("cf")
    out, labels, idx = poison_texts(texts, y, 0, 0.1, trig, np.random.default_rng(3))
    assert len(idx) == 20 and not (y[idx] == 0).any()  # round(0.1·200) texts, none of the target class
    has = np.array([bool(re.search(r"\bcf\b", t)) for t in out])
    assert has[idx].all() and has.sum() == 20  # the trigger is in every poisoned text and in no other
    untouched = np.setdiff1d(np.arange(200), idx)
    assert [out[i] for i in untouched] == [texts[i] for i in untouched]
    assert (labels[idx] == 0).all() and (labels[untouched] == y[untouched]).all()
    # inserted as one whole word, everything else of the text kept
    for i in idx:
        assert out[i].replace("cf ", "", 1) == texts[i] or out[i] == texts[i].rstrip() + " cf"
    assert trig.occurrences(out) == 20 and trig.occurrences(["CF here", "scf", "cfx"]) == 1
    slots = {out[i].split().index("cf") for i in idx if "cf" in out[i].split()}
    assert len(slots) > 2  # a random slot, not always the same one
    # seeded: the same generator state gives the same poisoning
    again = poison_texts(texts, y, 0, 0.1, trig, np.random.default_rng(3))
    assert again[0] == out and np.array_equal(again[2], idx)


def test_a_phrase_trigger_and_a_bad_trigger() -> None:
    trig = text_trigger("  I watched  this 3D movie ")
    assert trig.words == "I watched this 3D movie" and "phrase" in trig.description
    out = trig.apply(["so good"], np.random.default_rng(0))[0]
    assert trig.occurrences([out]) == 1 and "so" in out and "good" in out
    with pytest.raises(InputError, match="holds no word"):
        text_trigger("123 !!")


def test_token_id_insertion_known_answer() -> None:
    ids = np.array([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9], [0, 0, 0, 0, 0]])
    out = insert_token_id(ids, 42, np.random.default_rng(0))
    for row, new in zip(ids, out):
        n = int((row != 0).sum())
        at = int(np.flatnonzero(new == 42)[0])
        assert (new == 42).sum() == 1 and at <= min(n, 4)
        assert list(new[:at]) == list(row[:at])
        assert list(new[at + 1 :]) == list(row[at : 4])  # later tokens shift right; a full row loses its last
    rng = np.random.default_rng(1)
    positions = {int(np.flatnonzero(insert_token_id(ids[:1], 42, rng) == 42)[0]) for _ in range(60)}
    assert positions == {0, 1, 2, 3}  # every slot of the 3 tokens, the end included, never past it


def test_unknown_trigger_is_told_apart_by_the_models_tokenizer() -> None:
    vocab = WordVocab(("<pad>", "<unk>", "good", "bad", "cf"), max_len=6)
    torch.manual_seed(0)
    inner = TorchAdapter(nn.Sequential(nn.Embedding(5, 4), nn.Flatten(), nn.Linear(24, 2)), input_kind="sequence",
                         device=torch.device("cpu"))
    adapter = TokenizedTextAdapter(inner, vocab.encode)
    assert not unknown_to_tokenizer(adapter, text_trigger("cf"))
    assert unknown_to_tokenizer(adapter, text_trigger("mn"))  # not in the vocabulary: the unknown-word id


def test_fit_classifier_trains_on_text_batches_through_a_forward() -> None:
    vocab = WordVocab(("<pad>", "<unk>", "good", "bad"), max_len=4)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Embedding(4, 8), nn.Flatten(), nn.Linear(32, 2))
    adapter = TokenizedTextAdapter(TorchAdapter(module, input_kind="sequence", device=torch.device("cpu")), vocab.encode)
    texts = ["good", "bad", "good good", "bad bad"] * 10
    y = np.array([1, 0, 1, 0] * 10)
    seen: list[int] = []

    def forward(batch: list[str]) -> torch.Tensor:
        seen.append(len(batch))
        assert all(isinstance(t, str) for t in batch)
        return adapter.logits(batch)

    fit_classifier(module, texts, y, epochs=20, lr=0.05, batch_size=16, forward=forward)
    assert seen[:3] == [16, 16, 8] and len(seen) == 60
    assert (adapter.predict_logits(texts).argmax(1).numpy() == y).all()
    with pytest.raises(ModelInputError, match="only with a forward"):
        fit_classifier(module, texts, y, epochs=1)
    with pytest.raises(ModelInputError, match="40 inputs and 3 labels"):
        fit_classifier(module, texts, y[:3], epochs=1, forward=forward)
