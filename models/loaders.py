"""Load a user's model from the forms people ship, into a :class:`~models.adapter.ModelAdapter`.

Safe by default: a model file is data, not code. Formats that can run code on load (plain
pickles: ``torch.load`` without ``weights_only``, joblib, a ``.pt2`` with pickled entries) are refused
unless the caller passes ``allow_pickle=True``; :mod:`models.archives` inspects every zip archive
before torch opens it. State dicts are read with ``torch.load(weights_only=True)``, Hugging Face
folders with ``weights_only=True``, ``trust_remote_code=False`` and ``local_files_only=True``.

Supported formats (``format="auto"`` detects them):

========================  =====================================================================
``torchscript``           ``torch.jit.save`` archive
``export``                ``torch.export.save`` program (``.pt2``)
``safetensors``           weights + a model class (``file.py:Class``) or a sidecar JSON naming a
                          registered architecture (what ``deepaudit models train`` writes)
``state_dict``            ``torch.save(model.state_dict())`` + a model class
``huggingface``           a folder with ``config.json`` (sequence or image classification)
``onnx``                  ``.onnx`` through onnxruntime, a black box without gradients
``pickle``                a pickled ``nn.Module`` (``torch.save(model)``, joblib): opt-in only
========================  =====================================================================
"""

from __future__ import annotations

import importlib.util
import json
import logging
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.adapter import (
    HFTextAdapter,
    InputKind,
    ModelAdapter,
    Normalize,
    OnnxAdapter,
    USER_MODULE_PREFIX,
    TokenizedTextAdapter,
    TorchAdapter,
    resolve_device,
)
from models.archives import check_export_archive, check_zip_file, is_pickle_stream, open_zip
from models.errors import ModelInputError

FORMATS = ("torchscript", "export", "safetensors", "state_dict", "huggingface", "onnx", "pickle")
PICKLE_REFUSED = (
    "model file {path} is a pickle, and unpickling can run arbitrary code. Re-save it as safetensors, "
    "TorchScript or torch.export, or pass --allow-pickle (model.allow_pickle: true) if you trust the file."
)


def sidecar_path(path: Path) -> Path:
    """``model.safetensors`` → ``model.json``: metadata written beside trained weights."""
    return path.with_suffix(".json")


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelInputError(f"model metadata {side} is not valid JSON ({exc}).") from None
    return data if isinstance(data, dict) else {}


def detect_format(path: Path) -> str:
    """The model format of ``path``, from its suffix and, for archives, its contents."""
    if path.is_dir():
        if (path / "config.json").is_file():
            return "huggingface"
        raise ModelInputError(
            f"model folder {path} has no config.json; a folder must be a Hugging Face model saved with save_pretrained."
        )
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".safetensors":
        return "safetensors"
    if suffix == ".pt2":
        return "export"
    if suffix in (".pkl", ".pickle", ".joblib"):
        return "pickle"
    if zipfile.is_zipfile(path):
        with open_zip(path, "model archive") as zf:
            names = zf.namelist()
        if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any("/models/" in n and n.endswith(".json") for n in names) or any(n.endswith("archive_format") for n in names):
            return "export"
        if any(n.endswith("data.pkl") for n in names):
            return _torch_save_kind(path)
    if suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return _torch_save_kind(path)
    raise ModelInputError(
        f"model file {path} has an unsupported format; supported: TorchScript, torch.export (.pt2), safetensors, "
        "a state dict (.pt/.pth), a Hugging Face folder, ONNX (.onnx). Set model.format if detection is wrong."
    )


def _torch_save_kind(path: Path) -> str:
    """A ``torch.save`` file (or a raw pickle): a state dict if the safe loader reads it; a pickle if it is
    a well-formed pickle the safe loader refuses; otherwise unreadable."""
    try:
        obj = _load_weights_only(path)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        if _holds_pickle(path):
            return "pickle"
        raise ModelInputError(f"model file {path} cannot be read as a torch.save file or a pickle ({_torch_error(exc)}); "
                              "check that it is complete, or re-save it (safetensors is safest).") from None
    if _extract_state_dict(obj) is not None:
        return "state_dict"
    raise ModelInputError(f"model file {path} holds a {type(obj).__name__}, not a state dict of tensors.")


