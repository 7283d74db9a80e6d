"""What a notebook's kernel has and a step cannot: located lint warnings for values that come out different in a
step (NB035) or cannot go from one step to another (NB036), found by the real-world corpus (tests/corpus)."""

from __future__ import annotations

import ast
from collections.abc import Iterable

from nb2kfp.errors import Diagnostic, warning

# Star imports that bind pyplot's ``requested_backend`` (``%pylab`` is read as ``from pylab import *``).
_PYPLOT_STARS = frozenset({"matplotlib.pyplot", "matplotlib.pylab", "pylab"})
# ctypes' makers of function types; calling such a type on a Python function makes a pointer pickle refuses.
_FUNCTION_TYPES = frozenset({"CFUNCTYPE", "PYFUNCTYPE", "WINFUNCTYPE"})


def backend_names(path: str, cell: int, tree: ast.Module, diags: list[Diagnostic]) -> None:
    """NB035: ``from matplotlib.pyplot import *`` binds ``requested_backend``, the backend pyplot was imported with:
    a step draws with Agg ('agg'), a Jupyter kernel with its inline backend."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in _PYPLOT_STARS and node.names[0].name == "*":
            msg = (
                f"`from {node.module} import *` binds `requested_backend`, matplotlib's backend: 'agg' in a step "
                "(steps draw with Agg), the inline backend in Jupyter; import the names you use instead"
            )
            diags.append(warning(path, msg, "NB035", cell, node.lineno))


def _maker(call: ast.expr) -> bool:
    """``ctypes.CFUNCTYPE(...)`` or ``CFUNCTYPE(...)`` (and PYFUNCTYPE, WINFUNCTYPE)."""
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    return (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")) in _FUNCTION_TYPES


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for t in target.elts for n in _names(t)]
    return []


def function_pointers(
    path: str,
    steps: Iterable[tuple[str, list[tuple[int, ast.Module]]]],
    outputs: dict[str, set[str]],
    diags: list[Diagnostic],
) -> None:
    """NB036: a variable a step hands to another, set by a statement that makes a ctypes function pointer
    (``ftype(math.log)`` where ``ftype = ctypes.CFUNCTYPE(...)``): pickle refuses such pointers, so the step fails
    there; a kernel never pickles it. Only the statement that makes the pointer is looked at, not later copies."""
    steps = list(steps)
    types = {
        name
        for _, cells in steps
        for _, tree in cells
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _maker(node.value)
        for target in node.targets
        for name in _names(target)
    }
    for step, cells in steps:
        handed = outputs.get(step, set())
        for cell, tree in cells:
            for node in ast.walk(tree):
                if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
                    continue
                calls = [c for c in ast.walk(node.value) if isinstance(c, ast.Call)]
                made = [c for c in calls if _maker(c.func) or (isinstance(c.func, ast.Name) and c.func.id in types)]
                if not made:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for name in sorted({n for t in targets for n in _names(t)} & handed):
                    msg = (
                        f"{name!r} holds a ctypes function pointer ({ast.unparse(made[0].func)}(...)), which cannot "
                        f"be pickled: step {step!r} cannot hand it to another step; make and use it in one step"
                    )
                    diags.append(warning(path, msg, "NB036", cell, node.lineno))
