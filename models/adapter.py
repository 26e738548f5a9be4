"""ModelAdapter: one interface over every model kind.

Checks talk only to this interface. An adapter gives logits for a batch on its device, in the
*raw* input space (any normalisation lives inside the adapter, so attacks and explanations see
the inputs a user would), and says what else the model offers: input gradients
(``differentiable``), penultimate features, attention maps.

Three implementations cover the formats people ship:

- :class:`TorchAdapter` — any ``torch.nn.Module``: eager models, TorchScript, ``torch.export``
  programs.
- :class:`HFTextAdapter` — Hugging Face sequence classifiers with their tokenizer; inputs are
  raw strings, gradients are taken with respect to the input embeddings.
- :class:`OnnxAdapter` — ONNX through onnxruntime, a black box without gradients.

Every adapter pickles (``pickle``, and so Ray's cloudpickle) and unpickles in a fresh process: the
model travels in a portable form — a TorchScript module as its serialised archive, a ``torch.export``
program as its ``.pt2`` bytes, an eager module by pickle with the user files that define its classes
(``--model-class``) imported again first, an ONNX session as its file path (onnxruntime sessions do not
pickle; the file is reopened) — and what the adapter derives from the model (the hooked head, the
embedding layer) is derived again. Unpickling runs code, as any pickle does: only for adapters this
process or one you trust pickled.
"""

from __future__ import annotations

import abc
import importlib.util
import io
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from models.errors import ModelInputError

