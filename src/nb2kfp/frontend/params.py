"""The ``pipeline-parameters`` and ``pipeline-metrics`` cells."""

from __future__ import annotations

import ast
import json

from nb2kfp.errors import Diagnostic, error, warning
from nb2kfp.frontend import literals
from nb2kfp.frontend.notebook import json_leaves
from nb2kfp.ir import Parameter, ParamType, ParamValue

_TYPES: tuple[tuple[type, ParamType], ...] = (
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (list, "list"),
    (dict, "dict"),
)


def param_type(value: object) -> ParamType | None:
    for py_type, name in _TYPES:
        if type(value) is py_type:
            return name
    return None


def parse_parameters(path: str, cell: int, tree: ast.Module, diagnostics: list[Diagnostic]) -> list[Parameter]:
    """Literal assignments ``name = value`` (or ``name: T = value``) become typed parameters;
    ``name = None`` an optional str parameter (None unless a value is given)."""
    found: list[Parameter] = []
    for stmt in literals.assignments(tree):
        if not isinstance(stmt, literals.Assignment):
            kind = type(stmt).__name__.lower()
            msg = f"a parameters cell holds only literal assignments (name = value); this line is a {kind} statement"
            diagnostics.append(error(path, msg, "NB040", cell, stmt.lineno))
            continue
        name = stmt.name
        try:
            value = literals.literal(stmt.value)
        except literals.NotLiteral:
            msg = f"parameter {name!r}: the value must be a literal (number, string, bool, list or dict)"
            diagnostics.append(error(path, msg, "NB041", cell, stmt.line))
            continue
        kind_name = "str" if value is None else param_type(value)  # papermill's `x = None`: an optional str
        if kind_name is None or not _json_exact(value):
            msg = (
                f"parameter {name!r}: a {type(value).__name__} cannot be a pipeline parameter; "
                "use int, float, str, bool, or a list/dict of JSON values"
            )
            diagnostics.append(error(path, msg, "NB042", cell, stmt.line))
            continue
        problem = _kfp_problem(value)
        if problem:
            diagnostics.append(error(path, f"parameter {name!r}: {problem}", "NB042", cell, stmt.line))
            continue
        found.append(Parameter(name, kind_name, value, cell))
    return found


def _kfp_problem(value: object) -> str | None:
    """What KFP cannot carry exactly: numbers travel as doubles (integers beyond 2**53 lose digits or overflow),
    strings as UTF-8 (a lone surrogate from a ``"\\ud800"`` escape has no encoding)."""
    for item in json_leaves(value):
        if type(item) is int and abs(item) > 2**53:
            return f"a {item.bit_length()}-bit integer does not fit a KFP number (at most 2**53)"
        elif isinstance(item, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in item):
            return "a string with a lone surrogate (\\ud800-\\udfff) is not UTF-8 text"
    return None


def _json_exact(value: object) -> bool:
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError, RecursionError):
        return False


def coerce(param: Parameter, text: str) -> ParamValue:
    """Turn ``-p name=text`` into the parameter's type; ValueError names what was expected."""
    kind = param.type
    if kind == "str":
        return text
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"parameter {param.name!r} is a bool: give true or false, not {text!r}")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"parameter {param.name!r} is an int: {text!r} is not one") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"parameter {param.name!r} is a float: {text!r} is not a number") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"parameter {param.name!r} is a {kind}: give it as JSON") from None
    if param_type(value) != kind:
        raise ValueError(f"parameter {param.name!r} is a {kind}, got a {type(value).__name__}")
    return value  # type: ignore[no-any-return]


def parse_metrics(path: str, cell: int, tree: ast.Module, diagnostics: list[Diagnostic]) -> list[str]:
    """One metric per line, as a bare name or as Kale writes it: ``print(name)``."""
    names: list[str] = []
    for stmt in tree.body:
        node = stmt.value if isinstance(stmt, ast.Expr) else None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
            and len(node.args) == 1
            and not node.keywords
        ):
            node = node.args[0]
        if isinstance(node, ast.Name):
            if node.id not in names:
                names.append(node.id)
            continue
        msg = "a pipeline-metrics cell lists one variable per line, as `name` or `print(name)`"
        diagnostics.append(error(path, msg, "NB045", cell, stmt.lineno))
    return names


def text_metrics(path: str, metrics: list[tuple[str, int]], trees: list[ast.Module], diags: list[Diagnostic]) -> None:
    """Warn about metrics a step sets to text: KFP metrics are numbers; the run shows them as text metrics."""
    texts: set[str] = set()
    for tree in trees:
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and _is_text(stmt.value):
                texts.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
    for name, cell in metrics:
        if name in texts:
            msg = (
                f"metric {name!r} is set to text, but KFP metrics are numbers: it is shown as a text metric "
                "(the step's pipeline-metrics-text table in the KFP UI, text_metrics in the run's record), "
                "not in the run's Metrics or run comparisons"
            )
            diags.append(warning(path, msg, "NB047", cell))


def _is_text(node: ast.expr) -> bool:
    if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("str", "repr", "format")
