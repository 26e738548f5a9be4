"""Attention maps and rollout: closed forms, a reference implementation of the paper's formula, the
Hugging Face maps against transformers' own output, and the check on a ViT, a BERT and a model
without attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.checks.attention import Attention, AttentionConfig, attention_entropy, attention_rollout
from audit.context import AuditContext
from audit.data import AuditDataset
from audit.errors import SkipCheck
from models.adapter import HFTextAdapter, TorchAdapter
from tiny_text import KeywordTextAdapter, sentences, tiny_bert

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def _random_maps(layers: int, batch: int, heads: int, tokens: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(batch, heads, tokens, tokens, generator=g), -1) for _ in range(layers)]


def test_rollout_closed_forms_and_reference() -> None:
    eye = torch.eye(4).expand(1, 2, 4, 4)
    torch.testing.assert_close(attention_rollout([eye, eye]), torch.eye(4, dtype=torch.float64)[None])
    uniform = torch.full((1, 1, 4, 4), 0.25)
    torch.testing.assert_close(attention_rollout([uniform]), (0.5 * torch.full((4, 4), 0.25) + 0.5 * torch.eye(4)).double()[None])
    maps = _random_maps(3, 2, 2, 5)
    # Reference: Abnar & Zuidema's Eq. 1, written out in NumPy for one sample.
    ref = np.eye(5)
    for a in maps:
        aug = 0.5 * a[1].mean(0).numpy() + 0.5 * np.eye(5)
        aug /= aug.sum(-1, keepdims=True)
        ref = aug @ ref
    out = attention_rollout(maps)
    np.testing.assert_allclose(out[1].numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(out.sum(-1).numpy(), 1.0, rtol=1e-9)  # rows stay distributions
    assert not torch.allclose(attention_rollout(maps, "max"), out)


def test_attention_entropy_uniform_is_one_and_one_hot_is_zero() -> None:
    uniform = torch.full((1, 1, 4, 4), 0.25)
    one_hot = torch.eye(4).expand(1, 1, 4, 4)
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert float(attention_entropy(uniform, mask)[0]) == pytest.approx(1.0)
    assert float(attention_entropy(one_hot, mask)[0]) == pytest.approx(0.0, abs=1e-9)


def _ctx(adapter: object, inputs: object, n: int, kind: str) -> AuditContext:
    ds = AuditDataset(name="eval", inputs=inputs, target=np.zeros(n, dtype=np.int64), class_names=None,  # type: ignore[arg-type]
                      sensitive_features=None, feature_names=None, input_kind=kind, path="mem", format="npz", sha256="0")  # type: ignore[arg-type]
    return AuditContext(adapter, {"eval": ds}, seed=0)  # type: ignore[arg-type]


def test_check_on_vit_reads_every_layer_and_head_and_measures_rollout() -> None:
    from models.architectures.vit import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(depth=2, heads=2).eval()
    adapter = TorchAdapter(vit, input_kind="image", device=CPU, input_range=(0.0, 1.0))
    x = np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)
    out = Attention(AttentionConfig(max_samples=3, curve_steps=4)).run(_ctx(adapter, x, 10, "image"))
    groups = {m.group for m in out.metrics if m.name == "attention_entropy"}
    assert groups == {f"layer {layer} head {h}" for layer in (1, 2) for h in (1, 2)}
    head = {m.name: m.value for m in out.metrics if m.group is None}
    assert head["rollout_faithfulness_gap"] == pytest.approx(head["rollout_insertion_auc"] - head["rollout_deletion_auc"])
    grid = next(e for e in out.evidence if e.title.startswith("Attention maps of row"))
    assert grid.data["titles"] == ["L1 H1", "L1 H2", "L2 H1", "L2 H2", "rollout"]
    assert np.asarray(grid.data["images"][0]).shape == (17, 17)  # [CLS] + 4 × 4 patches
    assert "first ([CLS]) token" in out.method


def test_check_on_bert_matches_transformers_attentions_and_highlights_words() -> None:
    model, tok = tiny_bert()
    adapter = HFTextAdapter(model, tok, device=CPU)
    texts = sentences(10, seed=3)
    with torch.no_grad():
        ref = model(**tok(texts[:2], padding=True, return_tensors="pt"), output_attentions=True).attentions
    for a, b in zip(adapter.attention(texts[:2]), ref):
        torch.testing.assert_close(a, b)
    out = Attention(AttentionConfig(max_samples=3, curve_steps=4)).run(_ctx(adapter, texts, 10, "text"))
    assert {m.name for m in out.metrics if m.group is None} == {"rollout_faithfulness_gap", "rollout_deletion_auc",
                                                               "rollout_insertion_auc"}
    highlights = next(e for e in out.evidence if e.title == "Token highlights: attention rollout")
    assert highlights.kind == "text_highlights" and not highlights.data["signed"]
    first_row = highlights.data["rows"][0]
    assert first_row["words"][0] == texts[first_row["row"]].split()[0]
    assert len(first_row["scores"]) == len(first_row["words"]) and min(first_row["scores"]) >= 0


def test_attention_asked_of_models_without_attention_is_skipped(tiny_mlp: torch.nn.Module) -> None:
    adapter = TorchAdapter(tiny_mlp, input_kind="tabular", device=CPU)
    with pytest.raises(SkipCheck, match="has no attention layers"):
        Attention().run(_ctx(adapter, np.zeros((4, 4), dtype=np.float32), 4, "tabular"))
    with pytest.raises(SkipCheck, match="has no attention layers"):
        Attention().run(_ctx(KeywordTextAdapter(), ["good", "bad"], 2, "text"))


def test_check_on_the_zoo_transformer_behind_a_word_vocabulary() -> None:
    from models.adapter import TokenizedTextAdapter
    from models.datasets import WordVocab
    from models.zoo import create_model

    from tiny_text import WORDS

    vocab = WordVocab.build(WORDS, min_count=1, max_len=8)
    torch.manual_seed(0)
    model = create_model("transformer", vocab_size=len(vocab), n_classes=2).eval()
    adapter = TokenizedTextAdapter(TorchAdapter(model, input_kind="sequence", device=CPU), vocab.encode)
    texts = sentences(10, seed=5)
    out = Attention(AttentionConfig(max_samples=3, curve_steps=4)).run(_ctx(adapter, texts, 10, "text"))
    assert "mean over (non-padding) tokens" in out.method  # mean-pooled model: no [CLS] token
    assert "rollout_faithfulness_gap" in {m.name for m in out.metrics}  # words found without character offsets


def test_rollout_faithfulness_not_measured_is_null_with_the_reason() -> None:
    """Token ids without a tokenizer: attention is read, but the rollout's faithfulness cannot be measured, so its
    metrics are null with the reason (not missing, not zero)."""
    from models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("transformer", vocab_size=50, n_classes=2).eval()
    adapter = TorchAdapter(model, input_kind="sequence", device=CPU)
    ids = np.random.default_rng(0).integers(1, 50, size=(6, 8))
    out = Attention(AttentionConfig(max_samples=3, curve_steps=4)).run(_ctx(adapter, ids, 6, "sequence"))
    head = {m.name: m for m in out.metrics if m.group is None}
    for name in ("rollout_faithfulness_gap", "rollout_deletion_auc", "rollout_insertion_auc"):
        assert head[name].value is None and "text and image models only" in head[name].method
    assert "could not be measured" in out.summary