InputKind = Literal["image", "tabular", "text", "sequence"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an unavailable device is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelInputError(f"device {device!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelInputError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu or auto.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelInputError(
                f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelInputError(f"device {device!r} was asked for but MPS is not available here; use --device cpu or auto.")
    return dev


class Normalize(nn.Module):
    """``(x - mean) / std`` over the channel (images) or feature (tabular) axis."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channel_dim: int = 1) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ModelInputError(f"preprocessing: mean has {len(mean)} values but std has {len(std)}; give one per channel.")
        if any(s == 0 for s in std):
            raise ModelInputError("preprocessing: std must not contain 0.")
        self.channel_dim = channel_dim
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[self.channel_dim] = -1
        return (x - self.mean.view(shape)) / self.std.view(shape)


@dataclass(frozen=True)
class Capabilities:
    """What a model offers beyond logits, declared by its adapter (:attr:`ModelAdapter.capabilities`).

    Checks read this instead of probing the adapter. The names shared with a check's ``needs`` and
    ``uses`` (``audit.registry.NEEDS``) are the same words: ``gradients``, ``features``, ``attention``,
    ``raw_text``, ``trainable``.

    Attributes
    ----------
    gradients : bool
        Gradients of the logits with respect to the inputs exist (text: with respect to the embeddings,
        see ``embeddings``).
    features : bool
        Penultimate features (:meth:`ModelAdapter.features`). For TorchScript this turns false after the
        first forward pass when no ``Linear`` layer makes the logits; before it, the candidates count.
    attention : bool
        Attention maps (:meth:`ModelAdapter.attention`).
    raw_text : bool
        Inputs are raw strings (not token ids).
    tokenizer : bool
        :meth:`ModelAdapter.encode` turns raw strings into the model's input tensors.
    embeddings : bool
        :meth:`ModelAdapter.embed` and :meth:`ModelAdapter.logits_from_embeddings`: gradients over text.
    module : bool
        :meth:`ModelAdapter.as_module` gives a torch module from raw inputs to logits (Captum, ART).
    trainable : bool
        :attr:`ModelAdapter.torch_model` is a differentiable torch module that can be fine-tuned (not
        TorchScript). A ``model.json`` recipe, the other way to retrain, is a fact of the model file.
    float_twin : bool
        :attr:`ModelAdapter.float_twin` holds the float model a quantised or cast variant was made from.
    fixed_batch_size : int or None
        The only batch size the model takes (a static export); ``logits`` pads to it.
    """

    gradients: bool = False
    features: bool = False
    attention: bool = False
    raw_text: bool = False
    tokenizer: bool = False
    embeddings: bool = False
    module: bool = False
    trainable: bool = False
    float_twin: bool = False
    fixed_batch_size: int | None = None


class ModelAdapter(abc.ABC):
    """The interface every check talks to.

    Attributes
    ----------
    input_kind : {"image", "tabular", "text", "sequence"}
    class_names : list of str
        One name per logit, in logit order.
    device : torch.device
    differentiable : bool
        Whether gradients of the logits with respect to the inputs exist (for text models:
        with respect to the input embeddings).
    input_range : tuple of float, optional
        Valid range of raw inputs (e.g. ``(0, 1)`` for images); attacks clip to it.
    format : str
        The file format the model came from.
    preprocess : torch.nn.Module, optional
        Normalisation applied inside the adapter before the model.
    fixed_batch_size : int, optional
        The only batch size the model takes (a static export).
    tokenizer : object, optional
        The tokenizer of a text model on raw strings.
    max_length : int, optional
        The tokenizer's truncation length, where it has one.
    float_twin : ModelAdapter, optional
        For a quantised or cast variant: the float model it was made from (attacks transfer from it).
    variant_metadata : dict, optional
        For a variant built in memory: what ``models.variants`` measured about it.
    """

    input_kind: InputKind
    class_names: list[str]
    device: torch.device
    differentiable: bool = False
    input_range: tuple[float, float] | None = None
    format: str = "unknown"
    preprocess: nn.Module | None = None
    fixed_batch_size: int | None = None
    tokenizer: Any = None
    max_length: int | None = None
    float_twin: ModelAdapter | None = None
    variant_metadata: dict[str, Any] | None = None
    #: Attributes derived from the model (references into it): left out of a pickle, derived again on load.
    _derived: tuple[str, ...] = ()
    #: Attributes holding a model: pickled in a portable form (:func:`pack_model`).
    _models: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._derived}
        for name in self._models:
            if state.get(name) is not None:
                state[name] = pack_model(state[name])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for name in self._models:
            if state.get(name) is not None:
                state[name] = unpack_model(state[name], state.get("device"))
        self.__dict__.update(state)
        self._derive()

    def _derive(self) -> None:
        """Set the attributes in ``_derived`` from the model (in ``__init__`` and after unpickling)."""

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_features(self) -> bool:
        return False

    @property
    def has_attention(self) -> bool:
        return False

    @property
    def has_embeddings(self) -> bool:
        """Whether :meth:`embed` and :meth:`logits_from_embeddings` work (gradients over text)."""
        return False

    @property
    def torch_model(self) -> nn.Module | None:
        """The torch module holding the model's weights (without preprocessing or tokenizer), or ``None``."""
        return None

    @property
    def capabilities(self) -> Capabilities:
        """What the model offers beyond logits, computed now from the adapter's state (``differentiable``
        can be switched off, TorchScript features are decided on the first forward pass)."""
        model = self.torch_model
        return Capabilities(
            gradients=bool(self.differentiable), features=self.has_features, attention=self.has_attention,
            raw_text=self.input_kind == "text", tokenizer=self._encodes, embeddings=self.has_embeddings,
            module=self._has_module,
            trainable=bool(self.differentiable) and model is not None and not isinstance(model, torch.jit.ScriptModule),
            float_twin=self.float_twin is not None, fixed_batch_size=self.fixed_batch_size)

    #: Whether :meth:`encode` is implemented (set by adapters that tokenise raw strings).
    _encodes: bool = False
    #: Whether :meth:`as_module` is implemented.
    _has_module: bool = False

    # ---------------------------------------------------------------- one batch, on the device
    @abc.abstractmethod
    def logits(self, inputs: Any) -> torch.Tensor:
        """Logits of one batch, on ``self.device``; keeps the graph when inputs require grad."""

    def features(self, inputs: Any) -> torch.Tensor:
        """Penultimate features of one batch (the input of the classification layer)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.format}) exposes no penultimate features.")

    def attention(self, inputs: Any) -> list[torch.Tensor]:
        """Attention maps of one batch: one ``(batch, heads, tokens, tokens)`` tensor per layer."""
        raise NotImplementedError(f"{type(self).__name__} ({self.format}) has no attention maps.")

    def as_module(self) -> nn.Module:
        """A torch module from raw inputs to logits (``capabilities.module``)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.format}) is not a torch module from inputs to logits.")

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Raw strings to the model's input tensors on the device (``capabilities.tokenizer``)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.format}) has no tokenizer.")

    def embed(self, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        """Input embeddings of an encoded batch (``capabilities.embeddings``)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.format}) exposes no input embeddings.")

    def logits_from_embeddings(self, embeddings: torch.Tensor, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of an encoded batch with its input embeddings replaced (``capabilities.embeddings``)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.format}) exposes no input embeddings.")

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]] | None:
        """One ``(start, end)`` character span per token of ``encode(texts)`` (``(0, 0)`` for special and padding
        tokens), or ``None`` when the adapter does not give them (word alignment then uses the tokenizer)."""
        return None

    def vocabulary(self) -> list[str] | None:
        """The token string of every id :meth:`encode` can give (index = id, as the tokenizer spells it:
        ``##`` continuation pieces, ``[CLS]``), or ``None`` when the adapter does not know its vocabulary."""
        return None

    def with_torch_model(self, model: nn.Module) -> ModelAdapter:
        """A copy of this adapter over another torch module of the same architecture (``torch_model``)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.format}) holds no torch model to replace.")

    # ---------------------------------------------------------------- whole data sets, batched
    def to_batch(self, inputs: Any) -> Any:
        """Move a slice of a data set (numpy, tensor, list of str) to what ``logits`` takes."""
        if isinstance(inputs, torch.Tensor):
            return inputs.to(self.device)
        if isinstance(inputs, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(inputs))
            if t.is_floating_point():
                t = t.float()
            return t.to(self.device)
        return inputs

    @torch.no_grad()
    def predict_logits(self, inputs: Any, batch_size: int = 256, progress: Any = None) -> torch.Tensor:
        """Logits of a whole data set, in batches of ``batch_size``; returned on the CPU as float32."""
        return self._batched(self.logits, inputs, batch_size, progress)

    @torch.no_grad()
    def predict_features(self, inputs: Any, batch_size: int = 256, progress: Any = None) -> torch.Tensor:
        """Penultimate features of a whole data set, batched; returned on the CPU."""
        return self._batched(self.features, inputs, batch_size, progress)

    def _batched(self, fn: Any, inputs: Any, batch_size: int, progress: Any) -> torch.Tensor:
        n = len(inputs)
        outs: list[torch.Tensor] = []
        for start in range(0, n, batch_size):
            batch = self.to_batch(inputs[start : start + batch_size])
            out = fn(batch).detach().float().cpu()
            rows = f"rows {start}..{min(start + batch_size, n) - 1}"
            if out.dim() != 2 or out.shape[0] != len(batch):
                raise ModelInputError(f"the model returned shape {tuple(out.shape)} for {rows} ({len(batch)} inputs); "
                                      "it must return one row of outputs per input, (batch, classes).")
            if outs and out.shape[1] != outs[0].shape[1]:
                raise ModelInputError(_width_message(outs[0].shape[1], out.shape[1], rows))
            outs.append(out)
            if progress is not None:
                progress(min(start + batch_size, n))
        if not outs:
            raise ModelInputError("the data set is empty: there is nothing to run the model on.")
        return torch.cat(outs)

    def training_mode(self) -> bool | None:
        """Whether any torch (sub)module is in training mode after the adapter put it in eval mode;
        None for models that are not torch modules. A model traced or scripted in training mode can
        stay stochastic whatever this says: the probe's repeated batch is the test of determinism."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts for the provenance block."""
        return {
            "adapter": type(self).__name__,
            "format": self.format,
            "input_kind": self.input_kind,
            "class_names": list(self.class_names),
            "n_classes": self.n_classes,
            "differentiable": self.differentiable,
            "has_features": self.has_features,
            "has_attention": self.has_attention,
            "input_range": list(self.input_range) if self.input_range else None,
            "device": str(self.device),
        }


def _last_linear(module: nn.Module) -> nn.Module | None:
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


def _graph_feature_module(module: torch.fx.GraphModule) -> torch.fx.GraphModule | None:
    """A module that returns the input of the ``linear`` op whose result is ``module``'s only output, or ``None``.

    The graph is copied and its output rewired to that input; the parameters stay those of ``module``.
    The logits are then ``linear(features, W, b)`` by construction, so nothing is guessed.
    """
    import copy

    graph = copy.deepcopy(module.graph)
    out = next((n for n in graph.nodes if n.op == "output"), None)
    if out is None or not out.args:
        return None
    value = out.args[0]
    leaves = list(value) if isinstance(value, (tuple, list)) else [value]
    if len(leaves) != 1 or not isinstance(leaves[0], torch.fx.Node):
        return None
    node = leaves[0]
    if node.op != "call_function" or node.target not in (torch.ops.aten.linear.default, nn.functional.linear):
        return None
    feats = node.args[0]
    out.args = (type(value)([feats]),) if isinstance(value, (tuple, list)) else (feats,)
    try:
        twin = torch.fx.GraphModule(module, graph)
        twin.graph.eliminate_dead_code()
        twin.recompile()
    except Exception:  # noqa: BLE001 - an unusual graph: no features, as before
        return None
    return twin


def _script_linears(module: nn.Module) -> list[nn.Module]:
    """The ``Linear`` submodules of a scripted or traced module (by ``original_name``), in module order."""
    return [m for _name, m in module.named_modules()
            if getattr(m, "original_name", None) == "Linear" and isinstance(getattr(m, "weight", None), torch.Tensor)
            and m.weight.dim() == 2 and m.weight.is_floating_point()]


def _padded_forward(module: nn.Module, x: torch.Tensor, fixed_batch_size: int | None) -> torch.Tensor:
    """``module(x)`` for a module that takes only ``fixed_batch_size`` rows (a static ``torch.export`` program):
    ``x`` goes through in chunks of that size, the last padded with copies of its first row, and the padding's
    outputs are dropped. Differentiable: gradients flow to ``x`` through the slices."""
    if fixed_batch_size is None or x.shape[0] == fixed_batch_size:
        return _as_logits(module(x))
    chunks = []
    b = fixed_batch_size
    for start in range(0, x.shape[0], b):
        part = x[start : start + b]
        pad = b - part.shape[0]
        if pad:
            part = torch.cat([part, part[:1].expand(pad, *part.shape[1:])])
        chunks.append(_as_logits(module(part))[: b - pad])
    _same_width(chunks, b)
    return torch.cat(chunks)


class FixedBatch(nn.Module):
    """A module exported for a fixed batch size, taking any batch size (``_padded_forward``)."""

    def __init__(self, module: nn.Module, fixed_batch_size: int) -> None:
        super().__init__()
        self.module = module
        self.fixed_batch_size = fixed_batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _padded_forward(self.module, x, self.fixed_batch_size)


class TorchAdapter(ModelAdapter):
    """Adapter for a ``torch.nn.Module`` (eager, TorchScript, or a ``torch.export`` program's module).

    Parameters
    ----------
    module : torch.nn.Module
        Maps (preprocessed) inputs to logits.
    input_kind : str
    class_names : list of str, optional
        Defaults to ``["0", "1", ...]`` from the model's output width, found on the first call.
    device : torch.device
    preprocess : torch.nn.Module, optional
        Applied before ``module``; part of the differentiable graph.
    fixed_batch_size : int, optional
        For programs exported with a static batch dimension: batches are padded to this size.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        input_kind: InputKind,
        device: torch.device,
        class_names: list[str] | None = None,
        preprocess: nn.Module | None = None,
        input_range: tuple[float, float] | None = None,
        format: str = "torch",
        fixed_batch_size: int | None = None,
        differentiable: bool = True,
    ) -> None:
        self.device = device
        self.input_kind = input_kind
        self.format = format
        self.input_range = input_range
        self.fixed_batch_size = fixed_batch_size
        self.differentiable = differentiable
        self.module = module.to(device)
        self.preprocess = preprocess.to(device) if preprocess is not None else None
        _set_eval(self.module)
        self.class_names = list(class_names) if class_names else []
        self._derive()

    _derived = ("_head", "_script_heads", "_script_head_checked", "_graph_features")
    _models = ("module",)

    def _derive(self) -> None:
        module = self.module
        scripted = isinstance(module, torch.jit.ScriptModule)
        self._head = None if scripted else _last_linear(module)
        #: TorchScript takes no forward hooks: its ``Linear`` submodules (scripted or traced modules keep
        #: them, named by ``original_name``), last first, are candidates for the layer that makes the
        #: logits, whose input is read by swapping its weight for the identity (see ``_script_features``).
        self._script_heads = _script_linears(self.module)[::-1] if scripted else []
        self._script_head_checked = False
        #: A ``torch.export`` program's module has no ``Linear`` submodules to hook: a copy of its graph that
        #: returns the input of the ``linear`` op whose result is the output (parameters shared, not copied).
        self._graph_features = (_graph_feature_module(self.module)
                                if self._head is None and isinstance(self.module, torch.fx.GraphModule) else None)

    @property
    def has_features(self) -> bool:
        return self._head is not None or bool(self._script_heads) or self._graph_features is not None

    @property
    def has_attention(self) -> bool:
        return callable(getattr(self.module, "attention_maps", None))

    _has_module = True

    @property
    def torch_model(self) -> nn.Module | None:
        return self.module if isinstance(self.module, nn.Module) else None

    def with_torch_model(self, model: nn.Module) -> TorchAdapter:
        return _replaced(self, "module", model)

    def training_mode(self) -> bool | None:
        return _any_training(self.module)

    def as_module(self) -> nn.Module:
        """A module from raw inputs to logits (preprocessing included), for Captum and ART; a program exported
        for a fixed batch size takes any batch size through it, padded like ``logits``."""
        module = self.module if self.fixed_batch_size is None else FixedBatch(self.module, self.fixed_batch_size)
        return nn.Sequential(self.preprocess, module) if self.preprocess is not None else module

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if x.is_floating_point():
            x = x.float()
        return self.preprocess(x) if self.preprocess is not None else x

    def _forward(self, x: torch.Tensor, module: nn.Module | None = None) -> torch.Tensor:
        return _padded_forward(self.module if module is None else module, x, self.fixed_batch_size)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self._prepare(inputs)
        out = self._forward(x)
        if self._script_heads and not self._script_head_checked:  # once: does a Linear make these logits?
            with torch.no_grad():
                self._find_script_head(x.detach(), out.detach())
        if not self.class_names:
            self.class_names = [str(i) for i in range(out.shape[-1])]
        return out

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._script_heads:
            return self._script_features(inputs)
        if self._graph_features is not None:
            return self._forward(self._prepare(inputs), self._graph_features).flatten(1)
        if self._head is None:
            return super().features(inputs)
        captured: list[torch.Tensor] = []
        handle = self._head.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
        try:
            self._forward(self._prepare(inputs))
        finally:
            handle.remove()
        return captured[-1].flatten(1)

    def attention(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        if not self.has_attention:
            return super().attention(inputs)
        return list(self.module.attention_maps(self._prepare(inputs)))

    def _script_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Penultimate features of a TorchScript model: the input of the ``Linear`` layer that makes its logits.

        The layer's weight is swapped for the identity (and its bias for zeros) for one forward
        pass, so the model outputs the layer's input instead of the logits; the weights are put
        back whatever happens. On the first call (of this or ``logits``) each ``Linear`` submodule,
        last first, whose output width is the number of logits is tried until one whose input,
        mapped through it, reproduces the model's logits; when none does (the output is transformed
        after the layer, or made some other way), the model has no features (``has_features`` turns
        false) and this raises ``NotImplementedError`` saying why.
        """
        x = self._prepare(inputs)
        if not self._script_head_checked:
            with torch.no_grad():
                self._find_script_head(x, self._forward(x))
        if not self._script_heads:
            raise NotImplementedError("the TorchScript model's logits are not the output of one of its Linear layers "
                                      "(the output is transformed after it, or made another way), so its penultimate "
                                      "features are unknown.")
        return self._swapped_forward(self._script_heads[0], x).flatten(1)

    def _find_script_head(self, x: torch.Tensor, logits: torch.Tensor) -> None:
        """Keep the first candidate ``Linear`` whose input, mapped through it, gives ``logits``; none: no features."""
        rows = torch.isfinite(logits).all(dim=1)  # rows with NaN/inf logits prove nothing (the probe reports them)
        if not bool(rows.any()):
            return  # decide on a later call
        x, logits = x[rows], logits[rows]
        found = []
        for head in self._script_heads:
            weight, bias = head.weight, head.bias
            if weight.shape[0] != logits.shape[1]:
                continue
            feats = self._swapped_forward(head, x)
            if feats.dim() != 2 or feats.shape[1] != weight.shape[1]:
                continue
            recon = torch.nn.functional.linear(feats.to(weight.dtype), weight,
                                               bias if isinstance(bias, torch.Tensor) else None)
            scale = float(logits.abs().max()) + 1e-6
            if recon.shape == logits.shape and torch.allclose(recon, logits, rtol=1e-4, atol=1e-4 * scale):
                found = [head]
                break
        self._script_heads = found
        self._script_head_checked = True

    def _swapped_forward(self, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The model's output with ``head``'s weight set to the identity and its bias to zeros."""
        weight, bias = head.weight, head.bias
        width = weight.shape[1]
        try:
            head.weight = nn.Parameter(torch.eye(width, dtype=weight.dtype, device=weight.device), requires_grad=False)
            if isinstance(bias, torch.Tensor):
                head.bias = nn.Parameter(torch.zeros(width, dtype=bias.dtype, device=bias.device), requires_grad=False)
            return self._forward(x)
        finally:
            head.weight = weight
            if isinstance(bias, torch.Tensor):
                head.bias = bias


class HFTextAdapter(ModelAdapter):
    """Adapter for a Hugging Face sequence classifier; inputs are raw strings.

    Gradients (``differentiable``) are with respect to the input embeddings: see
    :meth:`embed` and :meth:`logits_from_embeddings`.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, *, device: torch.device, class_names: list[str] | None = None,
                 max_length: int = 128, format: str = "huggingface") -> None:
        self.model = model.to(device)
        _set_eval(self.model)
        self.tokenizer = tokenizer
        self.device = device
        self.input_kind = "text"
        self.format = format
        self.max_length = max_length
        self.differentiable = True
        id2label = getattr(model.config, "id2label", None) or {}
        n = int(getattr(model.config, "num_labels", len(id2label) or 2))
        self.class_names = list(class_names) if class_names else [str(id2label.get(i, i)) for i in range(n)]
        self._derive()

    _derived = ("_head",)
    _models = ("model",)

    def _derive(self) -> None:
        self._head = _last_linear(self.model)

    @property
    def has_features(self) -> bool:
        return self._head is not None

    @property
    def has_attention(self) -> bool:
        return True

    @property
    def has_embeddings(self) -> bool:
        return True

    _encodes = True

    @property
    def torch_model(self) -> nn.Module | None:
        return self.model

    def with_torch_model(self, model: nn.Module) -> HFTextAdapter:
        return _replaced(self, "model", model)

    def training_mode(self) -> bool | None:
        return _any_training(self.model)

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise on the host and move the batch to the device."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def embed(self, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        """Input embeddings of an encoded batch (the space gradients are taken in)."""
        return self.model.get_input_embeddings()(encoded["input_ids"])

    def logits_from_embeddings(self, embeddings: torch.Tensor, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        rest = {k: v for k, v in encoded.items() if k != "input_ids"}
        return self.model(inputs_embeds=embeddings, **rest).logits

    def vocabulary(self) -> list[str] | None:
        """The tokenizer's tokens by id (``convert_ids_to_tokens``)."""
        convert = getattr(self.tokenizer, "convert_ids_to_tokens", None)
        if not callable(convert):
            return None
        return [str(t) for t in convert(list(range(len(self.tokenizer))))]

    def logits(self, inputs: Sequence[str]) -> torch.Tensor:
        return self.model(**self.encode(inputs)).logits

    def features(self, inputs: Sequence[str]) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = self._head.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
        try:
            self.model(**self.encode(inputs))
        finally:
            handle.remove()
        feats = captured[-1]
        return feats[:, 0] if feats.dim() == 3 else feats

    def attention(self, inputs: Sequence[str]) -> list[torch.Tensor]:
        # Fused attention kernels (sdpa, flash) return no weights: switch to eager for this call.
        previous = getattr(self.model.config, "_attn_implementation", None)
        switch = previous not in (None, "eager") and hasattr(self.model, "set_attn_implementation")
        if switch:
            self.model.set_attn_implementation("eager")
        try:
            out = self.model(**self.encode(inputs), output_attentions=True)
        finally:
            if switch:
                self.model.set_attn_implementation(previous)
        if not out.attentions:
            return super().attention(inputs)
        return list(out.attentions)

    def to_batch(self, inputs: Any) -> Any:
        return [str(t) for t in inputs]


class TokenizedTextAdapter(ModelAdapter):
    """Raw strings → a tokenizer → a torch model on int64 token ids (the zoo's LSTM, GRU, Transformer,
    MiniLM-head models); inputs are raw strings, as for :class:`HFTextAdapter`.

    Gradients (``differentiable``) are with respect to the token embeddings: :meth:`embed` runs the
    model's input embedding layer, and :meth:`logits_from_embeddings` runs the model with that
    layer's output replaced (a forward hook), so every architecture whose ids go through one
    ``nn.Embedding`` works without a special forward.

    Parameters
    ----------
    inner : TorchAdapter
        The model on token ids (``input_kind="sequence"``).
    tokenizer : callable
        ``tokenizer(list_of_str) -> int64 array (N, T)``, padded with the model's padding id.
    """

    def __init__(self, inner: TorchAdapter, tokenizer: Any, *, format: str | None = None) -> None:
        self.inner = inner
        self.tokenizer = tokenizer
        self.device = inner.device
        self.input_kind = "text"
        self.format = format or inner.format
        self.differentiable = inner.differentiable
        self.class_names = inner.class_names
        self._derive()

    _derived = ("_embedding",)

    def _derive(self) -> None:
        self._embedding = _input_embedding(self.inner.module)

    @property
    def class_names(self) -> list[str]:  # shared with the inner adapter, which fills it on first call
        return self.inner.class_names

    @class_names.setter
    def class_names(self, names: list[str]) -> None:
        self.inner.class_names = list(names)

    @property
    def has_features(self) -> bool:
        return self.inner.has_features

    @property
    def has_attention(self) -> bool:
        return self.inner.has_attention

    @property
    def has_embeddings(self) -> bool:
        return self._embedding is not None

    _encodes = True
    _has_module = True

    @property
    def torch_model(self) -> nn.Module | None:
        return self.inner.torch_model

    @property
    def fixed_batch_size(self) -> int | None:  # the inner model's: token ids are padded to it
        return self.inner.fixed_batch_size

    def with_torch_model(self, model: nn.Module) -> TokenizedTextAdapter:
        return _replaced(self, "inner", self.inner.with_torch_model(model))

    def training_mode(self) -> bool | None:
        return self.inner.training_mode()

    def as_module(self) -> nn.Module:
        """The model on token ids (no tokenizer): for tools that take int64 ids."""
        return self.inner.as_module()

    def token_ids(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenise on the host; an int64 ``(N, T)`` tensor on the device."""
        ids = np.asarray(self.tokenizer(list(texts)), dtype=np.int64)
        return torch.from_numpy(ids).to(self.device)

    def vocabulary(self) -> list[str] | None:
        """The tokens by id of a tokenizer that lists them (``vocabulary()`` of the project's word vocabulary and
        MiniLM tokenizer, also through a bound ``encode`` method); ``None`` for a plain callable."""
        owner = getattr(self.tokenizer, "__self__", self.tokenizer)
        listing = getattr(owner, "vocabulary", None)
        return [str(t) for t in listing()] if callable(listing) else None

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise and move to the device, as ``{"input_ids": ...}`` (the interface of :class:`HFTextAdapter`)."""
        return {"input_ids": self.token_ids(texts)}

    def embed(self, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token embeddings ``(N, T, D)`` of an encoded batch: the space gradients are taken in."""
        if self._embedding is None:
            raise ModelInputError(f"{type(self.inner.module).__name__} has no nn.Embedding on its token ids; "
                                  "gradient methods over text need one.")
        return self._embedding(encoded["input_ids"])

    def logits_from_embeddings(self, embeddings: torch.Tensor, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits with the embedding layer's output replaced by ``embeddings`` (same shape)."""
        if self._embedding is None:
            raise ModelInputError(f"{type(self.inner.module).__name__} has no nn.Embedding on its token ids.")
        handle = self._embedding.register_forward_hook(lambda _m, _args, _out: embeddings)
        try:
            return self.inner.logits(encoded["input_ids"])
        finally:
            handle.remove()

    def logits(self, inputs: Sequence[str]) -> torch.Tensor:
        return self.inner.logits(self.token_ids(inputs))

    def features(self, inputs: Sequence[str]) -> torch.Tensor:
        return self.inner.features(self.token_ids(inputs))

    def attention(self, inputs: Sequence[str]) -> list[torch.Tensor]:
        return self.inner.attention(self.token_ids(inputs))

    def to_batch(self, inputs: Any) -> Any:
        return [str(t) for t in inputs]


def _replaced(adapter: ModelAdapter, name: str, value: Any) -> Any:
    """A shallow copy of ``adapter`` with attribute ``name`` set to ``value`` and its derived attributes derived
    again from it (so hooks point into the new model)."""
    clone = object.__new__(type(adapter))
    clone.__dict__.update({k: v for k, v in adapter.__dict__.items() if k not in adapter._derived})
    setattr(clone, name, value)
    clone._derive()
    return clone


def _input_embedding(module: nn.Module) -> nn.Embedding | None:
    """The embedding layer token ids go through: ``get_input_embeddings()`` where a (sub)module has
    it (Hugging Face models), else the first ``nn.Embedding`` in registration order."""
    for m in module.modules():
        getter = getattr(m, "get_input_embeddings", None)
        if callable(getter):
            try:
                emb = getter()
            except (NotImplementedError, AttributeError):
                continue
            if isinstance(emb, nn.Embedding):
                return emb
    return next((m for m in module.modules() if isinstance(m, nn.Embedding)), None)


class OnnxAdapter(ModelAdapter):
    """A black-box adapter over an onnxruntime session: logits only, no gradients."""

    def __init__(self, session: Any, *, input_kind: InputKind, device: torch.device, class_names: list[str] | None = None,
                 preprocess: Normalize | None = None, input_range: tuple[float, float] | None = None) -> None:
        self.session = session
        self.input_kind = input_kind
        self.device = device
        self.format = "onnx"
        self.differentiable = False
        self.input_range = input_range
        self.preprocess = preprocess.to(device) if preprocess is not None else None
        inp = session.get_inputs()[0]
        self._input_name = inp.name
        self._np_dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
                          "tensor(int32)": np.int32, "tensor(float16)": np.float16}.get(inp.type, np.float32)
        dim0 = inp.shape[0] if inp.shape else None
        self.fixed_batch_size = dim0 if isinstance(dim0, int) and dim0 > 0 else None
        self.class_names = list(class_names) if class_names else []

    _models = ("session",)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self._input_name: x})[0])

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.preprocess is not None:
            x = self.preprocess(x.to(self.device).float())
        arr = x.detach().cpu().numpy().astype(self._np_dtype, copy=False)
        b = self.fixed_batch_size
        if b is None or arr.shape[0] == b:
            out = self._run(arr)
        else:
            parts = []
            for start in range(0, arr.shape[0], b):
                part = arr[start : start + b]
                pad = b - part.shape[0]
                if pad:
                    part = np.concatenate([part, np.repeat(part[:1], pad, axis=0)])
                parts.append(self._run(part)[: b - pad])
            _same_width(parts, b)
            out = np.concatenate(parts)
        t = torch.from_numpy(np.ascontiguousarray(out)).float().to(self.device)
        if not self.class_names:
            self.class_names = [str(i) for i in range(t.shape[-1])]
        return t


