"""Tiny text models for tests: a randomly initialised BERT built offline, and a black-box keyword model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.adapter import ModelAdapter

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "a", "great", "awful", "plot",
         "##s", "!", ","]
WORDS = ["good", "bad", "movie", "the", "a", "great", "awful", "plot"]


def tiny_bert(layers: int = 2, seed: int = 0):  # noqa: ANN201 - (BertForSequenceClassification, BertTokenizerFast)
    """A 16-wide BERT classifier with a 16-token WordPiece vocabulary; nothing is downloaded."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=32, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1},
                     initializer_range=0.5, attn_implementation="eager")
    torch.manual_seed(seed)
    return BertForSequenceClassification(cfg).eval(), tok


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(2, 7)))) for _ in range(n)]


class KeywordTextAdapter(ModelAdapter):
    """A black-box text model on raw strings: logit(pos) = 2·#good − 2·#bad, logit(neg) = 0.

    It has no tokenizer, no embeddings and no attention: only ``logits``.
    """

    input_kind = "text"
    class_names = ["neg", "pos"]
    device = torch.device("cpu")
    differentiable = False
    input_range = None
    format = "keyword"
    has_attention = False
    has_features = False

    @property
    def n_classes(self) -> int:
        return 2

    def logits(self, inputs: Sequence[str]) -> torch.Tensor:
        score = [2.0 * t.split().count("good") - 2.0 * t.split().count("bad") for t in inputs]
        return torch.tensor([[0.0, s] for s in score])

    def to_batch(self, inputs: Sequence[str]) -> list[str]:
        return [str(t) for t in inputs]

    @torch.no_grad()
    def predict_logits(self, inputs: Sequence[str], batch_size: int = 256, progress: object = None) -> torch.Tensor:
        return torch.cat([self.logits(list(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)])

    def attention(self, inputs: Sequence[str]) -> list[torch.Tensor]:
        raise NotImplementedError("the keyword model has no attention maps")


def gendered_text_audit_data(folder) -> dict:  # noqa: ANN001 - a pathlib.Path
    """``tiny_bert`` saved to ``folder/bert`` and 40 texts starting 'he' or 'she' (labels alternate) in
    ``folder/eval.csv``: the config keys of an audit of them (model, data, output)."""
    import pandas as pd

    model, tokenizer = tiny_bert()
    model.save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    texts = [f"{'he' if i % 2 else 'she'} {t}" for i, t in enumerate(sentences(40))]
    pd.DataFrame({"text": texts, "label": [i % 2 for i in range(40)]}).to_csv(folder / "eval.csv", index=False)
    return {"model.path": str(folder / "bert"), "device": "cpu", "data.eval.path": str(folder / "eval.csv"),
            "data.eval.target": "label", "data.eval.text_column": "text", "output.dir": str(folder / "out")}
