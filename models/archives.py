"""Look inside model archives before torch does: refuse what would be unpickled or run as code.

A model file is data. ``torch.export.load``, ``torch.jit.load`` and ``torch.load`` all read zip
archives, and some of what they read is code in disguise. This module inspects an archive with
:mod:`zipfile`, :mod:`json`, :mod:`ast` and :mod:`pickletools` only (none of which executes
anything) and raises :class:`~models.errors.ModelInputError` with one line naming the archive entry
and the fix, before any loader opens the file.

What loading a ``torch.export`` archive (``.pt2``, torch 2.13) can run, and the check for each:

==============================================  ====================================================
Path in torch                                    Check here
==============================================  ====================================================
weights config ``use_pickle: true``             refused: ``torch.load(weights_only=False)``
(``_package._load_state_dict``)
constants config ``tensor_*`` + ``use_pickle``  refused: ``torch.load(weights_only=False)``
constants ``custom_obj_*``                      refused: TorchScript object unpickler
constants ``opaque_obj_*``                      refused: ``pickle.loads``
legacy ``data/weights|constants/<m>.pt``,       must load with ``torch.load(weights_only=True)``:
``data/sample_inputs/<m>.pt``, the pre-2.8     torch retries a failed safe load with
``serialized_*.pt`` files                        ``weights_only=False`` (``deserialize_torch_artifact``)
``data/aotinductor/``                           refused always: a compiled shared library
SymInt/SymFloat/SymBool ``expr_str``            plain sympy arithmetic only: ``sympy.sympify`` evals it
``guards_code``                                 plain shape comparisons only: ``exec`` at ``.module()``
graph input, node and attribute names,          plain identifiers / dotted names: FX pastes them
``forward_arg_names``, kwargs keys of           into the Python source it ``exec``\\ s
``in_spec``, string graph inputs
pytree ``__enum__`` / ``defaultdict`` contexts  refused / builtins only: they ``import_module``
==============================================  ====================================================

Every zip (``.pt2``, TorchScript, ``torch.save``) also gets container checks: a valid zip, no entry
past the end of the file, no entry name twice (torch's reader matches names case-insensitively, so
case-folded), and no entry that inflates more than :data:`MAX_INFLATION` times (a zip bomb).

``allow_pickle=True`` lifts the pickle and code checks (the user trusts the file), never the
container checks or the AOTInductor refusal.
"""

from __future__ import annotations

import ast
import io
import json
import pickletools
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from models.errors import ModelInputError

MAX_INFLATION = 100
"""An entry may inflate at most this many times its stored size (plus 1 MiB); deflate reaches ~1000x."""
_SLACK = 1 << 20
MAX_EXPR_CHARS = 20_000
"""Longest shape expression or guard accepted; torch writes a few hundred characters at most."""
_MAX_LITERAL = 1 << 64
_MAX_EXPONENT = 64

TRUST_FIX = "or pass --allow-pickle (model.allow_pickle: true) if you trust the file"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DOTTED = re.compile(r"(?:[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)?\Z")
_NUMBER = re.compile(r"[-+]?[0-9]{1,40}(?:\.[0-9]{0,40})?(?:[eE][-+]?[0-9]{1,4})?\Z")
_SAFE_TEXT = re.compile(r"[^'\"\\\r\n#]*\Z")
# pytree contexts that are plain JSON; anything else is refused (see _check_treespec).
_TREESPEC_DICTS = {"builtins.dict", "collections.OrderedDict"}
_DEFAULTDICT_FACTORIES = {"list", "dict", "set", "int", "float", "str", "tuple"}


def _short(text: Any, n: int = 60) -> str:
    s = str(text)
    return repr(s if len(s) <= n else s[:n] + "...")


# ---------------------------------------------------------------------------------------------
# Zip containers


def open_zip(path: Path, what: str) -> zipfile.ZipFile:
    """Open ``path`` as a zip after the container checks; ``what`` names the format in messages."""
    try:
        size = path.stat().st_size
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise ModelInputError(
            f"model file {path} is not a valid {what}: not a readable zip archive ({_one_line(exc)}); "
            "check that the file is complete, or re-save it."
        ) from None
    try:
        check_zip_entries(zf.infolist(), size, str(path))
    except ModelInputError:
        zf.close()
        raise
    return zf


