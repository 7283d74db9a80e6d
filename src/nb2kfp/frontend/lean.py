"""Lean steps: each step runs only the import statements of the ``imports`` cells that it, or the code it
calls from the prelude, uses (in the notebook, one kernel imports everything once; in a pipeline every step
pays for every import again).

Only a plain ``import`` / ``from ... import`` statement (not ``*``, not ``__future__``) is ever dropped, and
only when none of the names it binds is used: every other statement of the prelude (``matplotlib.use(...)``,
``pd.set_option(...)``, ``warnings.filterwarnings(...)``, ``try: import x ...``, assignments, definitions)
stays, and the names it uses keep their imports; so do the functions and classes of the prelude (a step may
call them through a value it received). A step that reaches its names indirectly (``eval``, ``exec``, ``globals``,
``get_ipython``: magics become those calls) keeps every import. An import whose module name appears as an
attribute (``import hvplot.pandas`` for ``df.hvplot``) is kept too. Dropped lines become empty lines, so
line numbers in tracebacks stay those of the notebook.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from nb2kfp.ir import CodeCell

_INDIRECT = {"eval", "exec", "globals", "locals", "vars", "get_ipython", "__import__", "__builtins__"}


def _used(nodes: Iterable[ast.AST]) -> tuple[set[str], set[str]]:
    """Names read or written anywhere in ``nodes``, and attribute names."""
    names: set[str] = set()
    attributes: set[str] = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                names.add(sub.id)
            elif isinstance(sub, ast.Attribute):
                attributes.add(sub.attr)
    return names, attributes


def _droppable(stmt: ast.stmt) -> list[str] | None:
    """The names a plain import binds (with the top module name first), or None for anything else."""
    if isinstance(stmt, ast.Import):
        return [a.asname or a.name.split(".")[0] for a in stmt.names] + [a.name.split(".")[-1] for a in stmt.names]
    if isinstance(stmt, ast.ImportFrom) and stmt.module != "__future__" and all(a.name != "*" for a in stmt.names):
        return [a.asname or a.name for a in stmt.names] + (stmt.module or "").split(".")
    return None


def _shares_a_line(stmt: ast.stmt, body: list[ast.stmt]) -> bool:
    """Whether another statement is on one of its lines (``import os; os.chdir(...)``)."""
    end = stmt.end_lineno or stmt.lineno
    return any(o is not stmt and o.lineno <= end and (o.end_lineno or o.lineno) >= stmt.lineno for o in body)


def _parse(cells: Iterable[CodeCell]) -> list[tuple[CodeCell, list[ast.stmt]]] | None:
    out = []
    for cell in cells:
        try:
            out.append((cell, ast.parse(cell.source).body))
        except SyntaxError:
            return None
    return out


def prelude_for(
    prelude: tuple[CodeCell, ...], imports: set[int], step_cells: tuple[CodeCell, ...]
) -> tuple[CodeCell, ...]:
    """``prelude`` (the imports and functions cells) as this step needs it; ``imports``: which cells (by
    index) are ``imports`` cells, the only ones whose statements may be dropped."""
    parsed, step = _parse(prelude), _parse(step_cells)
    if parsed is None or step is None:
        return prelude
    needed, attributes = _used(s for _, body in step for s in body)
    for _, body in parsed:
        for stmt in body:
            if _droppable(stmt) is None:  # runs in every step (definitions too): what it uses is needed
                names, attrs = _used([stmt])
                needed |= names
                attributes |= attrs
    if needed & _INDIRECT:
        return prelude
    cells = []
    for cell, body in parsed:
        lines = cell.source.splitlines(keepends=True)
        dropped = False
        for stmt in body if cell.index in imports else []:
            bound = _droppable(stmt)
            if bound is None or set(bound) & (needed | attributes) or _shares_a_line(stmt, body):
                continue
            assert stmt.end_lineno is not None
            for i in range(stmt.lineno - 1, stmt.end_lineno):
                lines[i] = "\n"
            dropped = True
        cells.append(CodeCell(cell.index, "".join(lines), cell.raises) if dropped else cell)
    return tuple(cells)