def _load_weights_only(path: Path) -> Any:
    if zipfile.is_zipfile(path):
        check_zip_file(path, "torch.save archive")
    return torch.load(path, map_location="cpu", weights_only=True)


def _holds_pickle(path: Path) -> bool:
    """Whether ``path`` is a pickle (a raw one, torch's legacy format, or a torch.save zip's data.pkl),
    judged by parsing its opcodes, which runs nothing."""
    if zipfile.is_zipfile(path):
        with open_zip(path, "torch.save archive") as zf:
            pkl = next((i for i in zf.infolist() if i.filename.endswith("data.pkl")), None)
            if pkl is None:
                return False
            with zf.open(pkl) as f:
                return is_pickle_stream(f)
    with open(path, "rb") as f:
        return is_pickle_stream(f)


def _torch_error(exc: BaseException) -> str:
    """torch's reason, without its advice to retry with ``weights_only=False`` (the one thing not to do)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0]
        return " ".join(reason.split())[:300] or type(exc).__name__
    return _one_line(exc)


def _extract_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def import_class(spec: str) -> type:
    """Import ``path/to/file.py:ClassName``. This runs that file: the user named it explicitly."""
    if ":" not in spec:
        raise ModelInputError(f"model class {spec!r} must be given as 'path/to/file.py:ClassName'.")
    file, name = spec.rsplit(":", 1)
    path = Path(file)
    if not path.is_file():
        raise ModelInputError(f"model class file {path} does not exist (from model class {spec!r}).")
    mod_name = f"{USER_MODULE_PREFIX}{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelInputError(f"model class file {path} cannot be imported as Python.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        del sys.modules[mod_name]
        raise ModelInputError(f"importing model class file {path} failed: {type(exc).__name__}: {_one_line(exc)}") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module) and v is not nn.Module)
        raise ModelInputError(f"{path} has no nn.Module class {name!r}; found: {', '.join(found) or 'none'}.")
    return cls


def _instantiate(cls: type, init_args: dict[str, Any]) -> nn.Module:
    try:
        return cls(**init_args)
    except TypeError as exc:
        raise ModelInputError(f"{cls.__name__}(**init_args) failed: {_one_line(exc)}. Check model.init_args.") from None


def _shape(t: Any) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def _load_weights(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = module.state_dict()
    mismatched = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        first = mismatched[0]
        raise ModelInputError(
            f"weights in {path} do not match {type(module).__name__}: key {first!r} has shape {_shape(state[first])} "
            f"in the file but {_shape(own[first])} in the model ({len(mismatched)} mismatched key(s)). "
            "Check the class and model.init_args."
        )
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), _one_line(exc))
        raise ModelInputError(
            f"weights in {path} do not match {type(module).__name__}: {detail} Check the class and model.init_args."
        ) from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} key(s) e.g. {result.missing_keys[0]!r}")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected key(s) e.g. {result.unexpected_keys[0]!r}")
    if problems:
        raise ModelInputError(
            f"weights in {path} do not match {type(module).__name__}: {'; '.join(problems)}. Check the class and model.init_args."
        )


def load_model(
    path: str | Path,
    *,
    format: str = "auto",
    model_class: str | None = None,
    init_args: dict[str, Any] | None = None,
    allow_pickle: bool = False,
    device: str | torch.device = "auto",
    input_kind: InputKind | None = None,
    class_names: list[str] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    input_range: tuple[float, float] | None = None,
) -> ModelAdapter:
    """Load a model file or folder and wrap it in an adapter.

    Parameters
    ----------
    path : path
        Model file or Hugging Face folder.
    format : str
        One of :data:`FORMATS` or ``"auto"``.
    model_class : str, optional
        ``path/to/file.py:ClassName`` for safetensors and state dicts.
    init_args : dict, optional
        Constructor arguments of ``model_class``.
    allow_pickle : bool
        Allow formats that unpickle arbitrary objects. Off by default.
    device : str or torch.device
    input_kind, class_names, mean, std, input_range
        Override what the model's metadata says. ``mean``/``std`` add a normalisation step inside
        the adapter, so checks work in raw input space.
    """
    path = Path(path)
    if not path.exists():
        raise ModelInputError(f"model file {path} does not exist.")
    dev = resolve_device(device)
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise ModelInputError(f"model format {fmt!r} is not supported; use one of: {', '.join(FORMATS)}.")
    meta = read_sidecar(path) if path.is_file() else {}
    pre_meta = meta.get("preprocessing") or {}
    mean = mean if mean is not None else pre_meta.get("mean")
    std = std if std is not None else pre_meta.get("std")
    rng = input_range if input_range is not None else pre_meta.get("input_range")
    input_range = tuple(rng) if rng is not None else None  # type: ignore[assignment]
    asked_kind = input_kind
    input_kind = input_kind or meta.get("input_kind")
    class_names = class_names or meta.get("class_names")
    preprocess = None
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ModelInputError("preprocessing needs both mean and std.")
        preprocess = Normalize(mean, std)

    if fmt == "huggingface":
        return _load_huggingface(path, dev, class_names, input_kind, allow_pickle)
    if fmt == "onnx":
        return _load_onnx(path, dev, input_kind, class_names, preprocess, input_range)

    fixed_batch = None
    if fmt == "torchscript":
        check_zip_file(path, "TorchScript archive")
        try:
            module: nn.Module = torch.jit.load(str(path), map_location=dev)
        except Exception as exc:  # noqa: BLE001
            raise ModelInputError(f"model file {path} is not a loadable TorchScript archive ({_one_line(exc)}).") from None
    elif fmt == "export":
        module, fixed_batch = _load_export(path, allow_pickle)
    elif fmt in ("safetensors", "state_dict"):
        module = _load_weights_file(path, fmt, model_class, init_args or meta.get("init_args") or {}, meta, allow_pickle)
    else:  # pickle
        module = _load_pickle(path, allow_pickle, dev, model_class, init_args or meta.get("init_args") or {}, meta)
    adapter = TorchAdapter(
        module,
        input_kind=input_kind,  # type: ignore[arg-type]  # filled from the data when None
        device=dev,
        class_names=class_names,
        preprocess=preprocess,
        input_range=input_range,
        format=fmt,
        fixed_batch_size=fixed_batch,
    )
    tok_spec = meta.get("tokenizer")
    if isinstance(tok_spec, dict) and asked_kind != "sequence":
        # A token-id model whose sidecar carries its tokenizer takes raw text (input_kind "text");
        # runner.load_inputs unwraps it again when the data holds token ids instead.
        from models.datasets import text_tokenizer

        adapter.input_kind = "sequence"
        return TokenizedTextAdapter(adapter, text_tokenizer(tok_spec), format=fmt)
    return adapter


def _build_module(path: Path, model_class: str | None, init_args: dict[str, Any], meta: dict[str, Any]) -> nn.Module:
    """The model a weights-only file belongs to: ``model_class`` or the zoo architecture its sidecar names."""
    if model_class:
        module = _instantiate(import_class(model_class), init_args)
    elif meta.get("architecture"):
        from models.zoo import create_model, list_models  # the zoo is ours; metadata names one of its models

        arch = meta["architecture"]
        if arch not in list_models():
            raise ModelInputError(f"{sidecar_path(path)} names architecture {arch!r}, which is not registered; pass --model-class.")
        module = create_model(arch, **init_args)
    else:
        raise ModelInputError(
            f"model file {path} holds only weights; name the model class with --model-class path/to/file.py:ClassName "
            "(model.class in the config)."
        )
    return module


def _load_weights_file(path: Path, fmt: str, model_class: str | None, init_args: dict[str, Any],
                       meta: dict[str, Any], allow_pickle: bool = False) -> nn.Module:
    module = _build_module(path, model_class, init_args, meta)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise ModelInputError(f"model file {path} is not a valid safetensors file ({_one_line(exc)}).") from None
    else:
        try:
            obj = _load_weights_only(path)
        except ModelInputError:
            raise
        except Exception as exc:  # noqa: BLE001
            if not _holds_pickle(path):
                raise ModelInputError(f"model file {path} cannot be read ({_torch_error(exc)}).") from None
            if not allow_pickle:
                raise ModelInputError(PICKLE_REFUSED.format(path=path)) from None
            obj = _unpickle(path, torch.device("cpu"))
        state = _extract_state_dict(obj)
        if state is None:
            raise ModelInputError(f"model file {path} holds a {type(obj).__name__}, not a state dict of tensors.")
    _load_weights(module, state, path)
    return module


def _load_export(path: Path, allow_pickle: bool = False) -> tuple[nn.Module, int | None]:
    check_export_archive(path, allow_pickle=allow_pickle)
    # torch.export.load logs a traceback before it retries the pre-2.8 layout; the error below says it in one line.
    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        program = torch.export.load(str(path))
        module = program.module()
    except Exception as exc:  # noqa: BLE001
        raise ModelInputError(f"model file {path} is not a loadable torch.export program ({_one_line(exc)}).") from None
    finally:
        log.setLevel(level)
    module._deepaudit_program_file = str(path)  # a pickled adapter carries the program's bytes (models.adapter)
    fixed = None
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta.get("val")
            if val is not None and val.dim() > 0 and isinstance(val.shape[0], int):
                fixed = int(val.shape[0])
            break
    return module, fixed


def _load_pickle(path: Path, allow_pickle: bool, dev: torch.device, model_class: str | None = None,
                 init_args: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> nn.Module:
    """A pickled ``nn.Module``, or (with a model class) a checkpoint dict that holds a state dict."""
    if not allow_pickle:
        raise ModelInputError(PICKLE_REFUSED.format(path=path))
    obj = _unpickle(path, dev)
    if isinstance(obj, nn.Module):
        return obj
    state = _extract_state_dict(obj)
    if state is not None and (model_class or (meta or {}).get("architecture")):
        module = _build_module(path, model_class, init_args or {}, meta or {})
        _load_weights(module, {k: v.cpu() for k, v in state.items()}, path)
        return module
    if state is not None:
        raise ModelInputError(f"model file {path} unpickled to a state dict; name the model class with --model-class "
                              "path/to/file.py:ClassName (model.class in the config).")
    raise ModelInputError(f"{path} unpickled to a {type(obj).__name__}, not a torch nn.Module.")


_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."  # pickle of torch.serialization.MAGIC_NUMBER


def _unpickle(path: Path, dev: torch.device) -> Any:
    """Unpickle a file the user trusts: joblib, torch.save (zip or legacy) or a plain pickle."""
    try:
        if path.suffix.lower() == ".joblib":
            import joblib

            return joblib.load(path)
        with open(path, "rb") as f:
            head = f.read(len(_TORCH_LEGACY_MAGIC))
        if zipfile.is_zipfile(path) or head == _TORCH_LEGACY_MAGIC:
            return torch.load(path, map_location=dev, weights_only=False)
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - the user opted in with allow_pickle
    except Exception as exc:  # noqa: BLE001 - arbitrary pickles fail arbitrarily
        raise ModelInputError(f"unpickling {path} failed: {type(exc).__name__}: {_one_line(exc)}") from None


def _load_onnx(path: Path, dev: torch.device, input_kind: InputKind | None, class_names: list[str] | None,
               preprocess: Normalize | None, input_range: tuple[float, float] | None) -> OnnxAdapter:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if dev.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # noqa: BLE001
        raise ModelInputError(f"model file {path} is not a loadable ONNX model ({_one_line(exc)}).") from None
    return OnnxAdapter(session, input_kind=input_kind, device=dev, class_names=class_names,  # type: ignore[arg-type]
                       preprocess=preprocess, input_range=input_range)


def _hf_pickle_weights(path: Path) -> list[Path]:
    """The torch.save weight files transformers would read from a folder (it prefers safetensors), after
    the container checks; shard names from an index must be plain file names inside the folder."""
    if any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file():
        return []
    index = path / "pytorch_model.bin.index.json"
    if index.is_file():
        try:
            shards = set((json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}).values())
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelInputError(f"model folder {path}: {index.name} is not valid JSON ({_one_line(exc)}).") from None
        outside = sorted(str(s) for s in shards if not isinstance(s, str) or Path(s).name != s or s in ("", ".", ".."))
        if outside:
            raise ModelInputError(f"model folder {path}: {index.name} names weight file {outside[0]!r} outside the folder; "
                                  "shard names must be plain file names.")
        files = [path / s for s in sorted(shards)]
    else:
        files = [path / "pytorch_model.bin"]
    files = [f for f in files if f.is_file()]
    for file in files:
        if zipfile.is_zipfile(file):
            check_zip_file(file, "torch.save archive")
    return files


def _load_huggingface(path: Path, dev: torch.device, class_names: list[str] | None,
                      input_kind: InputKind | None, allow_pickle: bool = False) -> ModelAdapter:
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no loading bars on a CI log; errors still raise
    hf_logging.set_verbosity_error()

    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    try:
        AutoConfig.from_pretrained(str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ModelInputError(f"model folder {path} has no usable config.json ({_one_line(exc)}).") from None
    pickles = _hf_pickle_weights(path)
    model_kwargs = {**kwargs, "weights_only": not allow_pickle}

    def refused(exc: BaseException) -> ModelInputError | None:
        """transformers' torch.load(weights_only=True) refused a pickle: say which file, and the fix."""
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, pickle.UnpicklingError):
                return ModelInputError(PICKLE_REFUSED.format(path=pickles[0] if len(pickles) == 1 else path))
            cause = cause.__cause__ or cause.__context__
        return None

    def load(auto: Any) -> nn.Module:
        try:
            return auto.from_pretrained(str(path), **model_kwargs)
        except Exception as exc:  # noqa: BLE001
            if not (allow_pickle and pickles and refused(exc)):
                raise
        # transformers 5 reads .bin files with weights_only=True even when told otherwise; the user trusts
        # these files, so unpickle them here and load the weights into the model built from config.json.
        model = auto.from_config(AutoConfig.from_pretrained(str(path), **kwargs))
        state: dict[str, torch.Tensor] = {}
        for file in pickles:
            state.update(_extract_state_dict(_unpickle(file, torch.device("cpu"))) or {})
        _load_weights(model, state, path)
        return model.eval()

    has_tokenizer = any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model"))
    image_cfg = path / "preprocessor_config.json"
    if input_kind == "image" or (input_kind is None and image_cfg.is_file() and not has_tokenizer):
        try:
            model = load(AutoModelForImageClassification)
        except ModelInputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise refused(exc) or ModelInputError(f"model folder {path} is not an image classifier ({_one_line(exc)}).") from None
        preprocess = None
        if image_cfg.is_file():
            proc = json.loads(image_cfg.read_text(encoding="utf-8"))
            if proc.get("image_mean") and proc.get("image_std"):
                preprocess = Normalize(proc["image_mean"], proc["image_std"])
        id2label = getattr(model.config, "id2label", {}) or {}
        names = class_names or [str(id2label.get(i, i)) for i in range(model.config.num_labels)]
        return TorchAdapter(model, input_kind="image", device=dev, class_names=names, preprocess=preprocess,
                            input_range=(0.0, 1.0), format="huggingface")
    if not has_tokenizer:
        raise ModelInputError(f"model folder {path} has no tokenizer files; save the tokenizer with the model (tokenizer.save_pretrained).")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        model = load(AutoModelForSequenceClassification)
    except ModelInputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise refused(exc) or ModelInputError(
            f"model folder {path} is not a sequence classifier with a tokenizer ({_one_line(exc)}).") from None
    return HFTextAdapter(model, tokenizer, device=dev, class_names=class_names)
