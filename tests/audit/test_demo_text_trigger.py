"""The tweets demo gives the backdoor simulation a trigger its word vocabulary holds (the default 'cf' is not in it)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

import audit.demo


def test_tweets_demo_triggers_with_the_vocabularys_rarest_word(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "tweets"
    folder.mkdir()
    for role in ("test", "train"):
        np.savez(folder / f"{role}.npz", x=np.zeros((4, 3), np.int64), y=np.array([0, 1, 0, 1]),
                 text=np.array(["a b", "c", "d e", "f"]))
    (folder / "model.safetensors").write_bytes(b"")
    spec = {"format": "npz", "features": "x", "target": "y", "raw_text": "text"}
    meta = {"tokenizer": {"type": "word", "vocab": ["<pad>", "<unk>", "the", "rally", "zimmerman"]},
            "test_data": {**spec, "file": "test.npz"}, "train_data": {**spec, "file": "train.npz"}}
    monkeypatch.setattr(audit.demo, "train_recipe",
                        lambda *a, **k: SimpleNamespace(weights=folder / "model.safetensors", meta=meta))
    cfg = audit.demo.demo_config(tmp_path / "out", name="tweets", cache_dir=tmp_path)
    assert cfg.checks["poisoning.backdoor_simulation"]["text_trigger"] == "zimmerman"