def _as_logits(out: Any) -> torch.Tensor:
    """Models return a tensor, a tuple whose first item is the logits, or an object with ``.logits``."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    raise ModelInputError(f"the model returned {type(out).__name__}; it must return a logits tensor of shape (batch, classes).")


def _width_message(first: int, now: int, rows: str) -> str:
    return (f"the model's output width changed between batches: {first} outputs per row at first, {now} for {rows}; "
            "a classifier must return the same number of logits for every batch.")


def _same_width(parts: Sequence[Any], chunk: int) -> None:
    """Chunks of one call (fixed-batch exports) must agree on the output width, or concatenating them fails
    (or silently misaligns a ragged output)."""
    widths = [tuple(p.shape[1:]) for p in parts]
    for i, w in enumerate(widths[1:], start=1):
        if w != widths[0]:
            raise ModelInputError(_width_message(widths[0][0] if widths[0] else 0, w[0] if w else 0,
                                                 f"rows {i * chunk}..{i * chunk + len(parts[i]) - 1} of the batch"))


def _any_training(module: nn.Module) -> bool:
    return any(m.training for m in module.modules())


def _allow_mode_switch(module: nn.Module) -> None:
    """Let ``train()``/``eval()`` on a ``torch.export`` program's module set the flags instead of raising.

    ``ExportedProgram.module()`` binds ``train``/``eval`` methods that raise ``NotImplementedError`` to the
    GraphModule it returns, because the graph's numerical behaviour (dropout, batch-norm statistics) was
    fixed at export and a mode switch cannot change it. Libraries that toggle modes around their work
    (SHAP's GradientExplainer, fine-tuning copies) then crash on a clean model. Removing the instance
    overrides restores ``nn.Module.train``, which only sets the ``training`` flags: the outputs stay the
    exported ones in either mode.
    """
    for m in module.modules():
        if isinstance(m, torch.fx.GraphModule):
            for name in ("train", "eval"):
                if name in vars(m):
                    delattr(m, name)


def _set_eval(module: nn.Module) -> None:
    """Eval mode where the module supports it (a GraphModule from torch.export does not)."""
    _allow_mode_switch(module)
    try:
        module.eval()
    except (NotImplementedError, RuntimeError):
        pass


# ------------------------------------------------------------------------------------------ pickling

#: Prefix of the module names ``--model-class`` files are imported under (``models.loaders``).
USER_MODULE_PREFIX = "deepaudit_user_model_"


def _user_files(module: nn.Module) -> dict[str, str]:
    """The user files (``--model-class``) that define the classes of ``module``'s submodules, by module name."""
    out = {}
    for m in module.modules():
        name = type(m).__module__
        if name.startswith(USER_MODULE_PREFIX) and getattr(sys.modules.get(name), "__file__", None):
            out[name] = sys.modules[name].__file__
    return out


def _import_user_file(name: str, file: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ModelInputError(f"model class file {file} cannot be imported to unpickle the model.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def pack_model(model: Any) -> dict[str, Any]:
    """A portable form of a model held by an adapter, for pickling (see the module docstring)."""
    if isinstance(model, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(model, buffer)
        return {"torchscript": buffer.getvalue()}
    program_file = getattr(model, "_deepaudit_program_file", None)
    if isinstance(model, torch.fx.GraphModule) and program_file:
        return {"export": Path(program_file).read_bytes(), "file": program_file}
    if isinstance(model, nn.Module):
        return {"module": pickle.dumps(model), "user_files": _user_files(model)}
    if model.__class__.__name__ == "InferenceSession":
        path = getattr(model, "_model_path", None)
        if not path:
            raise pickle.PicklingError("an onnxruntime session opened from bytes cannot be pickled; open it from a file.")
        return {"onnx": path, "providers": model.get_providers()}
    return {"object": model}


def unpack_model(packed: dict[str, Any], device: torch.device | None) -> Any:
    """The model again, from :func:`pack_model`'s form."""
    if "torchscript" in packed:
        return torch.jit.load(io.BytesIO(packed["torchscript"]), map_location=device)
    if "export" in packed:
        module = torch.export.load(io.BytesIO(packed["export"])).module()
        _allow_mode_switch(module)
        module._deepaudit_program_file = packed["file"]
        return module.to(device) if device is not None else module
    if "module" in packed:
        for name, file in packed["user_files"].items():
            _import_user_file(name, file)
        return pickle.loads(packed["module"])  # noqa: S301 - an adapter's own pickle (see the module docstring)
    if "onnx" in packed:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        available = set(ort.get_available_providers())
        return ort.InferenceSession(packed["onnx"], sess_options=options,
                                    providers=[p for p in packed["providers"] if p in available] or ["CPUExecutionProvider"])
    return packed["object"]
