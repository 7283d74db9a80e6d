"""Turn IPython syntax (``%magic``, ``%%cell magic``, ``!cmd``, ``obj?``) into plain Python.

IPython's own input transformer does the work, imported only when a cell needs it (it costs
a few hundred milliseconds). The resulting ``get_ipython().run_line_magic(...)`` calls are
served at run time by the step runtime's small shim (:mod:`nb2kfp.runtime.step`).

Magics that run code give it the namespace IPython gives it (README, "How variables move between steps"):
``%time``/``%%time`` and ``%prun``/``%%prun`` run it in the notebook's namespace, so their code is kept as it is;
``%timeit``/``%%timeit`` run it in a function and ``%%capture`` and ``%run`` do more than run it, so they stay
calls with their code as text (a ``%%`` body turned into Python here, ``%run``'s script read here), and
:func:`embedded` tells the analysis what that code reads and sets.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

from nb2kfp.runtime.step import RUN_MAGIC, magic_options

# Magics that only time their code, in the notebook's namespace: the code itself is what runs and is analysed.
_TRANSPARENT_CELL_MAGICS = ("time", "prun")
_TRANSPARENT_LINE_MAGICS = ("time", "prun")
# Cell magics whose body is code the runtime runs its own way: the body is turned into Python here.
_CODE_CELL_MAGICS = ("timeit", "capture")
# Cell magics the runtime shim implements; anything else is reported by lint.
RUNTIME_CELL_MAGICS = frozenset(
    {
        "bash",
        "sh",
        "script",
        "writefile",
        "html",
        "markdown",
        "latex",
        "svg",
        "javascript",
        "js",
        "capture",
        "time",
        "timeit",
        "prun",
        RUN_MAGIC,
    }
)
RUNTIME_LINE_MAGICS = frozenset(
    {
        "matplotlib",
        "pip",
        "conda",
        "load_ext",
        "reload_ext",
        "autoreload",
        "env",
        "config",
        "pinfo",
        "pinfo2",
        "psource",
        "pdoc",
        "who",
        "whos",
        "precision",
        "alias",
        "cd",
        "pwd",
        "sx",
        "system",
        "store",
        "xmode",
        "pdb",
        "mamba",
        "uv",
        "set_env",
        "ls",
        "mkdir",
        "time",
        "timeit",
        "prun",
        "run",
    }
)

_NEEDS_IPYTHON = re.compile(r"^\s*[%!?]|[?]\s*$|=\s*[%!]", re.MULTILINE)
_CELL_MAGIC = re.compile(r"\A\s*%%(\w+)[^\n]*\n?")
_LINE_TIME = re.compile(rf"^(\s*)%(?:{'|'.join(_TRANSPARENT_LINE_MAGICS)})\b(?:\s+-\S+)*\s*", re.MULTILINE)
# %pylab [inline]: what IPython's pylab import does, on one line (line numbers stay those of the cell)
_PYLAB = re.compile(r"^(\s*)%pylab\b[^\n]*$", re.MULTILINE)
_PYLAB_IMPORTS = (
    "import numpy; import matplotlib; from matplotlib import pylab, mlab, pyplot; import numpy as np; "
    "import matplotlib.pyplot as plt; from pylab import *; from numpy import *"
)


def to_python(source: str, read: Callable[[str], str | None] | None = None) -> str:
    """Return ``source`` as plain Python; unchanged when it holds no IPython syntax. ``read(path)``: the text of a
    file ``%run`` names (relative to the notebook's folder), None when there is none."""
    match = _CELL_MAGIC.match(source)
    if match and match.group(1) in _TRANSPARENT_CELL_MAGICS:
        source = source[match.end() :]
    elif match and match.group(1) in _CODE_CELL_MAGICS:
        name, line = match.group(1), match.group(0).strip()[len(match.group(1)) + 2 :].strip()
        if name == "timeit":
            magic_options(name, line)  # a bad option is the cell's error, reported by the front end
        body = to_python(source[match.end() :], read)
        return f"get_ipython().run_cell_magic({name!r}, {line!r}, {body!r})\n"
    elif match:
        return _transformer().transform_cell(source)  # type: ignore[no-any-return]
    source = _LINE_TIME.sub(r"\1", source)
    source = _PYLAB.sub(lambda m: m.group(1) + _PYLAB_IMPORTS, source)
    if not _NEEDS_IPYTHON.search(source):
        return source
    return _line_magics(_transformer().transform_cell(source), read)


def _line_magics(python: str, read: Callable[[str], str | None] | None) -> str:
    """Check the options of the line magics that run code, and put the script each ``%run`` names into its call
    (when ``read`` finds it; else the step reads it when it runs)."""
    if "run_line_magic(" not in python:
        return python
    lines = python.splitlines(keepends=True)
    for call in sorted(_magic_calls(ast.parse(python)), key=lambda c: (c.lineno, c.col_offset), reverse=True):
        name, line = (a.value for a in call.args[:2])  # type: ignore[attr-defined]
        if call.func.attr != "run_line_magic" or name not in ("timeit", "time", "prun", "run"):  # type: ignore[attr-defined]
            continue
        opts, rest = magic_options(name, line)
        inline = name == "run" and read is not None and rest.strip() and "m" not in opts
        script = read(shlex.split(rest)[0]) if inline and read is not None else None
        if script is None:
            continue
        row = lines[call.lineno - 1].encode()  # IPython's transformer puts a magic's call on the magic's line
        inlined = f"get_ipython().run_cell_magic({RUN_MAGIC!r}, {line!r}, {script!r})".encode()
        lines[call.lineno - 1] = (row[: call.col_offset] + inlined + row[call.end_col_offset :]).decode()
    return "".join(lines)


def _magic_calls(tree: ast.AST) -> list[ast.Call]:
    """The ``get_ipython().run_line_magic(name, line)`` and ``run_cell_magic(name, line, cell)`` calls in ``tree``
    whose arguments are text."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_magic_call(node):
            found.append(node)
    return found


def _is_magic_call(node: ast.Call) -> bool:
    func = node.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in ("run_line_magic", "run_cell_magic")
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
        and len(node.args) == (2 if func.attr == "run_line_magic" else 3)
        and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
    )


class Embedded(NamedTuple):
    """The code a magic call runs, for the analysis. ``scope``: ``notebook`` (it runs in the notebook's namespace),
    ``function`` (in a function: what it assigns stays there, but for its ``global`` names) or ``own`` (a script's
    namespace of its own, whose names then join the notebook's); ``binds``: names the magic itself sets."""

    scope: str
    code: str
    binds: tuple[str, ...]


def embedded(node: ast.Call) -> Embedded | None:
    """The code a ``get_ipython().run_line_magic/run_cell_magic`` call runs, or None (not such a call, or a magic
    that runs no Python code)."""
    if not _is_magic_call(node):
        return None
    name, line, *cell = (a.value for a in node.args)  # type: ignore[attr-defined]
    body = cell[0] if cell else None
    try:
        if name == "timeit":
            opts, code = magic_options(name, line)
            return Embedded(
                "function", code if body is None else f"{code}\n{body}", (opts["v"],) if "v" in opts else ()
            )
        if name in ("time", "prun"):
            code = magic_options(name, line)[1]
            return Embedded("notebook", code if body is None else f"{code}\n{body}", ())
    except ValueError:
        return None  # a bad option: the front end reported it
    if name == "capture" and body is not None:
        output = next((a for a in line.split() if not a.startswith("-")), "")
        return Embedded("notebook", body, (output,) if output and not body.rstrip().endswith(";") else ())
    if name == RUN_MAGIC and body is not None:
        return Embedded("notebook" if "i" in magic_options("run", line)[0] else "own", body, ())
    return None


def written_files(cells: list[str]) -> dict[str, str | None]:
    """The files ``%%writefile`` cells write (normalized path -> the text), what a later ``%run`` of them runs; None
    for a file appended to or written by more than one cell (the step reads it when it runs)."""
    written: dict[str, str | None] = {}
    for source in cells:
        match = _CELL_MAGIC.match(source)
        if not match or match.group(1) != "writefile":
            continue
        try:
            args = shlex.split(match.group(0).strip()[len("%%writefile") :])
        except ValueError:  # unbalanced quotes: the cell fails when it runs
            continue
        names = [a for a in args if not a.startswith("-")]
        if not names:
            continue
        name = os.path.normpath(names[0])
        append = "-a" in args or "--append" in args
        written[name] = None if append or name in written else source[match.end() :]
    return written


@lru_cache(maxsize=1)
def _transformer() -> Any:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()  # type: ignore[no-untyped-call]