def check_zip_entries(infos: list[zipfile.ZipInfo], size: int, where: str) -> None:
    """The container checks on a zip's central directory: truncation, duplicate names, bombs."""
    seen: set[str] = set()
    for info in infos:
        key = info.filename.lower()
        if key in seen:
            raise ModelInputError(
                f"model file {where} has the archive entry {_short(info.filename)} twice (names are matched "
                "case-insensitively), so what is checked need not be what is loaded; re-save the model."
            )
        seen.add(key)
        if info.header_offset + info.compress_size > size:
            raise ModelInputError(
                f"model file {where} is truncated or corrupt: archive entry {_short(info.filename)} extends past "
                "the end of the file; copy or save it again."
            )
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise ModelInputError(
                    f"model file {where} is corrupt: stored archive entry {_short(info.filename)} claims "
                    f"{info.file_size} bytes but holds {info.compress_size}; copy or save it again."
                )
        elif info.file_size > MAX_INFLATION * info.compress_size + _SLACK:
            raise ModelInputError(
                f"model file {where}: archive entry {_short(info.filename)} inflates from {info.compress_size} to "
                f"{info.file_size} bytes (over {MAX_INFLATION}x, a zip bomb); re-save the model with torch, "
                "which stores entries uncompressed."
            )


def check_zip_file(path: Path, what: str) -> None:
    """Container checks only (TorchScript and ``torch.save`` archives)."""
    open_zip(path, what).close()


# ---------------------------------------------------------------------------------------------
# Pickles, recognised without running them


def is_pickle_stream(stream: BinaryIO) -> bool:
    """Whether ``stream`` starts with one complete, well-formed pickle (parsed, never executed)."""
    try:
        for opcode, _arg, _pos in pickletools.genops(stream):
            if opcode.name == "STOP":
                return True
    except Exception:  # noqa: BLE001 - pickletools raises ValueError and others on garbage
        return False
    return False


def loads_with_weights_only(data: bytes) -> bool:
    """Whether ``torch.load(weights_only=True)`` reads ``data``: the call torch makes first, before it
    retries with ``weights_only=False`` in ``torch._export.serde.serialize.deserialize_torch_artifact``."""
    import torch

    if data[:4] == b"PK\x03\x04":  # a nested torch.save zip: the same container checks first
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            check_zip_entries(inner.infolist(), len(data), "(nested archive)")
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001 - any failure makes torch fall back to unpickling
        return False
    return True


# ---------------------------------------------------------------------------------------------
# torch.export archives


def check_export_archive(path: Path, *, allow_pickle: bool) -> None:
    """Refuse a ``.pt2`` whose loading would unpickle, import or run code (see the module docstring).

    Raises
    ------
    ModelInputError
        One line naming the archive entry and the fix.
    """
    with open_zip(path, "torch.export archive") as zf:
        entries = _ExportEntries(zf, path)
        aoti = next((info.filename for name, info in entries if name.startswith("data/aotinductor/")), None)
        if aoti is not None:
            raise ModelInputError(
                f"model file {path} holds AOTInductor compiled code (archive entry {_short(aoti)}), a shared library "
                "that runs when loaded; deepaudit never loads it. Save the program with torch.export.save instead."
            )
        if allow_pickle:
            return
        for name, info in entries:
            if name.startswith("data/weights/") and name.endswith("_weights_config.json"):
                _check_payload_config(entries, info, "weights")
            elif name.startswith("data/constants/") and name.endswith("_constants_config.json"):
                _check_payload_config(entries, info, "constants")
            elif name.startswith("models/") or name == "serialized_exported_program.json":
                _check_program(entries, info)
            elif _is_torch_artifact(name):
                data = entries.read(info)
                if data and not loads_with_weights_only(data):
                    raise ModelInputError(
                        f"model file {path}: archive entry {_short(info.filename)} is a pickle that "
                        "torch.load(weights_only=True) refuses, and torch.export.load would then unpickle it, "
                        f"which can run arbitrary code. Re-save the model with torch.export.save, {TRUST_FIX}."
                    )


def _is_torch_artifact(name: str) -> bool:
    """Entries that ``torch.export.load`` hands to ``deserialize_torch_artifact`` (safe load, then unpickle)."""
    if name.startswith(("data/sample_inputs/", "data/weights/", "data/constants/")):
        return name.endswith(".pt")  # <model>.pt: sample inputs, legacy weights, legacy constants
    return name in ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt",
                    "serialized_state_dict.json", "serialized_constants.json")


