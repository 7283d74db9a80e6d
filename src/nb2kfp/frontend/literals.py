"""Cells of ``name = value`` lines: the one reader for the parameters cell and ``component:`` cells.

A line is ``name = value`` or ``name: T = value``; docstrings and bare strings (comments) are skipped.
What a value may be is the caller's rule: a literal (:func:`literal`), or for component calls also a name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Assignment:
    name: str
    value: ast.expr
    line: int


def assignments(tree: ast.Module | None) -> Iterator[Assignment | ast.stmt]:
    """Each line of the cell as an :class:`Assignment`, or the statement itself when it is something else."""
    for stmt in tree.body if tree else []:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            yield Assignment(stmt.targets[0].id, stmt.value, stmt.lineno)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            yield Assignment(stmt.target.id, stmt.value, stmt.lineno)
        elif not (
            isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)
        ):
            yield stmt


class NotLiteral(ValueError):
    """The value is an expression, not a literal (number, string, bool, None, list, dict, tuple, set)."""


def literal(node: ast.expr) -> Any:  # as ast.literal_eval: the caller checks the type
    """The value a literal expression stands for; NotLiteral for anything else (calls, names, operators ...)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise NotLiteral from None
