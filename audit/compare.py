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
from audit.runner import audit_adapter, build_checks, load_inputs, probed_context
from audit.threads import apply_threads
from models.adapter import TokenizedTextAdapter
from models.errors import ModelInputError
from models.loaders import load_model


def run_compare(cfg: AuditConfig, *, variants: list[str] = (), models: list[Path] = (),
                progress: ProgressFactory | None = None, on_model: Any = None) -> ComparisonResult:
    """Audit the base model of ``cfg``, each variant spec and each other model file.

    Raises
    ------
    InputError
        Bad input (including a variant that does not apply to the model); nothing was written.
    """
    if not variants and not models:
        raise InputError("compare needs something to compare: pass --variant SPEC (e.g. int8_dynamic, pruned:0.5) "
                         "or --with MODEL_FILE.")
    checks = build_checks(cfg)
    apply_threads(cfg.threads)  # before any model is loaded (torch's inter-op pool is sized once)
    base, datasets = load_inputs(cfg)
    plans: list[tuple[str, str, Any]] = []
    if variants:
        try:
            from models import variants as V
        except ImportError as exc:  # pragma: no cover - the module ships with the package
            raise InputError(f"model variants are not available: {exc}.") from None
        # A text model with its tokenizer: the variant is built from the model on token ids and gets
        # the same tokenizer again.
        text = base if isinstance(base, TokenizedTextAdapter) else None
        torch_base = text.inner if text is not None else base
        module = getattr(torch_base, "module", None)
        if module is None:
            raise InputError(f"variants are built from a torch model; this model is {base.format}. Use --with FILE instead.")
        inputs = datasets["eval"].inputs[:2]
        example = text.token_ids(inputs) if text is not None else base.to_batch(inputs)
        for spec in variants:
            try:
                finetune = _training_data(V, spec, base, datasets, cfg.seed)
                if finetune is not None and text is not None:
                    raise InputError(f"variant {spec!r} trains on the data; for text models it is not supported yet "
                                     "(the training loop takes numeric inputs). Use int8_eager_dynamic, pruned or --with.")
                built = V.make_variant(module, spec, example_inputs=example, device=str(base.device), finetune=finetune)
                adapter = V.variant_adapter(built, torch_base)
                if text is not None:
                    wrapped = TokenizedTextAdapter(adapter, text.tokenizer, format=adapter.format)
                    wrapped.float_twin = base
                    wrapped.variant_metadata = built.metadata
                    adapter = wrapped
            except ModelInputError as exc:
                raise InputError(str(exc)) from None
            plans.append((spec, "variant", (adapter, built.metadata)))
    for path in models:
        try:
            other = load_model(path, device=str(base.device), input_kind=base.input_kind,
                               class_names=base.class_names, input_range=base.input_range,
                               mean=cfg.model.preprocessing.mean, std=cfg.model.preprocessing.std,
                               model_class=cfg.model.model_class, init_args=cfg.model.init_args,
                               allow_pickle=cfg.model.allow_pickle)
        except ModelInputError as exc:
            raise InputError(str(exc)) from None
        plans.append((str(path), "model", (other, {"path": str(path)})))

    # Every model is probed (non-finite logits, output width, determinism) before any check runs, so a
    # variant that is bad input stops the comparison before any work; the probe caches its eval logits.
    base_ctx = probed_context(cfg, base, datasets, checks, progress=progress)
    contexts = [probed_context(cfg, adapter, datasets, checks, progress=progress, variant=True)
                for _, _, (adapter, _) in plans]
    entries = []
    result = audit_adapter(cfg, base, datasets, checks=checks, progress=progress, ctx=base_ctx)
    entries.append(CompareEntry(label="base", kind="base", spec=str(cfg.model.path), result=result))
    if on_model is not None:
        on_model(entries[-1])
    for (spec, kind, (adapter, meta)), ctx in zip(plans, contexts):
        if kind == "variant":
            record = FileRecord(role="model", path=f"{cfg.model.path} [{spec}]", sha256=file_sha256(Path(cfg.model.path)),
                                format=f"{base.format}+variant:{spec}")
        else:
            record = FileRecord(role="model", path=spec, sha256=file_sha256(Path(spec)), format=adapter.format)
        result = audit_adapter(cfg, adapter, datasets, checks=checks, progress=progress, model_file=record,
                               model_facts={"variant": meta} if kind == "variant" else None, ctx=ctx)
        label = spec if kind == "variant" else Path(spec).stem
        if any(e.label == label for e in entries):
            label = f"{label}-{len(entries)}"
        entries.append(CompareEntry(label=label, kind=kind, spec=spec,
                                    metadata=_jsonable(meta), result=result))
        if on_model is not None:
            on_model(entries[-1])
    return ComparisonResult(entries=entries)


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

    return {"x": ref.inputs, "y": ref.target, "preprocess": getattr(base, "preprocess", None),
            "clip": base.input_range, "seed": seed, "attack": pgd}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