class _ExportEntries:
    """Entry names as torch's readers see them, case-folded.

    ``PT2ArchiveReader`` strips the archive's root folder and matches names case-insensitively (miniz);
    the pre-2.8 fallback in ``torch.export.load`` reads top-level names with :mod:`zipfile`. Each entry is
    listed under both spellings, so a check never misses an entry either reader would load.
    """

    def __init__(self, zf: zipfile.ZipFile, path: Path) -> None:
        self.zf, self.path = zf, path
        self._entries: list[tuple[str, zipfile.ZipInfo]] = []
        for info in zf.infolist():
            full = info.filename.lower()
            self._entries.append((full, info))
            if "/" in full:
                self._entries.append((full.split("/", 1)[1], info))

    def __iter__(self) -> Iterator[tuple[str, zipfile.ZipInfo]]:
        return iter(self._entries)

    def read(self, info: zipfile.ZipInfo) -> bytes:
        return self.zf.read(info)

    def json(self, info: zipfile.ZipInfo) -> Any:
        try:
            return json.loads(self.read(info))
        except (ValueError, RecursionError) as exc:
            raise ModelInputError(
                f"model file {self.path}: archive entry {_short(info.filename)} is not valid JSON "
                f"({_one_line(exc)}); re-save the model with torch.export.save."
            ) from None


def _check_payload_config(entries: _ExportEntries, info: zipfile.ZipInfo, kind: str) -> None:
    """``*_weights_config.json`` / ``*_constants_config.json``: which payloads torch would unpickle."""
    config = entries.json(info)
    items = config.get("config") if isinstance(config, dict) else None
    if not isinstance(items, dict):
        raise ModelInputError(
            f"model file {entries.path}: archive entry {_short(info.filename)} has no 'config' mapping; "
            "re-save the model with torch.export.save."
        )
    where = f"model file {entries.path}"
    for fqn, meta in items.items():
        if not isinstance(meta, dict):
            continue
        path_name = str(meta.get("path_name", ""))
        entry = f"data/{kind}/{path_name}"
        what = None
        if kind == "weights":
            if meta.get("use_pickle"):
                what = f"a pickled weight {_short(fqn)}"
        elif path_name.startswith("tensor_"):
            if meta.get("use_pickle"):
                what = f"a pickled constant {_short(fqn)}"
        elif path_name.startswith("custom_obj_"):
            what = f"a custom (TorchScript) object constant {_short(fqn)}"
        elif path_name.startswith("opaque_obj_"):
            what = f"an opaque Python object constant {_short(fqn)}"
        else:
            raise ModelInputError(
                f"{where}: archive entry {_short(info.filename)} lists constant {_short(fqn)} of unknown "
                f"kind ({_short(path_name)}); re-save the model with torch.export.save."
            )
        if what is not None:
            raise ModelInputError(
                f"{where} holds {what} (archive entry {_short(entry)}) that torch.export.load would unpickle, which "
                f"can run arbitrary code. Re-save it with torch.export.save from a model with plain tensors, {TRUST_FIX}."
            )


def _check_program(entries: _ExportEntries, info: zipfile.ZipInfo) -> None:
    program = entries.json(info)
    for problem in _program_problems(program):
        raise ModelInputError(
            f"model file {entries.path}: archive entry {_short(info.filename)} has {problem}, which "
            f"torch would run as Python code. Re-export the model with torch.export.save, {TRUST_FIX}."
        )


