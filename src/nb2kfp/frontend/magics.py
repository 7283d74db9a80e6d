"""Turn IPython syntax (``%magic``, ``%%cell magic``, ``!cmd``, ``obj?``) into plain Python.

IPython's own input transformer does the work, imported only when a cell needs it (it costs
a few hundred milliseconds). The resulting ``get_ipython().run_line_magic(...)`` calls are
served at run time by the step runtime's small shim (:mod:`nb2kfp.runtime.step`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# Magics that only time or capture their body: the body itself is the code to run and analyse.
_TRANSPARENT_CELL_MAGICS = ("time", "timeit", "capture", "prun")
_TRANSPARENT_LINE_MAGICS = ("time", "timeit", "prun")
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
    }
)

_NEEDS_IPYTHON = re.compile(r"^\s*[%!?]|[?]\s*$|=\s*[%!]", re.MULTILINE)
_CELL_MAGIC = re.compile(r"\A\s*%%(\w+)[^\n]*\n?")
_LINE_TIME = re.compile(r"^(\s*)%(?:time|timeit|prun)\b(?:\s+-\S+)*\s*", re.MULTILINE)
# %pylab [inline]: what IPython's pylab import does, on one line (line numbers stay those of the cell)
_PYLAB = re.compile(r"^(\s*)%pylab\b[^\n]*$", re.MULTILINE)
_PYLAB_IMPORTS = (
    "import numpy; import matplotlib; from matplotlib import pylab, mlab, pyplot; import numpy as np; "
    "import matplotlib.pyplot as plt; from pylab import *; from numpy import *"
)


def to_python(source: str) -> str:
    """Return ``source`` as plain Python; unchanged when it holds no IPython syntax."""
    match = _CELL_MAGIC.match(source)
    if match and match.group(1) in _TRANSPARENT_CELL_MAGICS:
        source = source[match.end() :]
    elif match:
        return _transformer().transform_cell(source)  # type: ignore[no-any-return]
    source = _LINE_TIME.sub(r"\1", source)
    source = _PYLAB.sub(lambda m: m.group(1) + _PYLAB_IMPORTS, source)
    if not _NEEDS_IPYTHON.search(source):
        return source
    return _transformer().transform_cell(source)  # type: ignore[no-any-return]


def cell_magic_name(source: str) -> str | None:
    match = _CELL_MAGIC.match(source)
    return match.group(1) if match else None


@lru_cache(maxsize=1)
def _transformer() -> Any:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()  # type: ignore[no-untyped-call]
