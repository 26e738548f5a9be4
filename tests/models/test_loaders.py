"""Every model format loads into an adapter that gives the same logits as the original model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_CNN_CLASS, TinyCNN

from models.adapter import Normalize, TorchAdapter, resolve_device
from models.errors import ModelInputError
from models.loaders import detect_format, load_model

X = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _expected(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(X)


def test_torchscript(torchscript_file: Path, tiny_cnn: TinyCNN) -> None:
    assert detect_format(torchscript_file) == "torchscript"
    adapter = load_model(torchscript_file, device="cpu", input_kind="image")
    torch.testing.assert_close(adapter.predict_logits(X.numpy(), batch_size=2), _expected(tiny_cnn))
    assert adapter.class_names == ["0", "1", "2"]
    assert adapter.differentiable and adapter.has_features
    # No forward hooks on TorchScript: the input of the Linear layer that makes the logits, read by
    # swapping its weight for the identity for one pass, equals the eager model's penultimate features.
    feats = adapter.predict_features(X.numpy(), batch_size=2)
    with torch.no_grad():
        expected = torch.relu(tiny_cnn.fc1(tiny_cnn.pool(torch.relu(tiny_cnn.conv(X))).flatten(1)))
    torch.testing.assert_close(feats, expected)
    torch.testing.assert_close(adapter.predict_logits(X.numpy()), _expected(tiny_cnn))  # weights put back


class _Unused(torch.nn.Module):
    """Its last registered Linear is never called; the one that makes the logits comes before it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU())
        self.fc = torch.nn.Linear(6, 3)
        self.aux = torch.nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


