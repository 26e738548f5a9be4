"""``deepaudit compare``: one audit over a base model, its compressed variants and other model
files, on the same data, with the same checks and seed, so the columns are comparable.

Variants are built in memory from the base model by ``models.variants`` (quantised, pruned,
distilled, adversarially trained; the last two train on ``data.reference``); other models are
loaded from files like the base. Each gets a full ``AuditResult``; ``reports.compare`` lines their
metrics up side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit.config import AuditConfig
from audit.context import ProgressFactory
from audit.data import file_sha256
from audit.errors import InputError
from audit.results import AuditResult, CompareEntry, ComparisonResult, FileRecord
from audit.rows import as_array
from audit.runner import audit_adapter, build_checks, load_inputs, probed_context
from audit.threads import apply_threads
from models.adapter import TokenizedTextAdapter, TorchAdapter
from models.errors import ModelInputError
from models.loaders import load_model


def run_compare(cfg: AuditConfig, *, variants: list[str] = (), models: list[Path] = (),
                progress: ProgressFactory | None = None, on_model: Any = None, on_start: Any = None,
                on_check: Any = None) -> ComparisonResult:
    """Audit the base model of ``cfg``, each variant spec and each other model file.

    ``on_start(check_id, index, total)`` and ``on_check(result)`` are called as each check of each model starts
    and ends (local executor; as in :func:`audit.runner.run_audit`), ``on_model(entry)`` as each model is done.

    With ``cfg.executor == "ray"`` each model is built, probed and audited by its own Ray worker
    (:func:`audit_model`), from the config; the entries come back in the same order as locally.

    Raises
    ------
    InputError
        Bad input (including a variant that does not apply to the model); nothing was written.
    """
    if not variants and not models:
        raise InputError("compare needs something to compare: pass --variant SPEC (e.g. int8_dynamic, pruned:0.5) "
                         "or --with MODEL_FILE.")
    checks = build_checks(cfg)
    if cfg.executor == "ray":
        from audit.executor import check_executor

        check_executor(cfg)  # not installed, or no cluster at its address: exit 2 before any work
    apply_threads(cfg.threads)  # before any model is loaded (torch's inter-op pool is sized once)
    base, datasets = load_inputs(cfg)
    V = _variants_module() if variants else None
    for spec in variants:  # cheap checks of every spec before any model is built
        _variant_source(base, spec)
        try:
            _training_data(V, spec, base, datasets, cfg.seed)
        except ModelInputError as exc:
            raise InputError(str(exc)) from None
    wanted = [("base", str(cfg.model.path))] + [("variant", spec) for spec in variants] + \
        [("model", str(path)) for path in models]
    entries: list[CompareEntry] = []

    def audited(kind: str, spec: str, result: AuditResult, meta: Any) -> None:  # called in `wanted` order
        label = "base" if kind == "base" else spec if kind == "variant" else Path(spec).stem
        if any(e.label == label for e in entries):
            label = f"{label}-{len(entries)}"
        entries.append(CompareEntry(label=label, kind=kind, spec=spec, result=result,
                                    **({"metadata": _jsonable(meta)} if kind != "base" else {})))
        if on_model is not None:
            on_model(entries[-1])

    if cfg.executor == "ray":
        from audit.executor import audit_models_on_ray

        audit_models_on_ray(cfg, wanted, audited)
    else:
        _audit_locally(cfg, base, datasets, checks, wanted, progress, audited, on_start=on_start, on_check=on_check)
    return ComparisonResult(entries=entries)


def _variants_module() -> Any:
    try:
        from models import variants as V
    except ImportError as exc:  # pragma: no cover - the module ships with the package
        raise InputError(f"model variants are not available: {exc}.") from None
    return V


def _variant_source(base: Any, spec: str) -> tuple[Any, Any]:
    """The torch adapter a variant is built from, and the text adapter around it (or None)."""
    # A text model with its tokenizer: the variant is built from the model on token ids and gets the same
    # tokenizer again.
    text = base if isinstance(base, TokenizedTextAdapter) else None
    torch_base = text.inner if text is not None else base
    if not isinstance(torch_base, TorchAdapter):
        raise InputError(f"variants are built from a torch model; this model is {base.format}. Use --with FILE instead.")
    return torch_base, text


def build_model(cfg: AuditConfig, base: Any, datasets: dict[str, Any], kind: str, spec: str) -> tuple[Any, Any]:
    """The adapter of one model of a comparison and its metadata: the base, a variant built in memory
    from it (``kind="variant"``) or another model file (``kind="model"``)."""
    if kind == "base":
        return base, None
    if kind == "model":
        try:
            other = load_model(Path(spec), device=str(base.device), input_kind=base.input_kind,
                               class_names=base.class_names, input_range=base.input_range,
                               mean=cfg.model.preprocessing.mean, std=cfg.model.preprocessing.std,
                               model_class=cfg.model.model_class, init_args=cfg.model.init_args,
                               allow_pickle=cfg.model.allow_pickle)
        except ModelInputError as exc:
            raise InputError(str(exc)) from None
        return other, {"path": spec}
    V = _variants_module()
    torch_base, text = _variant_source(base, spec)
    inputs = datasets["eval"].inputs[:2]
    example = text.token_ids(inputs) if text is not None else base.to_batch(inputs)
    try:
        finetune = _training_data(V, spec, base, datasets, cfg.seed)
        if finetune is not None and text is not None:
            raise InputError(f"variant {spec!r} trains on the data; for text models it is not supported yet "
                             "(the training loop takes numeric inputs). Use int8_eager_dynamic, pruned or --with.")
        built = V.make_variant(torch_base.module, spec, example_inputs=example, device=str(base.device),
                               finetune=finetune)
        adapter = V.variant_adapter(built, torch_base)
        if text is not None:
            wrapped = TokenizedTextAdapter(adapter, text.tokenizer, format=adapter.format)
            wrapped.float_twin = base
            wrapped.variant_metadata = built.metadata
            adapter = wrapped
    except ModelInputError as exc:
        raise InputError(str(exc)) from None
    return adapter, built.metadata


def audit_built(cfg: AuditConfig, base: Any, adapter: Any, datasets: dict[str, Any], checks: list[Any], kind: str,
                spec: str, meta: Any, ctx: Any, progress: ProgressFactory | None = None, *, on_start: Any = None,
                on_check: Any = None) -> AuditResult:
    """The audit of one model of a comparison, on its probed context."""
    events = {"on_start": on_start, "on_check": on_check}
    if kind == "base":
        return audit_adapter(cfg, base, datasets, checks=checks, progress=progress, ctx=ctx, **events)
    if kind == "variant":
        record = FileRecord(role="model", path=f"{cfg.model.path} [{spec}]", sha256=file_sha256(Path(cfg.model.path)),
                            format=f"{base.format}+variant:{spec}")
    else:
        record = FileRecord(role="model", path=spec, sha256=file_sha256(Path(spec)), format=adapter.format)
    return audit_adapter(cfg, adapter, datasets, checks=checks, progress=progress, model_file=record,
                         model_facts={"variant": meta} if kind == "variant" else None, ctx=ctx, **events)


def audit_model(cfg: AuditConfig, kind: str, spec: str) -> tuple[AuditResult, Any]:
    """Load, build, probe and audit one model of a comparison from the config alone — what a Ray worker
    runs (``audit.executor``); the same steps as the local executor, from the same seed."""
    checks = build_checks(cfg)
    base, datasets = load_inputs(cfg)
    adapter, meta = build_model(cfg, base, datasets, kind, spec)
    ctx = probed_context(cfg, adapter, datasets, checks, variant=kind != "base")
    return audit_built(cfg, base, adapter, datasets, checks, kind, spec, meta, ctx), meta


def _audit_locally(cfg: AuditConfig, base: Any, datasets: dict[str, Any], checks: list[Any],
                   wanted: list[tuple[str, str]], progress: ProgressFactory | None, audited: Any, *,
                   on_start: Any = None, on_check: Any = None) -> None:
    built = [build_model(cfg, base, datasets, kind, spec) for kind, spec in wanted]
    # Every model is probed (non-finite logits, output width, determinism) before any check runs, so a
    # variant that is bad input stops the comparison before any work; the probe caches its eval logits.
    contexts = [probed_context(cfg, adapter, datasets, checks, progress=progress, variant=kind != "base")
                for (kind, _), (adapter, _) in zip(wanted, built)]
    for (kind, spec), (adapter, meta), ctx in zip(wanted, built, contexts):
        audited(kind, spec, audit_built(cfg, base, adapter, datasets, checks, kind, spec, meta, ctx, progress,
                                        on_start=on_start, on_check=on_check), meta)


def _training_data(V: Any, spec: str, base: Any, datasets: dict[str, Any], seed: int) -> dict[str, Any] | None:
    """For a variant built from training data (``pgd_at``, ``distilled``): data.reference, with the base's
    preprocessing and input range; None for the others."""
    name, _ = V.parse_variant(spec)
    if not V.VARIANTS[name].needs_data:
        return None
    ref = datasets.get("reference")
    if ref is None or ref.target is None:
        raise InputError(f"variant {name!r} is trained on the training data: give it as data.reference, with labels.")
    from audit.attacks import pgd

    # fine-tuning reads data.reference whole (its memory budget covers it)
    return {"x": as_array(ref.inputs), "y": ref.target, "preprocess": base.preprocess,
            "clip": base.input_range, "seed": seed, "attack": pgd}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
