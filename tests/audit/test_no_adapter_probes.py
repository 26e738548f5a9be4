"""Checks read what a model offers from ``adapter.capabilities`` and the typed attributes of ``ModelAdapter``,
never by probing the adapter with ``getattr``/``hasattr`` (issue 14, item 6). An AST scan of every module of
``audit`` and of ``models`` outside the adapter itself (which computes the declaration from the model)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Attributes of an adapter (or of something that may be one) that were probed before the declaration.
ADAPTER_ATTRS = {"module", "model", "inner", "preprocess", "float_twin", "variant_metadata", "tokenizer", "max_length",
                 "encode", "embed", "logits_from_embeddings", "token_offsets", "as_module", "differentiable",
                 "fixed_batch_size", "has_features", "has_attention", "torch_model", "capabilities"}
#: Names an adapter goes by in the code.
ADAPTER_NAMES = {"adapter", "base", "base_adapter", "torch_base", "twin", "inner", "source", "owner", "victim"}
#: (file, source of the call): why the probe is not one of an adapter.
ALLOWED = {
    ("audit/checks/attention.py", 'getattr(adapter.tokenizer, "pad_token_id", None)'):
        "a probe of the tokenizer (a third-party object), not of the adapter",
}


def _probes(path: Path) -> list[str]:
    text = path.read_text()
    found = []
    for node in ast.walk(ast.parse(text)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2):
            continue
        target, name = node.args[0], node.args[1]
        names = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)} | {
            n.attr for n in ast.walk(target) if isinstance(n, ast.Attribute)}
        attr = name.value if isinstance(name, ast.Constant) else None
        if names & ADAPTER_NAMES or attr in ADAPTER_ATTRS:
            found.append(ast.get_source_segment(text, node) or "")
    return found


def _scanned() -> list[Path]:
    files = sorted((ROOT / "audit").rglob("*.py")) + sorted((ROOT / "models").rglob("*.py"))
    return [f for f in files if f != ROOT / "models" / "adapter.py"]


def test_no_module_probes_an_adapter_with_getattr_or_hasattr() -> None:
    offending = [f"{f.relative_to(ROOT)}: {src}" for f in _scanned() for src in _probes(f)
                 if (str(f.relative_to(ROOT)), src) not in ALLOWED]
    assert not offending, "read adapter.capabilities or a typed ModelAdapter attribute instead:\n" + "\n".join(offending)


def test_every_allowed_probe_is_still_there() -> None:
    """An allowlist entry whose probe is gone is stale and must go too."""
    present = {(str(f.relative_to(ROOT)), src) for f in _scanned() for src in _probes(f)}
    assert set(ALLOWED) <= present, set(ALLOWED) - present


def test_the_scan_sees_a_probe(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('def f(ctx, m):\n    a = getattr(ctx.adapter, "whatever", None)\n'
                     '    return hasattr(m, "as_module"), a\n')
    assert _probes(probe) == ['getattr(ctx.adapter, "whatever", None)', 'hasattr(m, "as_module")']
