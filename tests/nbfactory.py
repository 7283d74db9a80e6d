"""Build notebooks for tests from (tags, source) pairs, as Jupyter would save them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Cell = tuple[list[str], str] | tuple[list[str], str, str]


def notebook(cells: Sequence[Cell], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    out = []
    for entry in cells:
        tags, source = entry[0], entry[1]
        kind = entry[2] if len(entry) > 2 else "code"
        cell: dict[str, Any] = {
            "cell_type": kind,
            "metadata": {"tags": list(tags)} if tags else {},
            "source": source.splitlines(keepends=True),
        }
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    meta = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    meta.update(metadata or {})
    return {"cells": out, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def write(path: Path, cells: Sequence[Cell], metadata: dict[str, Any] | None = None) -> Path:
    nb = notebook(cells, metadata)
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"cell-{i}"
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    return path
