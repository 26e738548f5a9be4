"""The model registry: one name per architecture, created by one entry point (after timm).

>>> from models.zoo import create_model, list_models
>>> list_models("lenet*")
['lenet5']
>>> model = create_model("lenet5", in_channels=1, n_classes=10, image_size=8)

Architectures register themselves with :func:`register_model` in the module that defines them;
the modules are imported explicitly in :data:`_MODULES` (no star-import side effects).
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from models.errors import ModelInputError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
#: Modules that define architectures; imported once, in this order, on first use.
_MODULES = (
    "models.architectures.cnn",
    "models.architectures.resnet",
    "models.architectures.mlp",
    "models.architectures.rnn",
    "models.architectures.transformer",
    "models.architectures.vit",
    "models.architectures.hf",
)
_loaded = False


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a factory (a class or a function returning an ``nn.Module``) under ``name``."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        for mod in _MODULES:
            importlib.import_module(mod)
        _loaded = True


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with constructor ``kwargs``."""
    _ensure_loaded()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ModelInputError(f"unknown model {name!r}.{hint} Known: {', '.join(sorted(_REGISTRY))}.")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise ModelInputError(f"create_model({name!r}) got bad arguments: {exc}.") from None
