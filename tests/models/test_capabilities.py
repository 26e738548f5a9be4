"""``ModelAdapter.capabilities``: what each adapter type declares it offers, on a small model of that type, and
that the declaration follows the adapter's state (TorchScript features decided on the first forward pass,
``differentiable`` switched off for token ids)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import TINY_CNN_CLASS, TinyCNN
from tiny_text import KeywordTextAdapter, tiny_bert
from torch import nn

from audit.registry import NEEDS
from models.adapter import Capabilities, HFTextAdapter, ModelAdapter, TokenizedTextAdapter, TorchAdapter
from models.datasets import WordVocab
from models.loaders import load_model
from models.variants import make_variant, variant_adapter
from models.zoo import create_model

X = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
TEXTS = ["great rally tonight", "fake news media", "thank you great people"]
CPU = torch.device("cpu")


def _caps(**given: object) -> Capabilities:
    return Capabilities(**given)


def test_torch_eager_declares_gradients_features_module_and_trainable(tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_file(TinyCNN().state_dict(), str(tmp_path / "m.safetensors"))
    adapter = load_model(tmp_path / "m.safetensors", model_class=TINY_CNN_CLASS, device="cpu", input_kind="image")
    assert adapter.capabilities == _caps(gradients=True, features=True, module=True, trainable=True)
    assert type(adapter.torch_model).__name__ == "TinyCNN"  # the --model-class file's class


def test_torchscript_is_not_trainable_and_its_features_are_known_after_the_first_forward_pass(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(TinyCNN().eval()), str(tmp_path / "m.ts.pt"))
    adapter = load_model(tmp_path / "m.ts.pt", device="cpu", input_kind="image")
    assert adapter.capabilities == _caps(gradients=True, features=True, module=True)
    adapter.logits(X)
    assert adapter.capabilities.features  # a Linear layer makes these logits


class Doubled(nn.Module):
    """Logits transformed after the last Linear layer: its input is not the penultimate feature."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x.flatten(1)))


def test_torchscript_features_turn_false_once_the_first_forward_pass_refutes_them() -> None:
    torch.manual_seed(0)
    adapter = TorchAdapter(torch.jit.script(Doubled().eval()), input_kind="image", device=CPU)
    assert adapter.capabilities.features  # not yet refuted: the candidate Linear counts until a forward pass
    adapter.logits(X)
    assert not adapter.capabilities.features and not adapter.has_features


def test_torch_export_with_a_fixed_batch_declares_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.export.save(torch.export.export(TinyCNN().eval(), (X,)), str(tmp_path / "m.pt2"))
    adapter = load_model(tmp_path / "m.pt2", device="cpu", input_kind="image")
    assert adapter.capabilities == _caps(gradients=True, features=True, module=True, trainable=True,
                                         fixed_batch_size=4)


def test_onnx_declares_logits_only(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    torch.onnx.export(TinyCNN().eval(), (X[:2],), str(tmp_path / "m.onnx"), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    adapter = load_model(tmp_path / "m.onnx", device="cpu", input_kind="image")
    assert adapter.capabilities == Capabilities()
    assert adapter.torch_model is None and adapter.token_offsets(["a"]) is None
    with pytest.raises(NotImplementedError, match="not a torch module"):
        adapter.as_module()


def test_hugging_face_text_declares_text_gradients_attention_and_tokenizer() -> None:
    model, tok = tiny_bert(layers=1)
    adapter = HFTextAdapter(model, tok, device=CPU)
    assert adapter.capabilities == _caps(gradients=True, features=True, attention=True, raw_text=True,
                                         tokenizer=True, embeddings=True, trainable=True)
    assert adapter.tokenizer is tok and adapter.torch_model is model


def test_token_id_text_declares_embeddings_through_its_inner_model() -> None:
    vocab = WordVocab.build(TEXTS, min_count=1, max_len=8)
    torch.manual_seed(0)
    inner = TorchAdapter(create_model("lstm", vocab_size=len(vocab), n_classes=2), input_kind="sequence", device=CPU)
    adapter = TokenizedTextAdapter(inner, vocab)
    assert adapter.capabilities == _caps(gradients=True, features=True, raw_text=True, tokenizer=True,
                                         embeddings=True, module=True, trainable=True)
    adapter.differentiable = False  # what the runner does for integer token ids without embeddings
    assert not adapter.capabilities.gradients and not adapter.capabilities.trainable


def test_token_id_text_loaded_from_a_model_json(tmp_path: Path) -> None:
    vocab = WordVocab.build(TEXTS, min_count=1, max_len=8)
    init = {"vocab_size": len(vocab), "n_classes": 2}
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in create_model("lstm", **init).state_dict().items()},
              str(tmp_path / "model.safetensors"))
    (tmp_path / "model.json").write_text(json.dumps({"architecture": "lstm", "init_args": init,
                                                     "input_kind": "sequence", "tokenizer": vocab.to_json()}))
    adapter = load_model(tmp_path / "model.safetensors", device="cpu")
    assert isinstance(adapter, TokenizedTextAdapter)
    caps = adapter.capabilities
    assert caps.raw_text and caps.tokenizer and caps.embeddings and caps.module and not caps.attention


def test_int8_variant_declares_its_float_twin_and_no_gradients() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    base = TorchAdapter(mlp, input_kind="tabular", device=CPU)
    variant = variant_adapter(make_variant(mlp, "int8_eager_dynamic", example_inputs=torch.rand(4, 6)), base)
    caps = variant.capabilities
    assert caps.float_twin and not caps.gradients and not caps.trainable and caps.module
    assert variant.float_twin is base and variant.variant_metadata["variant"] == "int8_eager_dynamic"
    assert base.capabilities.float_twin is False and base.variant_metadata is None
    assert pickle.loads(pickle.dumps(variant)).capabilities == caps


def test_black_box_text_model_declares_raw_text_only() -> None:
    assert KeywordTextAdapter().capabilities == _caps(raw_text=True)


def test_with_torch_model_derives_the_hooks_again() -> None:
    torch.manual_seed(0)
    adapter = TorchAdapter(nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.ReLU(), nn.Linear(5, 3)),
                           input_kind="image", device=CPU)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.ReLU(), nn.Linear(5, 3))
    clone = adapter.with_torch_model(other)
    assert clone.torch_model is other and adapter.torch_model is not other and type(clone) is TorchAdapter
    with torch.no_grad():
        expected = torch.relu(other[1](X.flatten(1)))
        torch.testing.assert_close(clone.features(X), expected)  # hooked on the new model's head, not the old


def test_the_model_facts_among_check_needs_are_capability_names() -> None:
    """One vocabulary: every ``NEEDS`` key about the model is a ``Capabilities`` field; the rest are data."""
    fields = {f.name for f in dataclasses.fields(Capabilities)}
    assert {"gradients", "features", "attention", "raw_text", "trainable"} <= fields
    assert set(NEEDS) - fields == {"labels", "reference", "ood", "sensitive_features"}


def test_every_adapter_class_inherits_the_declaration() -> None:
    import audit.checks.adversarial as adversarial

    for cls in (TorchAdapter, HFTextAdapter, TokenizedTextAdapter, KeywordTextAdapter, adversarial._Standardised):
        assert issubclass(cls, ModelAdapter) and isinstance(vars(ModelAdapter)["capabilities"], property)