class _Scaled(_Unused):
    """The logits are the last Linear's output times two: its input is not the model's features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x)) * 2.0


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_features_only_when_the_last_linear_makes_the_logits(how: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(7, 4)
    good, bad = _Unused().eval(), _Scaled().eval()
    to_script = (lambda m: torch.jit.script(m)) if how == "script" else (lambda m: torch.jit.trace(m, x))
    adapter = TorchAdapter(to_script(good), input_kind="tabular", device=torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(adapter.predict_features(x.numpy()), good.body(x))
    adapter = TorchAdapter(to_script(bad), input_kind="tabular", device=torch.device("cpu"))
    assert adapter.has_features  # a candidate, until it is tried
    with pytest.raises(NotImplementedError, match="penultimate features are unknown"):
        adapter.predict_features(x.numpy())
    assert not adapter.has_features
    with torch.no_grad():
        torch.testing.assert_close(adapter.predict_logits(x.numpy()), bad(x))  # weights put back
    # The first logits call (the runner's dry run) already settles it, before any check asks.
    adapter = TorchAdapter(to_script(bad), input_kind="tabular", device=torch.device("cpu"))
    adapter.predict_logits(x[:2].numpy())
    assert not adapter.has_features


def test_safetensors_with_class(safetensors_file: Path, tiny_cnn: TinyCNN) -> None:
    adapter = load_model(safetensors_file, model_class=TINY_CNN_CLASS, device="cpu", input_kind="image")
    torch.testing.assert_close(adapter.predict_logits(X), _expected(tiny_cnn))
    feats = adapter.predict_features(X)
    assert feats.shape == (5, 8)  # input of the last Linear
    with torch.no_grad():
        expected = torch.relu(tiny_cnn.fc1(tiny_cnn.pool(torch.relu(tiny_cnn.conv(X))).flatten(1)))
    torch.testing.assert_close(feats, expected)


def test_state_dict_with_class(state_dict_file: Path, tiny_cnn: TinyCNN) -> None:
    assert detect_format(state_dict_file) == "state_dict"
    adapter = load_model(state_dict_file, model_class=TINY_CNN_CLASS, device="cpu", input_kind="image")
    torch.testing.assert_close(adapter.predict_logits(X), _expected(tiny_cnn))


def test_export_program_static_batch_is_padded(tmp_path: Path, tiny_cnn: TinyCNN) -> None:
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(tiny_cnn, (X[:4],)), str(path))
    assert detect_format(path) == "export"
    adapter = load_model(path, device="cpu", input_kind="image")
    assert isinstance(adapter, TorchAdapter) and adapter.fixed_batch_size == 4
    torch.testing.assert_close(adapter.predict_logits(X, batch_size=3), _expected(tiny_cnn))
    # No Linear submodules to hook: the graph is rewired to return the input of the linear op that makes the output.
    assert adapter.has_features
    with torch.no_grad():
        expected = torch.relu(tiny_cnn.fc1(tiny_cnn.pool(torch.relu(tiny_cnn.conv(X))).flatten(1)))
    torch.testing.assert_close(adapter.predict_features(X, batch_size=3), expected)


def test_export_program_whose_output_is_not_a_linear_has_no_features(tmp_path: Path) -> None:
    path = tmp_path / "scaled.pt2"
    torch.manual_seed(0)
    x = torch.randn(4, 4)
    torch.export.save(torch.export.export(_Scaled().eval(), (x,)), str(path))
    adapter = load_model(path, device="cpu", input_kind="tabular")
    assert not adapter.has_features
    with torch.no_grad():
        torch.testing.assert_close(adapter.predict_logits(x), torch.export.load(str(path)).module()(x))


def test_onnx_is_black_box(tmp_path: Path, tiny_cnn: TinyCNN) -> None:
    pytest.importorskip("onnxscript")
    path = tmp_path / "model.onnx"
    torch.onnx.export(tiny_cnn, (X[:2],), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    adapter = load_model(path, device="cpu", input_kind="image")
    assert not adapter.differentiable
    torch.testing.assert_close(adapter.predict_logits(X), _expected(tiny_cnn), rtol=1e-4, atol=1e-5)


def test_preprocessing_lives_inside_the_adapter(safetensors_file: Path, tiny_cnn: TinyCNN) -> None:
    adapter = load_model(safetensors_file, model_class=TINY_CNN_CLASS, device="cpu", input_kind="image",
                         mean=[0.5], std=[0.25])
    with torch.no_grad():
        expected = tiny_cnn((X - 0.5) / 0.25)
    torch.testing.assert_close(adapter.predict_logits(X), expected)
    # Gradients flow back to the raw input through the normalisation.
    x = X.clone().requires_grad_(True)
    adapter.logits(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_sidecar_metadata_names_zoo_architecture(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("lenet5", n_classes=3).eval()
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    (tmp_path / "m.json").write_text(json.dumps({"architecture": "lenet5", "init_args": {"n_classes": 3},
                                                 "class_names": ["a", "b", "c"], "input_kind": "image"}))
    adapter = load_model(tmp_path / "m.safetensors", device="cpu")
    assert adapter.class_names == ["a", "b", "c"] and adapter.input_kind == "image"
    torch.testing.assert_close(adapter.predict_logits(X), _expected(model))


def test_huggingface_text_folder(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "a"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    adapter = load_model(folder, device="cpu")
    assert adapter.input_kind == "text" and adapter.class_names == ["neg", "pos"]
    texts = ["good movie", "the bad movie", "a"]
    with torch.no_grad():
        expected = model(**tok(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(adapter.predict_logits(texts, batch_size=2), expected, rtol=1e-4, atol=1e-5)
    attn = adapter.attention(texts)
    assert len(attn) == 1 and attn[0].shape[:2] == (3, 2)
    assert adapter.predict_features(texts).shape == (3, 16)


def test_pickle_refused_without_opt_in(pickle_file: Path) -> None:
    assert detect_format(pickle_file) == "pickle"
    with pytest.raises(ModelInputError, match="is a pickle, and unpickling can run arbitrary code.*--allow-pickle"):
        load_model(pickle_file, device="cpu")


def test_pickle_loads_with_opt_in(pickle_file: Path, tiny_cnn: TinyCNN) -> None:
    adapter = load_model(pickle_file, device="cpu", allow_pickle=True, input_kind="image")
    torch.testing.assert_close(adapter.predict_logits(X), _expected(tiny_cnn))


def test_pickle_suffix_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ModelInputError, match="is a pickle"):
        load_model(path, device="cpu")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "missing.pt", "does not exist"),
        (lambda p: (p / "x.txt").write_text("hello") and p / "x.txt", "unsupported format"),
        (lambda p: (p / "x.pt").write_bytes(b"not a torch file") and p / "x.pt", "cannot be read"),
        (lambda p: (p / "x.onnx").write_bytes(b"garbage") and p / "x.onnx", "not a loadable ONNX model"),
        (lambda p: p, "has no config.json"),
    ],
)
def test_bad_model_files(tmp_path: Path, setup, message: str) -> None:
    with pytest.raises(ModelInputError, match=message):
        load_model(setup(tmp_path), device="cpu")


def test_weights_without_class(safetensors_file: Path) -> None:
    with pytest.raises(ModelInputError, match="holds only weights; name the model class with --model-class"):
        load_model(safetensors_file, device="cpu")


def test_weights_class_mismatch(safetensors_file: Path) -> None:
    with pytest.raises(ModelInputError, match="do not match TinyCNN"):
        load_model(safetensors_file, model_class=TINY_CNN_CLASS, init_args={"n_classes": 5}, device="cpu")


def test_bad_class_spec(safetensors_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelInputError, match="has no nn.Module class 'Nope'; found: BandClassifier, StridedCNN, TinyCNN, TinyMLP"):
        load_model(safetensors_file, model_class=TINY_CNN_CLASS.replace("TinyCNN", "Nope"), device="cpu")
    with pytest.raises(ModelInputError, match="does not exist"):
        load_model(safetensors_file, model_class=f"{tmp_path}/none.py:X", device="cpu")
    with pytest.raises(ModelInputError, match="got an unexpected keyword argument"):
        load_model(safetensors_file, model_class=TINY_CNN_CLASS, init_args={"bogus": 1}, device="cpu")


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ModelInputError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_normalize_rejects_zero_std() -> None:
    with pytest.raises(ModelInputError, match="std must not contain 0"):
        Normalize([0.0], [0.0])
    assert np.allclose(Normalize([1.0, 2.0], [2.0, 4.0])(torch.ones(1, 2, 1, 1)).flatten().numpy(), [0.0, -0.25])