def _program_problems(obj: Any) -> Iterator[str]:
    """What in a serialized ExportedProgram (``models/<m>.json``) would reach eval/exec, first found first."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if "nodes" in node and isinstance(node.get("inputs"), list):  # a graph: string inputs go into guards
            for inp in node["inputs"]:
                if isinstance(inp, dict) and isinstance(inp.get("as_string"), str) and not _SAFE_TEXT.match(inp["as_string"]):
                    yield f"a string graph input {_short(inp['as_string'])} with quotes or line breaks"
        for key, value in node.items():
            if key == "expr_str":
                if not _safe_sympy(value):
                    yield f"a shape expression {_short(value)} that is not plain sympy arithmetic"
            elif key == "guards_code":
                for guard in value if isinstance(value, list) else [value]:
                    if not _safe_guard(guard):
                        yield f"a guard {_short(guard)} that is not a plain shape comparison"
            elif key in ("name", "as_name"):
                if isinstance(value, str) and value and not _NAME.match(value):
                    yield f"the name {_short(value)}, not a Python identifier"
            elif key.endswith("_name") or key == "fqn":
                if isinstance(value, str) and not _DOTTED.match(value):
                    yield f"the name {_short(value)}, not a dotted Python name"
            elif key == "forward_arg_names":
                for arg in value if isinstance(value, list) else [value]:
                    if not isinstance(arg, str) or not _NAME.match(arg):
                        yield f"the forward argument name {_short(arg)}, not a Python identifier"
            elif key in ("in_spec", "out_spec") and isinstance(value, str):
                problem = _treespec_problem(value)
                if problem:
                    yield problem
            stack.append(value)


def _treespec_problem(text: str) -> str | None:
    """A pytree spec (``[1, {type, context, children_spec}]``): contexts must be plain JSON."""
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError):
        return f"an input/output spec that is not JSON ({_short(text)})"
    todo = [spec[1]] if isinstance(spec, list) and len(spec) == 2 else [spec]
    while todo:
        node = todo.pop()
        if not isinstance(node, dict):
            continue
        typ, context = node.get("type"), node.get("context")
        if isinstance(context, str):
            if "__enum__" in context:
                return f"an input spec context {_short(context)} that imports a module (an enum)"
            try:
                ctx = json.loads(context)
            except (ValueError, RecursionError):
                ctx = None
            if typ == "collections.defaultdict":
                if not (isinstance(ctx, dict) and ctx.get("default_factory_module") == "builtins"
                        and ctx.get("default_factory_name") in _DEFAULTDICT_FACTORIES):
                    return f"a defaultdict input spec {_short(context)} whose factory imports a module"
                ctx = ctx.get("dict_context")
            if typ in _TREESPEC_DICTS or typ == "collections.defaultdict":
                for k in ctx if isinstance(ctx, list) else []:
                    if isinstance(k, str) and not _SAFE_TEXT.match(k):
                        return f"an input key {_short(k)} with quotes or line breaks"
        children = node.get("children_spec")
        if isinstance(children, list):
            todo.extend(children)
    return None


# ---------------------------------------------------------------------------------------------
# Python expressions torch evaluates: an allowlist over the syntax tree


def _sympy_calls() -> frozenset[str]:
    import sympy
    import torch.utils._sympy.functions as tf

    names = {"Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "floor",
             "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "StrictLessThan",
             "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or", "Not", "Piecewise", "ExprCondPair",
             "Tuple", "BooleanTrue", "BooleanFalse", "Infinity", "NegativeInfinity", "NaN", "ComplexInfinity",
             "IntInfinity", "NegativeIntInfinity", "NegativeOne", "One", "Zero", "Half"}
    names |= {n for n, v in vars(tf).items()
              if isinstance(v, type) and issubclass(v, sympy.Basic) and v.__module__ == tf.__name__}
    return frozenset(names)


_POW_CALLS = {"Pow", "PowByNatural", "FloatPow", "LShift"}
_MATH_OK = {"floor", "ceil", "trunc", "isnan", "isinf", "isfinite", "sqrt", "pow", "inf", "nan", "exp", "log", "log2",
            "cos", "sin", "tan", "acos", "asin", "atan", "cosh", "sinh", "tanh", "asinh", "fabs"}
_GUARD_CALLS = {"max", "min", "abs", "int", "float", "round", "Max", "Min", "Abs", "Eq", "Ne", "Mod", "FloorDiv",
                "IsNonOverlappingAndDenseIndicator"}
_TENSOR_METHODS = {"size", "stride", "storage_offset", "dim", "numel"}
_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift, ast.BitAnd,
        ast.BitOr, ast.BitXor, ast.USub, ast.UAdd, ast.Not, ast.Invert, ast.And, ast.Or, ast.Eq, ast.NotEq,
        ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _parse(text: Any) -> ast.Expression | None:
    if not isinstance(text, str) or len(text) > MAX_EXPR_CHARS:
        return None
    try:
        return ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _literal(node: ast.AST) -> float | None:
    """The value of a numeric literal (``5``, ``-5``, ``Integer(5)``), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _literal(node.operand)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("Integer", "Float")
            and len(node.args) >= 1 and isinstance(node.args[0], ast.Constant)):
        try:
            return float(node.args[0].value)
        except (TypeError, ValueError, OverflowError):
            return None
    return None


