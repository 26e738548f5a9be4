"""Training helpers: a seeded classifier fit loop and atomic file writes.

The named recipes (data set + architecture + hyper-parameters) are in :mod:`models.recipes`;
:func:`train_digits_cnn` is kept as the demo's entry point and runs the ``digits-lenet5`` recipe.
Each recipe writes ``model.safetensors`` and ``model.json`` (architecture, constructor arguments,
classes, preprocessing, data hash, metrics), which :func:`models.loaders.load_model` reads back
without any code from the file, plus the held-out split for auditing.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.errors import ModelInputError

RECIPE_VERSION = 3  # 3: recipes also write the training split (train.npz / train.csv)


def _umask() -> int:
    """The process umask: from ``/proc/self/status`` where Linux gives it, else read by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half-written.

    The file gets the mode a plain ``open()`` would give it — 0666 less the umask (0644 under the usual
    022), not the 0600 of the temporary file — and a file that already exists keeps its own mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_atomic_write_bytes = atomic_write_bytes  # the name other modules used before recipes existed


def load_digits_split(seed: int = 0, test_size: float = 0.3) -> dict[str, np.ndarray]:
    """scikit-learn's bundled digits (1,797 8×8 images), scaled to [0, 1], stratified split."""
    from models.datasets import load_digits

    d = load_digits(seed=seed, test_size=test_size)
    return {"x_train": d.x_train, "y_train": d.y_train, "x_test": d.x_test, "y_test": d.y_test}


def fit_classifier(model: nn.Module, x: np.ndarray | Sequence[str], y: np.ndarray, *, epochs: int, lr: float = 1e-3,
                   batch_size: int = 64, seed: int = 0, device: str | torch.device = "cpu",
                   preprocess: nn.Module | None = None, weight_decay: float = 0.0,
                   sample_weight: np.ndarray | None = None,
                   forward: Callable[[Any], torch.Tensor] | None = None) -> nn.Module:
    """Plain cross-entropy training with Adam, seeded and batched on ``device``.

    Only parameters with ``requires_grad`` are optimised (a frozen encoder stays as it is).
    ``sample_weight`` (optional, ``(n,)``, non-negative) weights each sample's loss: the batch loss is
    ``mean(w_i * loss_i)``, scikit-learn's convention, so weights that average 1 (e.g. reweighing's)
    keep the learning rate's scale. Without it the loss is the plain mean, as before; the batch order
    does not depend on it.

    ``forward`` (optional) turns one batch of ``x`` into logits of ``model`` — e.g. a text adapter's
    ``logits`` over ``model``, which tokenises raw strings — so ``x`` may be a list of raw strings
    (each batch is then the list of its strings). Without it a batch is an array slice on the device,
    through ``preprocess``, given to ``model``.
    """
    texts = not isinstance(x, np.ndarray)
    if texts and forward is None:
        raise ModelInputError("fit_classifier takes a list of raw strings only with a forward function that "
                              "tokenises them (a text adapter's logits).")
    if len(x) != len(y):
        raise ModelInputError(f"fit_classifier got {len(x)} inputs and {len(y)} labels; give one label per input.")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    xt = None if texts else torch.from_numpy(x).to(device)  # type: ignore[arg-type]
    yt = torch.from_numpy(y).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    wt = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float32)
        if w.shape != (len(x),) or not np.all(np.isfinite(w)) or (w < 0).any():
            raise ModelInputError(f"The 'sample_weight' parameter of fit_classifier must be {len(x)} finite, "
                                  f"non-negative numbers, one per sample. Got shape {w.shape} instead.")
        wt = torch.from_numpy(w).to(device)
        per_sample = nn.CrossEntropyLoss(reduction="none")
    run = forward if forward is not None else model
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), batch_size):
            rows = order[start : start + batch_size]
            idx = rows.to(device)
            if xt is None:
                inputs: Any = [x[i] for i in rows.tolist()]
            else:
                inputs = preprocess(xt[idx]) if preprocess is not None else xt[idx]
            opt.zero_grad(set_to_none=True)
            if wt is None:
                loss = loss_fn(run(inputs), yt[idx])
            else:
                loss = (per_sample(run(inputs), yt[idx]) * wt[idx]).mean()
            loss.backward()
            opt.step()
    return model.eval()


def train_digits_cnn(out_dir: Path, *, seed: int = 0, epochs: int = 15, device: str = "cpu") -> Path:
    """Train ``lenet5`` on digits (the ``digits-lenet5`` recipe); returns the path of ``model.safetensors``.

    Reuses an existing result with the same recipe parameters, so the demo trains once.
    """
    from models.recipes import train_recipe

    return train_recipe("digits-lenet5", out_dir, seed=seed, epochs=epochs, device=device).weights
