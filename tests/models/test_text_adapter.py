"""TokenizedTextAdapter: a token-id model plus the tokenizer in its sidecar takes raw text, and its
gradients are taken over token embeddings — the same interface as HFTextAdapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from audit.config import validate_config
from audit.runner import load_inputs
from models.adapter import TokenizedTextAdapter, TorchAdapter
from models.datasets import WordVocab
from models.loaders import load_model
from models.zoo import create_model

TEXTS = ["great rally tonight", "fake news media", "thank you great people", "totally unknown words here"]


@pytest.fixture(params=["lstm", "transformer"])
def model_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    vocab = WordVocab.build(TEXTS, min_count=1, max_len=8)
    init = {"vocab_size": len(vocab), "n_classes": 2}
    torch.manual_seed(0)
    model = create_model(request.param, **init)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "model.json").write_text(json.dumps({
        "architecture": request.param, "init_args": init, "input_kind": "sequence", "class_names": ["a", "b"],
        "tokenizer": vocab.to_json()}))
    np.savez(tmp_path / "test.npz", x=vocab.encode(TEXTS * 3), y=np.array([0, 1, 0, 1] * 3),
             text=np.array(TEXTS * 3))
    return tmp_path


def test_raw_text_equals_token_ids(model_dir: Path) -> None:
    adapter = load_model(model_dir / "model.safetensors", device="cpu")
    assert isinstance(adapter, TokenizedTextAdapter) and adapter.input_kind == "text"
    assert adapter.class_names == ["a", "b"] and adapter.has_embeddings
    vocab = WordVocab.from_json(json.loads((model_dir / "model.json").read_text())["tokenizer"])
    with torch.no_grad():
        by_text = adapter.logits(TEXTS)
        by_ids = adapter.inner.logits(torch.from_numpy(vocab.encode(TEXTS)))
    torch.testing.assert_close(by_text, by_ids)
    assert not torch.equal(by_text[0], by_text[1])  # different texts, different logits: the text is really used


def test_logits_from_embeddings_match_and_carry_gradients(model_dir: Path) -> None:
    adapter = load_model(model_dir / "model.safetensors", device="cpu")
    enc = adapter.encode(TEXTS)
    emb = adapter.embed(enc).detach().requires_grad_(True)
    out = adapter.logits_from_embeddings(emb, enc)
    torch.testing.assert_close(out, adapter.logits(TEXTS))
    out[:, 1].sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    # the replacement is real: zeroed embeddings give other logits, and the hook is removed afterwards
    assert not torch.allclose(adapter.logits_from_embeddings(torch.zeros_like(emb), enc), out)
    torch.testing.assert_close(adapter.logits(TEXTS), out.detach())


def test_sequence_kind_keeps_the_id_model(model_dir: Path) -> None:
    adapter = load_model(model_dir / "model.safetensors", device="cpu", input_kind="sequence")
    assert isinstance(adapter, TorchAdapter) and adapter.input_kind == "sequence"


def test_runner_uses_text_or_ids_as_the_data_holds(model_dir: Path) -> None:
    base = {"model": {"path": str(model_dir / "model.safetensors")}, "device": "cpu"}
    cfg = validate_config({**base, "data": {"eval": {"path": str(model_dir / "test.npz"), "text_column": "text"}}})
    adapter, data = load_inputs(cfg)
    assert isinstance(adapter, TokenizedTextAdapter) and data["eval"].inputs[:2] == TEXTS[:2]
    cfg = validate_config({**base, "data": {"eval": {"path": str(model_dir / "test.npz")}}})
    adapter, data = load_inputs(cfg)
    assert isinstance(adapter, TorchAdapter) and adapter.input_kind == "sequence"


def test_compare_builds_text_variants_that_keep_the_tokenizer(model_dir: Path) -> None:
    from audit.compare import run_compare
    from audit.config import load_config

    cfg = load_config(None, {"model.path": str(model_dir / "model.safetensors"), "device": "cpu",
                             "data.eval.path": str(model_dir / "test.npz"), "data.eval.text_column": "text"},
                      ["energy.track=false", "checks.performance.n_resamples=20",
                       "checks.efficiency={min_seconds: 0, measure_energy: false}",
                       "checks.corruption.enabled=false", "checks.explanations.enabled=false",
                       "checks.ood.n_synthetic=20"])
    comparison = run_compare(cfg, variants=["pruned:0.5"])
    variant = comparison.entries[1].result
    assert variant.provenance.model["adapter"] == "TokenizedTextAdapter"
    adv = variant.check("adversarial")  # raw text reached the variant: the text attacks ran on it
    assert adv.summary.startswith("The strongest text attack (char_edit") and adv.metric("flip_rate").value is not None
    assert variant.check("performance").status != "error"


def test_unknown_tokenizer_and_trained_variants_of_text_models_are_clear_errors(model_dir: Path) -> None:
    from audit.compare import run_compare
    from audit.config import load_config
    from audit.errors import InputError
    from models.datasets import text_tokenizer
    from models.errors import ModelInputError

    with pytest.raises(ModelInputError, match="names a tokenizer .* deepaudit cannot rebuild"):
        text_tokenizer({"type": "sentencepiece"})
    np.savez(model_dir / "train.npz", text=np.array(TEXTS), y=np.array([0, 1, 0, 1]))
    cfg = load_config(None, {"model.path": str(model_dir / "model.safetensors"), "device": "cpu",
                             "data.eval.path": str(model_dir / "test.npz"), "data.eval.text_column": "text",
                             "data.reference.path": str(model_dir / "train.npz"),
                             "data.reference.text_column": "text"})
    with pytest.raises(InputError, match="for text models it is not supported yet"):
        run_compare(cfg, variants=["pgd_at"])


def test_vocabulary_lists_the_tokens_by_id(model_dir: Path) -> None:
    """A loaded word-vocabulary model, a bare TokenizedTextAdapter over a callable, a Hugging Face tokenizer and
    the MiniLM encoder of the sidecar all answer ``vocabulary()`` (index = id) or ``None``."""
    import sys

    from models.adapter import HFTextAdapter
    from models.datasets import MiniLMEncoder

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assets"))
    from tiny_text import VOCAB, tiny_bert

    adapter = load_model(model_dir / "model.safetensors", device="cpu")
    vocab = WordVocab.build(TEXTS, min_count=1, max_len=8)
    assert adapter.vocabulary() == list(vocab.tokens)
    assert adapter.token_ids(["great"])[0, 0].item() == adapter.vocabulary().index("great")
    inner = TorchAdapter(create_model("lstm", vocab_size=len(vocab), n_classes=2), input_kind="sequence",
                         device=torch.device("cpu"))
    assert TokenizedTextAdapter(inner, lambda texts: vocab.encode(texts)).vocabulary() is None
    model, tok = tiny_bert()
    assert HFTextAdapter(model, tok, device=torch.device("cpu")).vocabulary() == VOCAB
    minilm = MiniLMEncoder(16)
    words = minilm.vocabulary()
    assert len(words) == 30522 and words[minilm(["movie"])[0, 1]] == "movie"
