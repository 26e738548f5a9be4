"""Training recipes: each trains (1 epoch, a small subsample), writes files the audit loads, reloads
through the sidecar with the same logits, and is reused from the cache."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.datasets import WordVocab, words
from models.errors import ModelInputError
from models.adapter import TokenizedTextAdapter
from models.loaders import load_model
from models.recipes import RECIPES, get_recipe, train_recipe

SMALL_N = {"tweets-minilm": 60}  # rows of the data set each test recipe trains and tests on
FAST = [n for n in RECIPES if n != "tweets-minilm"]


def _inputs(result) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    meta = result.meta
    if result.test_data.suffix == ".csv":
        frame = pd.read_csv(result.test_data)
        x = frame[meta["feature_names"]].to_numpy(np.float32)
        y = frame[meta["test_data"]["target"]].map({c: i for i, c in enumerate(meta["class_names"])}).to_numpy()
        assert set(meta["test_data"]["sensitive_features"]) <= set(frame.columns)
        return x, y
    with np.load(result.test_data, allow_pickle=False) as npz:
        return npz["x"], npz["y"]


def _check_recipe(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    result = train_recipe(name, out, epochs=1, n_samples=SMALL_N.get(name, 200))
    assert not result.cached and result.model is not None
    for f in ("model.safetensors", "model.json"):
        assert (out / f).is_file()
    meta = json.loads(result.metadata.read_text())
    for key in ("architecture", "init_args", "input_kind", "class_names", "training_data", "metrics", "recipe"):
        assert key in meta
    assert len(meta["training_data"]["sha256"]) == 64 and meta["recipe"]["epochs"] == 1

    x, y = _inputs(result)
    adapter = load_model(result.weights, device="cpu")  # no code, no arguments: the sidecar says everything
    if "tokenizer" in meta:  # a token-id text model takes raw text through the tokenizer in its sidecar
        assert isinstance(adapter, TokenizedTextAdapter) and adapter.input_kind == "text"
        with np.load(result.test_data, allow_pickle=False) as npz:
            texts = [str(t) for t in npz["text"]]
        torch.testing.assert_close(adapter.predict_logits(texts, batch_size=64),
                                   adapter.inner.predict_logits(x, batch_size=64), rtol=1e-4, atol=1e-4)
        adapter = adapter.inner
    assert adapter.input_kind == meta["input_kind"] and adapter.class_names == meta["class_names"]
    logits = adapter.predict_logits(x, batch_size=64)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        pre = meta.get("preprocessing") or {}
        if "mean" in pre:
            from models.adapter import Normalize

            xt = Normalize(pre["mean"], pre["std"])(xt)
        expected = result.model(xt)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    acc = float((logits.argmax(1).numpy() == y).mean())
    assert acc == pytest.approx(meta["metrics"]["test_accuracy"])
    assert meta["metrics"]["n_test"] == len(y)

    again = train_recipe(name, out, epochs=1, n_samples=SMALL_N.get(name, 200))
    assert again.cached and again.weights == result.weights and again.meta == meta


@pytest.mark.parametrize("name", FAST)
def test_recipe(name: str, tmp_path: Path) -> None:
    _check_recipe(name, tmp_path)


def test_minilm_recipe(tmp_path: Path) -> None:
    """The pretrained MiniLM head trains on a tiny subset, offline."""
    _check_recipe("tweets-minilm", tmp_path)


def test_tabular_recipe_audit_columns(tmp_path: Path) -> None:
    result = train_recipe("arrests-mlp", tmp_path, epochs=1, n_samples=100)
    assert not train_recipe("arrests-mlp", tmp_path, epochs=1, n_samples=100, seed=1).cached  # new params: retrain
    assert not train_recipe("arrests-mlp", tmp_path, epochs=2, n_samples=100, seed=1).cached
    frame = pd.read_csv(result.test_data)
    assert {"released", "colour", "sex"} <= set(frame.columns)
    features = [c for c in frame.columns if c not in ("released", "colour", "sex")]
    assert features == result.meta["feature_names"]  # the audit's default feature columns, in model order
    assert "employed=Yes" in features and not any(f.startswith(("colour=", "sex=")) for f in features)
    assert len(result.meta["preprocessing"]["mean"]) == len(features) == result.meta["init_args"]["n_features"]


def test_text_recipe_vocabulary_round_trip(tmp_path: Path) -> None:
    result = train_recipe("tweets-gru", tmp_path, epochs=1, n_samples=100)
    vocab = WordVocab.from_json(result.meta["tokenizer"])
    with np.load(result.test_data, allow_pickle=False) as npz:
        x, text = npz["x"], npz["text"]
    np.testing.assert_array_equal(vocab.encode(list(text)), x)  # raw text re-encodes to the saved ids
    assert len(vocab) == result.meta["init_args"]["vocab_size"]


def test_word_vocab_is_deterministic() -> None:
    texts = ["Great rally tonight!", "great people, great rally", "see https://t.co/x"]
    a, b = WordVocab.build(texts, min_count=1, max_len=6), WordVocab.build(list(reversed(texts)), min_count=1, max_len=6)
    assert a == b and a.tokens[:3] == ("<pad>", "<unk>", "great")
    ids = a.encode(["great unknownword"])
    assert ids.shape == (1, 6) and ids[0, 1] == 1 and ids[0, 2:].sum() == 0
    assert words("Visit https://x.y/z NOW") == ["visit", "httpurl", "now"]


def test_unknown_recipe_lists_close_matches() -> None:
    with pytest.raises(ModelInputError, match="unknown recipe 'digits-lenet'.*'digits-lenet5'"):
        get_recipe("digits-lenet")


def test_bad_epochs(tmp_path: Path) -> None:
    with pytest.raises(ModelInputError, match="'epochs' parameter"):
        train_recipe("digits-lenet5", tmp_path, epochs=0)


def test_mismatched_weights_name_key_and_shapes(tmp_path: Path) -> None:
    result = train_recipe("arrests-mlp", tmp_path, epochs=1, n_samples=100)
    state = load_file(str(result.weights))
    state["head.weight"] = torch.zeros(3, state["head.weight"].shape[1])
    save_file(state, str(result.weights))
    with pytest.raises(ModelInputError, match=r"head\.weight.*\(3, 64\).*\(2, 64\)"):
        load_model(result.weights, device="cpu")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path, umask: int) -> None:
    """Issue 15: `models train` wrote every file 0600 (mkstemp's mode); a new file now gets 0666 less the umask,
    as open() gives it, and a file that exists keeps its mode."""
    from models.train import atomic_write_bytes

    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "model.json", b"{}")
        kept = tmp_path / "kept.bin"
        kept.write_bytes(b"old")
        kept.chmod(0o640)
        atomic_write_bytes(kept, b"new")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.json").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.bin", "model.json"]
