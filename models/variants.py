"""Variants of a model: quantised, pruned, distilled, adversarially trained (a registry in the spirit of timm).

>>> from models.variants import list_variants, make_variant, parse_variant
>>> parse_variant("pruned50")
('pruned', {'sparsity': 0.5})
>>> result = make_variant(model, "int8_weight", example_inputs=x)        # doctest: +SKIP
>>> result.module, result.metadata["size_bytes"], result.metadata["differentiable"]  # doctest: +SKIP

Every variant is built by :func:`make_variant` on a deep copy (the base model is never changed) and
returns a :class:`VariantResult` whose ``metadata`` records what was done and what was measured:
method, library and version, bit width, measured sparsity (fraction of exactly-zero weights),
stored tensor elements before/after, serialised size, dtype, whether input gradients exist
(measured on ``example_inputs`` where given) and the devices the variant runs on. A variant that
cannot run on the chosen device raises :class:`~models.errors.ModelInputError`; nothing falls back
to the CPU. :func:`variant_adapter` wraps a result like its base adapter, with ``float_twin``
pointing at the base so gradient-based checks can attack a non-differentiable variant through it.
"""

from __future__ import annotations

import copy
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from models.errors import ModelInputError


@dataclass(frozen=True)
class VariantSpec:
    """One registered variant: how to build it and what it is."""

    name: str
    description: str
    build: Callable[..., tuple[nn.Module, dict[str, Any]]]
    defaults: dict[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu", "cuda")
    #: the name of the parameter a bare value (``pruned:0.5``, ``pruned50``) sets
    positional: str | None = None
    #: builds from training data (``finetune={'x': ..., 'y': ...}``); ``deepaudit compare`` passes data.reference
    needs_data: bool = False


@dataclass
class VariantResult:
    """A built variant: the module (raw model inputs -> logits, float32 in and out), its spec, and its metadata."""

    module: nn.Module
    spec: str
    metadata: dict[str, Any]
    float_twin: nn.Module | None = None


# ---------------------------------------------------------------------------------------- helpers
def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _stored_elements(module: nn.Module) -> int:
    """Elements of every tensor in the state dict (packed quantised weights included)."""

    def count(v: Any) -> int:
        if isinstance(v, torch.Tensor):
            return v.numel()
        if isinstance(v, (tuple, list)):
            return sum(count(x) for x in v)
        return 0

    return sum(count(v) for v in module.state_dict().values())


def state_dict_bytes(module: nn.Module) -> int:
    """Bytes of ``torch.save(state_dict)`` in memory: the size on disk."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.tell()


def _weight_tensors(module: nn.Module) -> list[torch.Tensor]:
    out = []
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            w = m.weight
            if isinstance(w, torch.Tensor) and type(w) in (torch.Tensor, nn.Parameter):
                out.append(w.detach())
    return out


def weight_sparsity(module: nn.Module) -> float | None:
    """Fraction of exactly-zero weights over dense Linear/Conv layers (None when there are none)."""
    ws = _weight_tensors(module)
    total = sum(w.numel() for w in ws)
    if not total:
        return None
    return float(sum((w == 0).sum().item() for w in ws) / total)


def _has_grad(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether the input gradient of the logits exists and is not all zero (measured on ``x``)."""
    x = x.detach().clone().float().requires_grad_(True)
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantised kernels warn that they have no autograd formula
            out = module(x)
            if not (isinstance(out, torch.Tensor) and out.requires_grad):
                return False
            (grad,) = torch.autograd.grad(out.float().sum(), x, allow_unused=True)
    except RuntimeError:
        return False
    finally:
        module.zero_grad(set_to_none=True)
    return grad is not None and bool(torch.isfinite(grad).all()) and bool(grad.abs().sum() > 0)


def _linears(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _finetune(model: nn.Module, finetune: dict[str, Any] | None, device: torch.device) -> dict[str, Any] | None:
    """Short cross-entropy fine-tune with :func:`models.train.fit_classifier` (finetune: x, y, epochs, lr, preprocess)."""
    if not finetune:
        return None
    from models.train import fit_classifier

    if "x" not in finetune or "y" not in finetune:
        raise ModelInputError("The 'finetune' parameter of make_variant must hold 'x' and 'y' arrays. Got keys "
                              f"{sorted(finetune)} instead.")
    x = _to_numpy(finetune["x"]).astype(np.float32)
    y = _to_numpy(finetune["y"]).astype(np.int64)
    epochs = int(finetune.get("epochs", 1))
    lr = float(finetune.get("lr", 1e-3))
    fit_classifier(model, x, y, epochs=epochs, lr=lr, device=device, preprocess=finetune.get("preprocess"),
                   seed=int(finetune.get("seed", 0)))
    return {"epochs": epochs, "lr": lr, "n_samples": int(len(x))}


class _Cast(nn.Module):
    """Runs ``module`` in ``dtype``: float32 inputs are cast in, logits are cast back to float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            x = x.to(self.dtype)
        return self.module(x).float()


# ---------------------------------------------------------------------------------------- builders
#: How a cast variant meets the checks (its ``method`` in the metadata and ``deepaudit models list``).
_CAST_NOTE = ("weights and activations in that dtype, float32 inputs cast at the model's boundary and logits "
              "returned as float32, so attacks and attributions differentiate through the cast model; the "
              "backdoor simulation fine-tunes float32 master weights (the float twin) and casts them again")
#: What a quantised variant stores and computes in, one phrase per variant (the metadata's ``dtype``).
_INT8_DYNAMIC = "int8 weights, int8 activations (quantised dynamically per batch)"


def _torchao(name: str, config_name: str, dtype: str) -> Callable[..., tuple[nn.Module, dict[str, Any]]]:
    def build(model: nn.Module, *, device: torch.device, **_: Any) -> tuple[nn.Module, dict[str, Any]]:
        try:
            import torchao.quantization as tq
        except ImportError as exc:
            raise ModelInputError(f"variant {name} needs torchao, which cannot be imported here ({exc}); "
                                  "fix: pip install 'torchao>=0.18'.") from None
        if not _linears(model):
            raise ModelInputError(f"variant {name}: the model has no nn.Linear layer for torchao to quantise.")
        tq.quantize_(model, getattr(tq, config_name)())
        return model, {"library": "torchao", "library_version": _version("torchao"), "bit_width": 8,
                       "quantised_layers": "nn.Linear (convolutions and recurrent layers stay float32)",
                       "dtype": dtype}

    return build


def _build_int8_eager(model: nn.Module, **_: Any) -> tuple[nn.Module, dict[str, Any]]:
    kinds = {nn.Linear, nn.LSTM, nn.GRU}
    found = sorted({type(m).__name__ for m in model.modules() if type(m) in kinds})
    if not found:
        raise ModelInputError("variant int8_eager_dynamic does not apply: the model has no nn.Linear, nn.LSTM or nn.GRU layer.")
    q = torch.ao.quantization.quantize_dynamic(model, kinds, dtype=torch.qint8)
    return q, {"library": "torch.ao.quantization", "library_version": torch.__version__, "bit_width": 8,
               "quantised_layers": ", ".join(found), "dtype": _INT8_DYNAMIC}


def _cast(dtype: torch.dtype, name: str) -> Callable[..., tuple[nn.Module, dict[str, Any]]]:
    def build(model: nn.Module, **_: Any) -> tuple[nn.Module, dict[str, Any]]:
        return _Cast(model, dtype), {"library": "torch", "library_version": torch.__version__,
                                     "bit_width": 16, "dtype": name}

    return build


def _build_pruned(model: nn.Module, *, sparsity: float, device: torch.device, finetune: dict | None,
                  **_: Any) -> tuple[nn.Module, dict[str, Any]]:
    from torch.nn.utils import prune

    targets = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not targets:
        raise ModelInputError("variant pruned does not apply: the model has no nn.Linear or nn.Conv layer to prune.")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    tuned = _finetune(model, finetune, device)  # masks stay active while fine-tuning
    for m, name in targets:
        prune.remove(m, name)
    return model, {"library": "torch.nn.utils.prune", "library_version": torch.__version__, "bit_width": 32,
                   "requested_sparsity": sparsity, "finetune": tuned, "dtype": "float32",
                   "note": "weights are stored dense: zeros do not shrink the file or speed up dense kernels"}


def _build_pruned_structured(model: nn.Module, *, sparsity: float, device: torch.device, finetune: dict | None,
                             example_inputs: torch.Tensor | None, **_: Any) -> tuple[nn.Module, dict[str, Any]]:
    if example_inputs is None:
        raise ModelInputError("variant pruned_structured needs example_inputs (one batch) to trace the model's layers.")
    try:
        import torch_pruning as tp
    except ImportError as exc:
        raise ModelInputError(f"variant pruned_structured needs torch-pruning ({exc}); fix: pip install 'torch-pruning>=1.6'.") from None
    linears = _linears(model)
    ignored = [linears[-1]] if linears else []  # keep the classifier's outputs
    before = _stored_elements(model)
    try:
        pruner = tp.pruner.MetaPruner(model, example_inputs, importance=tp.importance.MagnitudeImportance(p=2),
                                      pruning_ratio=sparsity, ignored_layers=ignored)
        pruner.step()
    except Exception as exc:  # third-party tracing failures become one line
        raise ModelInputError(f"variant pruned_structured cannot prune {type(model).__name__}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if _stored_elements(model) >= before:
        raise ModelInputError(f"variant pruned_structured cannot shrink {type(model).__name__}: "
                              "no prunable channels outside the classifier.")
    tuned = _finetune(model, finetune, device)
    return model, {"library": "torch-pruning", "library_version": _version("torch-pruning"), "bit_width": 32,
                   "channel_ratio": sparsity, "finetune": tuned, "dtype": "float32",
                   "note": "channels removed by L2 magnitude; the model is physically smaller"}


def _default_student(teacher: nn.Module, width_ratio: float) -> nn.Module:
    from models.architectures.cnn import LeNet5
    from models.zoo import create_model

    if isinstance(teacher, LeNet5):
        conv = teacher.features[0]
        width = max(1, int(round(conv.out_channels * width_ratio)))
        side = int(round((teacher.head[1].in_features / (2 * conv.out_channels)) ** 0.5))
        return create_model("lenet5", in_channels=conv.in_channels, n_classes=teacher.head[-1].out_features,
                            image_size=side * 4, width=width)
    raise ModelInputError(f"variant distilled has no default student for {type(teacher).__name__}; "
                          "pass finetune={'student': module, 'x': inputs}.")


def _build_distilled(model: nn.Module, *, width_ratio: float, temperature: float, device: torch.device,
                     finetune: dict | None, **_: Any) -> tuple[nn.Module, dict[str, Any]]:
    if not finetune or "x" not in finetune:
        raise ModelInputError("variant distilled needs training inputs: pass finetune={'x': inputs, 'epochs': N}.")
    student = finetune.get("student")
    if student is None:
        student = _default_student(model, width_ratio)
    student = student.to(device)
    pre = finetune.get("preprocess")
    epochs = int(finetune.get("epochs", 10))
    lr = float(finetune.get("lr", 3e-3))
    batch_size = int(finetune.get("batch_size", 64))
    x = torch.from_numpy(_to_numpy(finetune["x"]).astype(np.float32)).to(device)
    model.eval()
    with torch.no_grad():
        inputs = pre(x) if pre is not None else x
        soft = torch.cat([torch.log_softmax(model(inputs[i : i + batch_size]) / temperature, -1)
                          for i in range(0, len(inputs), batch_size)])
    torch.manual_seed(int(finetune.get("seed", 0)))
    gen = torch.Generator().manual_seed(int(finetune.get("seed", 0)))
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    student.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=gen).to(device)
        for i in range(0, len(inputs), batch_size):
            idx = order[i : i + batch_size]
            log_p = torch.log_softmax(student(inputs[idx]) / temperature, -1)
            loss = nn.functional.kl_div(log_p, soft[idx], log_target=True, reduction="batchmean") * temperature**2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return student.eval(), {"library": "torch", "library_version": torch.__version__, "bit_width": 32,
                            "dtype": "float32", "student": type(student).__name__, "temperature": temperature,
                            "width_ratio": width_ratio,
                            "finetune": {"epochs": epochs, "lr": lr, "n_samples": int(len(x)),
                                         "loss": "KL(teacher || student) at temperature T, scaled by T^2"}}


def _build_pgd_at(model: nn.Module, *, eps: float, steps: float, epochs: float, lr: float, device: torch.device,
                  finetune: dict | None, **_: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Madry et al.'s PGD adversarial training: fine-tune on L∞ PGD examples of the training data.

    The inner maximisation is the PGD function passed as ``finetune["attack"]`` (``deepaudit compare``
    passes :func:`audit.attacks.pgd`, so the defence is trained against what the audit measures;
    ``models/`` imports nothing of ``audit/``): random start, ``steps`` steps of 2.5·ε/steps,
    clipped to the input range, run in raw input space with the preprocessing in the graph; the outer minimisation is Adam on the
    cross-entropy of the adversarial batch. References: Madry, Makelov, Schmidt, Tsipras, Vladu,
    "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
    """
    if not finetune or "x" not in finetune or "y" not in finetune:
        raise ModelInputError("variant pgd_at needs labelled training data: pass finetune={'x': inputs, 'y': labels} "
                              "(deepaudit compare takes it from data.reference).")
    pgd = finetune.get("attack")
    if not callable(pgd):
        raise ModelInputError("variant pgd_at needs the attack of its inner maximisation: finetune['attack'], a "
                              "function like audit.attacks.pgd (deepaudit compare passes it).")
    x = _to_numpy(finetune["x"])
    if not np.issubdtype(x.dtype, np.floating):
        raise ModelInputError("variant pgd_at needs continuous inputs (images, tabular features): "
                              f"the training inputs are {x.dtype}.")
    xt = torch.from_numpy(x.astype(np.float32)).to(device)
    yt = torch.from_numpy(_to_numpy(finetune["y"]).astype(np.int64)).to(device)
    if len(xt) != len(yt) or len(xt) == 0:
        raise ModelInputError(f"variant pgd_at: {len(xt)} training inputs but {len(yt)} labels.")
    pre = finetune.get("preprocess")
    clip = finetune.get("clip")
    clip = (float(clip[0]), float(clip[1])) if clip is not None else None
    steps_i, epochs_i = int(steps), int(epochs)
    batch_size = int(finetune.get("batch_size", 64))
    seed = int(finetune.get("seed", 0))

    def logits(inputs: torch.Tensor) -> torch.Tensor:
        return model(pre(inputs)) if pre is not None else model(inputs)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelInputError("variant pgd_at: the model has no trainable parameters.")
    torch.manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    attack_gen = torch.Generator(device=device).manual_seed(seed + 1)
    opt = torch.optim.Adam(params, lr=lr)
    adv_correct = torch.zeros((), dtype=torch.long, device=device)  # counted on the device: no sync per batch
    clean_correct = torch.zeros((), dtype=torch.long, device=device)
    for epoch in range(epochs_i):
        order = torch.randperm(len(xt), generator=order_gen).to(device)
        last = epoch == epochs_i - 1
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2 < len(xt):
                continue  # a batch of one breaks batch normalisation in training mode
            xb, yb = xt[idx], yt[idx]
            model.eval()  # the attack sees fixed normalisation statistics and no dropout
            for p in params:
                p.requires_grad_(False)
            try:
                adv = pgd(logits, xb, yb, eps=eps, norm="linf", steps=steps_i, clip=clip, generator=attack_gen)
            finally:
                for p in params:
                    p.requires_grad_(True)
            if last:
                with torch.no_grad():
                    clean_correct += (logits(xb).argmax(1) == yb).sum()
            model.train()
            out = logits(adv)
            loss = nn.functional.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if last:
                adv_correct += (out.argmax(1) == yb).detach().sum()
    model.eval()
    return model, {"library": "torch", "library_version": torch.__version__, "bit_width": 32, "dtype": "float32",
                   "attack": f"{getattr(pgd, '__module__', '?')}.{getattr(pgd, '__qualname__', type(pgd).__name__)}",
                   "adversarial_training": {
                       "method": "PGD-AT (Madry et al. 2018): every training batch replaced by its L-inf PGD examples",
                       "norm": "linf", "eps": eps, "steps": steps_i, "step_size": 2.5 * eps / steps_i,
                       "random_start": True, "clip": list(clip) if clip else None, "epochs": epochs_i, "lr": lr,
                       "optimizer": "Adam", "batch_size": batch_size, "n_samples": int(len(xt)), "seed": seed,
                       "eps_units": "raw input units (before the model's preprocessing)",
                       "train_clean_accuracy_last_epoch": int(clean_correct) / len(xt),
                       "train_adversarial_accuracy_last_epoch": int(adv_correct) / len(xt)}}


# ---------------------------------------------------------------------------------------- registry
VARIANTS: dict[str, VariantSpec] = {
    s.name: s
    for s in (
        VariantSpec("int8_weight", "int8 weight-only quantisation of nn.Linear (torchao Int8WeightOnlyConfig)",
                    _torchao("int8_weight", "Int8WeightOnlyConfig", "int8 weights, float32 activations")),
        VariantSpec("int8_dynamic", "int8 weights and dynamically quantised int8 activations of nn.Linear "
                    "(torchao Int8DynamicActivationInt8WeightConfig)", _torchao("int8_dynamic", "Int8DynamicActivationInt8WeightConfig", _INT8_DYNAMIC)),
        VariantSpec("fp16", "cast to float16 (CUDA only: CPU float16 kernels are partial and slow); " + _CAST_NOTE,
                    _cast(torch.float16, "float16"), devices=("cuda",)),
        VariantSpec("bf16", "cast to bfloat16; " + _CAST_NOTE, _cast(torch.bfloat16, "bfloat16")),
        VariantSpec("int8_eager_dynamic", "eager dynamic int8 of nn.Linear/LSTM/GRU (torch.ao quantize_dynamic)",
                    _build_int8_eager, devices=("cpu",)),
        VariantSpec("pruned", "global unstructured L1 magnitude pruning at a sparsity", _build_pruned,
                    defaults={"sparsity": 0.5}, positional="sparsity"),
        VariantSpec("pruned_structured", "structured channel pruning that shrinks the model (torch-pruning)",
                    _build_pruned_structured, defaults={"sparsity": 0.5}, positional="sparsity"),
        VariantSpec("distilled", "a narrower student trained on the teacher's soft labels (KL, temperature)",
                    _build_distilled, defaults={"width_ratio": 0.5, "temperature": 4.0}, positional="width_ratio",
                    needs_data=True),
        VariantSpec("pgd_at", "adversarial fine-tuning on L-inf PGD examples of the training data (Madry PGD-AT)",
                    _build_pgd_at, defaults={"eps": 0.1, "steps": 7, "epochs": 5, "lr": 1e-3}, positional="eps",
                    needs_data=True),
    )
}


def list_variants() -> list[str]:
    """Registered variant names, sorted."""
    return sorted(VARIANTS)


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``"pruned50"``, ``"pruned:0.5"``, ``"pruned:sparsity=0.5"``, ``"int8_dynamic"``,
    ``"pgd_at:eps=0.03,steps=5,epochs=2"`` -> (name, params)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelInputError(f"The 'spec' parameter of make_variant must be a variant name. Got {spec!r} instead.")
    spec = spec.strip()
    name, _, rest = spec.partition(":")
    if name not in VARIANTS and not rest:
        m = re.fullmatch(r"([a-z_]+?)(\d+)", name)
        if m and m.group(1) in VARIANTS and VARIANTS[m.group(1)].positional:
            name, rest = m.group(1), str(int(m.group(2)) / 100)
    if name not in VARIANTS:
        import difflib

        close = difflib.get_close_matches(name, VARIANTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ModelInputError(f"unknown variant {name!r}.{hint} Known: {', '.join(list_variants())}.")
    vs = VARIANTS[name]
    params = dict(vs.defaults)
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            if vs.positional is None:
                raise ModelInputError(f"variant {name!r} takes no parameters. Got {spec!r}.")
            key, value = vs.positional, part
        if key not in vs.defaults:
            raise ModelInputError(f"variant {name!r} has no parameter {key!r}; it takes: {', '.join(vs.defaults) or 'none'}.")
        try:
            params[key] = float(value)
        except ValueError:
            raise ModelInputError(f"The {key!r} parameter of variant {name!r} must be a number. Got {value!r} instead.") from None
    for key in ("sparsity", "width_ratio"):
        if key in params and not 0 < params[key] < 1:
            raise ModelInputError(f"The {key!r} parameter of variant {name!r} must be a float in (0, 1). "
                                  f"Got {params[key]!r} instead.")
    for key in ("eps", "lr"):
        if key in params and not params[key] > 0:
            raise ModelInputError(f"The {key!r} parameter of variant {name!r} must be > 0. Got {params[key]!r} instead.")
    for key in ("steps", "epochs"):
        if key in params and (params[key] < 1 or params[key] != int(params[key])):
            raise ModelInputError(f"The {key!r} parameter of variant {name!r} must be a positive integer. "
                                  f"Got {params[key]!r} instead.")
    if "temperature" in params and params["temperature"] <= 0:
        raise ModelInputError(f"The 'temperature' parameter of variant {name!r} must be > 0. Got {params['temperature']!r} instead.")
    return name, params


def make_variant(model: nn.Module, spec: str, *, example_inputs: torch.Tensor | None = None,
                 device: str | torch.device = "cpu", finetune: dict[str, Any] | None = None) -> VariantResult:
    """Build the variant ``spec`` of ``model`` on ``device`` (the base model is not changed).

    Parameters
    ----------
    model : torch.nn.Module
        The float32 base model (preprocessed inputs -> logits).
    spec : str
        A name from :func:`list_variants`, optionally with parameters (``pruned:0.7``, ``pruned70``).
    example_inputs : torch.Tensor, optional
        One batch of (preprocessed) inputs: traces structured pruning, and measures whether input
        gradients exist. Without it ``differentiable`` is the variant's documented behaviour.
    device : str or torch.device
        Where the variant is built and runs; a variant that cannot run there is an error.
    finetune : dict, optional
        ``x``, ``y``, ``epochs``, ``lr``, ``preprocess`` for a short fine-tune after pruning;
        ``x`` (and optionally ``student``) for distillation; ``x``, ``y`` and optionally
        ``preprocess``, ``clip`` (the raw input range), ``batch_size``, ``seed`` for ``pgd_at``,
        whose ε, steps, epochs and lr come from the spec.
    """
    from models.adapter import resolve_device

    name, params = parse_variant(spec)
    vs = VARIANTS[name]
    dev = resolve_device(device)
    if dev.type not in vs.devices:
        raise ModelInputError(f"variant {name!r} cannot run on {dev.type}: it runs on {', '.join(vs.devices)} only.")
    base = copy.deepcopy(model).to(dev).eval()
    ex = example_inputs.to(dev) if example_inputs is not None else None
    before_elems, before_size = _stored_elements(base), state_dict_bytes(base)
    module, meta = vs.build(base, device=dev, example_inputs=ex, finetune=finetune, **params)
    module = module.eval()
    if ex is not None:
        try:
            with torch.no_grad():
                module(ex)
        except (RuntimeError, NotImplementedError) as exc:
            raise ModelInputError(f"variant {name!r} does not run on {dev.type} for {type(model).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        differentiable, how = _has_grad(module, ex), "measured: input gradient on example_inputs"
    else:
        differentiable = name not in ("int8_dynamic", "int8_eager_dynamic")
        how = "assumed from the method (no example_inputs to measure on)"
    after_elems = _stored_elements(module)
    meta = {
        "variant": name,
        "params": params,
        "method": vs.description,
        **meta,
        "sparsity": weight_sparsity(module),
        "stored_elements_before": before_elems,
        "stored_elements_after": after_elems,
        "size_bytes_before": before_size,
        "size_bytes": state_dict_bytes(module),
        "differentiable": differentiable,
        "differentiable_source": how,
        "float_twin": None if differentiable else
        "input gradients do not exist: attack through the float twin (the base model) or without gradients",
        "devices": list(vs.devices),
        "device": str(dev),
    }
    return VariantResult(module=module, spec=spec, metadata=meta, float_twin=None if differentiable else model)


#: Variants that cast the whole model to a half-precision dtype; training one goes through its float twin.
CAST_VARIANTS = ("fp16", "bf16")


def cast_variant_source(adapter: Any) -> tuple[nn.Module, str] | None:
    """For an adapter of a cast variant (``fp16``, ``bf16``) whose float twin is a torch module: that float32
    module and the variant's name, to train a float32 copy (the master weights of mixed precision) and cast
    it again with :func:`make_variant`. Half-precision weights drop most of an optimiser's small updates
    (bfloat16 keeps 8 bits of mantissa: an update below 1/256 of a weight is lost). ``None`` otherwise."""
    meta, twin = adapter.variant_metadata or {}, adapter.float_twin
    if meta.get("variant") not in CAST_VARIANTS or twin is None or twin.torch_model is None:
        return None
    return twin.torch_model, meta["variant"]


def variant_adapter(result: VariantResult, base_adapter: Any) -> Any:
    """A :class:`~models.adapter.TorchAdapter` for ``result`` with the base adapter's preprocessing,
    class names, input kind and range; ``differentiable`` from the metadata; ``float_twin`` is the base adapter."""
    from models.adapter import TorchAdapter

    adapter = TorchAdapter(result.module, input_kind=base_adapter.input_kind, device=base_adapter.device,
                           class_names=list(base_adapter.class_names) or None,
                           preprocess=base_adapter.preprocess, input_range=base_adapter.input_range,
                           format=f"{base_adapter.format}+{result.metadata['variant']}",
                           differentiable=bool(result.metadata["differentiable"]))
    adapter.float_twin = base_adapter
    adapter.variant_metadata = result.metadata
    return adapter