def _power_parts(node: ast.AST) -> tuple[ast.AST, ast.AST] | None:
    """(base, exponent) of ``a ** b``, ``a ^ b`` (sympify reads ^ as **), ``a << b``, ``Pow(a, b)`` and kin."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.LShift, ast.BitXor)):
        return node.left, node.right
    if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)) and len(node.args) >= 2:
        fname = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        if fname in _POW_CALLS | {"pow"}:
            return node.args[0], node.args[1]
    return None


def _is_symbol(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Symbol":
        return True
    if isinstance(node, ast.Subscript):  # L['x'].size()[0] in a guard
        return True
    return False


def _huge_power(node: ast.AST) -> bool:
    """``9**10**9`` and its spellings: sympy and Python would compute the integer (a hang). A power's
    exponent must be a literal of at most 64 or a bare symbol, and its base must hold no other power."""
    parts = _power_parts(node)
    if parts is None:
        return False
    base, exponent = parts
    value = _literal(exponent)
    small = value is not None and abs(value) <= _MAX_EXPONENT
    if not (small or _is_symbol(exponent)):
        return True
    return any(_power_parts(sub) is not None for sub in ast.walk(base))


def _common_ok(node: ast.AST) -> bool | None:
    """Nodes allowed in both grammars; None when the caller must decide."""
    if isinstance(node, (ast.Expression, ast.Load, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Tuple,
                         ast.keyword, *_OPS)):
        return not _huge_power(node)
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or v is None or isinstance(v, float):
            return True
        if isinstance(v, int):
            return abs(v) <= _MAX_LITERAL
        if isinstance(v, str):
            return bool(_NAME.match(v) or _NUMBER.match(v))
        return False
    return None


_SYMPY_CALLS: frozenset[str] | None = None


def _safe_sympy(text: Any) -> bool:
    """An ``expr_str`` that ``sympy.sympify`` may evaluate: sympy constructors over names and numbers."""
    global _SYMPY_CALLS
    if _SYMPY_CALLS is None:
        _SYMPY_CALLS = _sympy_calls()
    tree = _parse(text)
    if tree is None:
        return False
    for node in ast.walk(tree):
        ok = _common_ok(node)
        if ok is None:
            if isinstance(node, ast.Name):
                ok = bool(_NAME.match(node.id)) and not node.id.startswith("__")
            elif isinstance(node, ast.Call):
                ok = (isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS and not _huge_power(node)
                      and all(kw.arg is not None and isinstance(kw.value, ast.Constant) for kw in node.keywords))
            else:
                ok = False
        if not ok:
            return False
    return True


def _safe_guard(text: Any) -> bool:
    """A ``guards_code`` line: comparisons over ``L['x'].size()[i]``, numbers and a few math functions."""
    if not isinstance(text, str) or not re.fullmatch(r"[^\"\\\r\n#;]*", text):
        return False
    tree = _parse(text)
    if tree is None:
        return False
    for node in ast.walk(tree):
        ok = _common_ok(node)
        if ok is None:
            if isinstance(node, ast.Name):
                ok = node.id in ("L", "math", "True", "False", "inf") or node.id in _GUARD_CALLS
            elif isinstance(node, ast.Attribute):
                ok = ((isinstance(node.value, ast.Name) and node.value.id == "math" and node.attr in _MATH_OK)
                      or node.attr in _TENSOR_METHODS)
            elif isinstance(node, ast.Subscript):
                ok = isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, (int, str))
            elif isinstance(node, ast.Call):
                ok = not node.keywords and not _huge_power(node) and _guard_callee_ok(node)
            else:
                ok = False
        if not ok:
            return False
    return True


def _guard_callee_ok(call: ast.Call) -> bool:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id in _GUARD_CALLS
    if not isinstance(f, ast.Attribute):
        return False
    if isinstance(f.value, ast.Name):
        return f.value.id == "math" and f.attr in _MATH_OK
    # L['x'].size(), L['x'].size(0), L['x'].stride()[1] ...
    return f.attr in _TENSOR_METHODS and (not call.args or (len(call.args) == 1 and _literal(call.args[0]) is not None))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
