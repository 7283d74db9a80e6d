"""Benchmark notebooks, written as plain nbformat-4 JSON (no nbformat import needed).

Every notebook uses only tags that both nb2kfp and Kale 2.3 accept: ``imports``, ``pipeline-parameters``
(int/float/str/bool literals only, as Kale requires), ``step:NAME``, ``prev:NAME``, untagged continuation
cells and ``pipeline-metrics`` (``print(var)`` lines, as Kale writes them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CELLS_PER_STEP = 5  # one step:NAME cell and four untagged continuation cells
HEADER_CELLS = 3  # imports, pipeline-parameters, pipeline-metrics


def _cell(source: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": None,  # filled in by _notebook (nbformat 4.5 wants unique ids)
        "metadata": {"tags": tags} if tags else {},
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }


def _notebook(cells: list[dict[str, Any]]) -> dict[str, Any]:
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:05d}"
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write(path: Path, cells: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_notebook(cells), indent=1) + "\n", encoding="utf-8")
    return path


def sized(n_cells: int) -> list[dict[str, Any]]:
    """A chain of steps with ``n_cells`` code cells in all (at least 5).

    Step ``k`` reads the variable ``total_{k-1}`` of the step before it and the parameter ``scale``, works on
    it over four untagged cells and defines ``total_k``; the metrics cell prints the last total.
    """
    if n_cells < HEADER_CELLS + 2:
        raise ValueError(f"a sized notebook needs at least {HEADER_CELLS + 2} cells")
    cells = [
        _cell("import math\nimport statistics", ["imports"]),
        _cell('scale = 2\noffset = 0.5\nlabel = "bench"\nverbose = False', ["pipeline-parameters"]),
    ]
    body = n_cells - HEADER_CELLS
    step = 0
    while body > 0:
        size = min(CELLS_PER_STEP, body)
        if body - size == 1:  # never leave a step with fewer than two cells at the end
            size -= 1
        body -= size
        prev = f"total_{step - 1}" if step else "offset"
        tags = [f"step:s{step}"] + ([f"prev:s{step - 1}"] if step else [])
        cells.append(_cell(f"# step {step}\nbase_{step} = {prev} * scale + {step}\nparts_{step} = [base_{step}]", tags))
        for j in range(1, size - 1):
            code = f"parts_{step}.append(math.sqrt(abs(base_{step})) + {j})\nif verbose:\n    print(label)"
            cells.append(_cell(code))
        cells.append(_cell(f"total_{step} = statistics.fmean(parts_{step}) + len(parts_{step})"))
        step += 1
    cells.append(_cell(f"print(total_{step - 1})", ["pipeline-metrics"]))
    return cells


def noop_steps(n_steps: int) -> list[dict[str, Any]]:
    """``n_steps`` chained steps whose code does nothing but ``x_k = 1`` (nothing passes between them)."""
    cells = [_cell("import os", ["imports"])]
    for k in range(n_steps):
        tags = [f"step:noop{k}"] + ([f"prev:noop{k - 1}"] if k else [])
        cells.append(_cell(f"x_{k} = 1", tags))
    return cells


# The data notebooks print BENCH markers (wall-clock time.time(), comparable across the step processes) and,
# at interpreter exit (after the step runtime has saved its outputs), the process's peak RSS.
_MARKER = 'print(f"BENCH {_name} {time.time():.6f}", flush=True)'
_AT_EXIT = (
    "import atexit\nimport resource\n\n"
    "def _bench_exit(step):\n"
    '    print(f"BENCH {step}_exit {time.time():.6f}", flush=True)\n'
    '    print(f"BENCH {step}_maxrss_kb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)\n'
)


def data_passing(kind: str, data_mb: int) -> list[dict[str, Any]]:
    """Step ``make`` builds a ``data_mb`` MiB float64 value (a pandas DataFrame of 8 columns, or a numpy
    array); step ``use`` (after it) reads it and sums it. ``data_mb`` is a pipeline parameter, so the same
    pipeline runs with a tiny value for the baseline."""
    if kind == "pandas":
        build = (
            "rows = max(1, data_mb * 2**20 // 64)\n"
            "value = pd.DataFrame(\n"
            "    np.random.default_rng(0).random((rows, 8)), columns=[f'c{i}' for i in range(8)], copy=False\n"
            ")  # copy=False: pandas 3 would copy the array, doubling the step's own peak"
        )
        use = "total = float(value.sum().sum())"
    elif kind == "numpy":
        build = "value = np.random.default_rng(0).random(max(1, data_mb * 2**20 // 8))"
        use = "total = float(value.sum())"
    else:
        raise ValueError(f"unknown data kind {kind!r}")
    imports = "import time\n\nimport numpy as np\n" + ("import pandas as pd\n" if kind == "pandas" else "")
    return [
        _cell(imports, ["imports"]),
        _cell(f"data_mb = {data_mb}", ["pipeline-parameters"]),
        _cell(_AT_EXIT + "\natexit.register(_bench_exit, 'make')\n" + build, ["step:make"]),
        _cell(f"_name = 'make_done'\n{_MARKER}"),
        _cell(
            _AT_EXIT + f"\natexit.register(_bench_exit, 'use')\n_name = 'use_start'\n{_MARKER}\n{use}",
            ["step:use", "prev:make"],
        ),
        _cell(f"_name = 'use_done'\n{_MARKER}"),
        _cell("print(total)", ["pipeline-metrics"]),
    ]
