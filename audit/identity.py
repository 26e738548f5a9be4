"""What a reader needs to know about the audited model: its name, version and owner (``model.name``,
``model.version``, ``model.owner``), its architecture and size, its input and the data it was trained on.

This heads the report, the model card and the JUnit suite, in place of a file path or adapter internals.
Nothing is guessed: a fact the model file, its ``model.json`` sidecar and the config do not state is
``None`` ("not stated" in the reports).
"""

from __future__ import annotations

from pathlib import PurePath
import re
from typing import Any

import numpy as np

from audit.results import ModelInfo
from audit.rows import Rows

#: File suffixes of model files, stripped from a file name to name the model.
MODEL_SUFFIXES = (".pt", ".pth", ".pt2", ".safetensors", ".onnx", ".bin", ".ckpt", ".ts", ".jit", ".torchscript",
                  ".pkl", ".pickle", ".joblib")
#: File stems that name no model (the library's default file names): the folder names the model instead.
GENERIC_STEMS = frozenset({"model", "pytorch_model", "weights", "checkpoint", "best", "last", "final", "export",
                           "program", "net", "network"})


def default_model_name(path: str | PurePath) -> str:
    """The model's name when ``model.name`` is not set: the file name without its model suffixes
    (``resnet18.int8.pt`` → ``resnet18.int8``), or the folder's name for a Hugging Face folder and for a
    file with a generic name (``…/digits-lenet-seed0/model.safetensors`` → ``digits-lenet-seed0``); a compare
    variant, ``<base path> [<spec>]``, is ``<base name> [<spec>]``."""
    variant = re.fullmatch(r"(.+) \[(.+)\]", str(path))  # compare's "<base path> [<variant spec>]"
    if variant:
        return f"{default_model_name(variant.group(1))} [{variant.group(2)}]"
    p = PurePath(str(path))
    name = p.name
    while name and any(name.lower().endswith(s) for s in MODEL_SUFFIXES):
        name = name[: name.lower().rindex(".")]
    if not name or name.lower() in GENERIC_STEMS:
        return p.parent.name or name or p.name
    return name


def _architecture(module: Any, meta: dict[str, Any]) -> str | None:
    """The model's class: the zoo architecture its model.json names, the Hugging Face config's architectures,
    a TorchScript module's original class name, or the torch module's class; ``None`` for a black box."""
    import torch

    if isinstance(meta.get("architecture"), str):
        return f"{meta['architecture']} (deepaudit model zoo)"
    config = getattr(module, "config", None)
    names = getattr(config, "architectures", None)
    if names:
        return ", ".join(str(n) for n in names) + " (Hugging Face)"
    if isinstance(module, torch.jit.ScriptModule):
        return f"{module.original_name} (TorchScript)"
    if isinstance(module, torch.nn.Module):
        return type(module).__name__
    return None


def _input_spec(adapter: Any, inputs: Any) -> dict[str, Any]:
    """Kind, per-sample shape, dtype and valid range of the model's input, from the evaluation data."""
    spec: dict[str, Any] = {"input_kind": adapter.input_kind,
                            "input_range": [float(v) for v in adapter.input_range] if adapter.input_range else None}
    if isinstance(inputs, list):
        spec.update(input_shape=None, input_dtype="str (raw text)")
    elif isinstance(inputs, (np.ndarray, Rows)):  # a data set's rows: the model-ready shape and dtype
        spec.update(input_shape=[int(d) for d in inputs.shape[1:]], input_dtype=str(inputs.dtype))
    return spec


def model_info(identity: tuple[str | None, str | None, str | None], adapter: Any, inputs: Any, *,
               module: Any, n_parameters: int | None, meta: dict[str, Any] | None,
               path: str) -> ModelInfo:
    """The identity and facts of the audited model.

    Parameters
    ----------
    identity : (name, version, owner)
        ``model.name``, ``model.version``, ``model.owner`` (each ``None`` when not set).
    adapter : models.adapter.ModelAdapter
    inputs : audit.rows.Rows, numpy.ndarray or list of str
        The evaluation inputs (their per-sample shape and dtype are the model's input spec).
    module : torch.nn.Module or None
        The torch module behind the adapter, when there is one.
    n_parameters : int, optional
    meta : dict, optional
        The model's ``model.json`` sidecar (architecture, training data).
    path : str
        The model file or folder, named by the default name.
    """
    meta = meta or {}
    name, version, owner = identity
    training = meta.get("training_data") if isinstance(meta.get("training_data"), dict) else {}
    return ModelInfo(
        name=name or default_model_name(path), name_source="config" if name else "file",
        version=version, owner=owner, architecture=_architecture(module, meta),
        n_parameters=n_parameters, **_input_spec(adapter, inputs),
        training_data=str(training["source"]) if training.get("source") else None,
        training_data_sha256=str(training["sha256"]) if training.get("sha256") else None,
        training_samples=int(training["n_train"]) if isinstance(training.get("n_train"), int) else None)


__all__ = ["GENERIC_STEMS", "MODEL_SUFFIXES", "default_model_name", "model_info"]
