"""What in a serialized ``torch.export`` program (``models/<m>.json``) would reach ``eval`` or ``exec``.

``torch.export.load`` and ``ExportedProgram.module()`` turn parts of the program's JSON into Python:

- every SymInt/SymFloat/SymBool ``expr_str`` goes through ``sympy.sympify``, which calls ``eval``;
- ``guards_code`` lines are pasted into a function that is ``exec``'d and runs on every forward call;
- placeholder names, ``get_attr`` targets (buffer/parameter/constant names), ``forward_arg_names`` and the
  keys of the kwargs dict in ``in_spec`` are pasted by FX into the ``forward`` source it compiles;
- string graph inputs are pasted between quotes into the same guard function;
- pytree contexts with ``__enum__`` or a ``defaultdict`` factory ``import_module`` a named module.

:func:`program_problems` walks the JSON and checks each of these against an allowlist over the syntax
tree (:mod:`ast`, which parses but never runs): sympy constructors over symbols and numbers; shape
comparisons over ``L['x'].size()[i]``; plain identifiers and dotted names. It also refuses powers that
would build astronomically large integers (``9**9**9``), which sympy and Python evaluate eagerly.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
from collections.abc import Iterator
from typing import Any

MAX_EXPR_CHARS = 20_000
"""Longest shape expression or guard accepted; torch writes a few hundred characters at most."""
_MAX_LITERAL = 1 << 64
_MAX_EXPONENT = 64

_NUMBER = re.compile(r"[-+]?[0-9]{1,40}(?:\.[0-9]{0,40})?(?:[eE][-+]?[0-9]{1,4})?\Z")
_SAFE_TEXT = re.compile(r"[^'\"\\\r\n#]*\Z")
# pytree contexts that are plain JSON; anything else is refused (see _treespec_problem).
_TREESPEC_DICTS = {"builtins.dict", "collections.OrderedDict"}
_DEFAULTDICT_FACTORIES = {"list", "dict", "set", "int", "float", "str", "tuple"}


def _is_name(text: Any) -> bool:
    """A Python identifier (Unicode allowed, as Python allows): no quote, bracket or space to break out."""
    return isinstance(text, str) and text.isidentifier() and not keyword.iskeyword(text)


def _is_dotted(text: Any) -> bool:
    """``layers.0.weight``: identifiers or digits joined by dots (FX writes digit parts as getattr(x, "0"))."""
    return isinstance(text, str) and (text == "" or all(p.isidentifier() or (p.isascii() and p.isdigit())
                                                        for p in text.split(".")))


def _short(text: Any, n: int = 60) -> str:
    s = str(text)
    return repr(s if len(s) <= n else s[:n] + "...")


def program_problems(obj: Any) -> Iterator[str]:
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
                if isinstance(value, str) and value and not _is_name(value):
                    yield f"the name {_short(value)}, not a Python identifier"
            elif key.endswith("_name") or key == "fqn":
                if isinstance(value, str) and not _is_dotted(value):
                    yield f"the name {_short(value)}, not a dotted Python name"
            elif key == "forward_arg_names":
                for arg in value if isinstance(value, list) else [value]:
                    if not _is_name(arg):
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
            return _is_name(v) or bool(_NUMBER.match(v))
        return False
    return None


_SYMPY_CALLS: frozenset[str] | None = None


def _every_node_ok(text: Any, node_ok: Any) -> bool:
    """``text`` parses as one Python expression and every node of it passes ``_common_ok`` or, where that has no
    answer, ``node_ok``: the allowlist walk shared by sympy expressions and guards."""
    tree = _parse(text)
    if tree is None:
        return False
    for node in ast.walk(tree):
        ok = _common_ok(node)
        if not (node_ok(node) if ok is None else ok):
            return False
    return True


def _safe_sympy(text: Any) -> bool:
    """An ``expr_str`` that ``sympy.sympify`` may evaluate: sympy constructors over names and numbers."""
    global _SYMPY_CALLS
    if _SYMPY_CALLS is None:
        _SYMPY_CALLS = _sympy_calls()
    calls = _SYMPY_CALLS

    def node_ok(node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return _is_name(node.id) and not node.id.startswith("__")
        if isinstance(node, ast.Call):
            return (isinstance(node.func, ast.Name) and node.func.id in calls and not _huge_power(node)
                    and all(kw.arg is not None and isinstance(kw.value, ast.Constant) for kw in node.keywords))
        return False

    return _every_node_ok(text, node_ok)


def _safe_guard(text: Any) -> bool:
    """A ``guards_code`` line: comparisons over ``L['x'].size()[i]``, numbers and a few math functions."""
    if not isinstance(text, str) or not re.fullmatch(r"[^\"\\\r\n#;]*", text):
        return False

    def node_ok(node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in ("L", "math", "True", "False", "inf") or node.id in _GUARD_CALLS
        if isinstance(node, ast.Attribute):
            return ((isinstance(node.value, ast.Name) and node.value.id == "math" and node.attr in _MATH_OK)
                    or node.attr in _TENSOR_METHODS)
        if isinstance(node, ast.Subscript):
            return isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, (int, str))
        if isinstance(node, ast.Call):
            return not node.keywords and not _huge_power(node) and _guard_callee_ok(node)
        return False

    return _every_node_ok(text, node_ok)


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
