"""nbformat's schema as the judge: it explains a notebook nb2kfp refuses (frontend/nbschema.py), it runs only on
that failure path, and every notebook nb2kfp writes passes it."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from nb2kfp.errors import NotebookError
from nb2kfp.frontend.notebook import read_notebook


def _notebook(cells: list[object], metadata: object = None, minor: object = 4) -> bytes:
    raw = {"cells": cells, "metadata": {} if metadata is None else metadata, "nbformat": 4, "nbformat_minor": minor}
    return json.dumps(raw).encode()


def _code(**fields: object) -> dict[str, object]:
    return {"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [], "execution_count": None, **fields}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _notebook([_code(), _code(metadata={"tags": ["step:a", 5]})]),
            "nb.ipynb: cell 2: error: invalid notebook: cell tags must be a list of strings "
            "(nbformat: metadata.tags[1]: 5 is not of type 'string')",
        ),
        (
            _notebook([{"cell_type": "code", "source": 5, "metadata": {}}], minor=5),  # no id, no outputs either
            "nb.ipynb: cell 1: error: invalid notebook: cell source must be a string or a list of strings "
            "(nbformat: source: 5 is not of type 'string'; 5 is not of type 'array')",
        ),
        (
            _notebook([_code(cell_type="sql")]),
            "nb.ipynb: cell 1: error: invalid notebook: unknown cell_type 'sql' (nbformat: cell_type: 'sql' is not "
            "one of ['raw']; 'sql' is not one of ['markdown']; 'sql' is not one of ['code'])",
        ),
        (
            _notebook([_code(metadata=[])], minor="?"),
            "nb.ipynb: cell 1: error: invalid notebook: cell metadata must be an object "
            "(nbformat: metadata: [] is not of type 'object')",
        ),
        (
            _notebook([7]),
            "nb.ipynb: cell 1: error: invalid notebook: a cell is not an object (nbformat: 7 is not of type 'object')",
        ),
        (
            _notebook([], metadata="x"),
            "nb.ipynb: error: invalid notebook: the notebook's metadata must be an object "
            "(nbformat: metadata: 'x' is not of type 'object')",
        ),
    ],
    ids=["tag", "source", "cell-type", "cell-metadata", "cell", "metadata"],
)
def test_a_refused_notebook_is_explained_by_nbformats_schema(data: bytes, message: str) -> None:
    with pytest.raises(NotebookError) as refused:
        read_notebook("nb.ipynb", data)
    assert [d.format() for d in refused.value.diagnostics] == [message + " [NB002]"]


def test_what_only_nb2kfp_refuses_has_no_schema_finding() -> None:
    with pytest.raises(NotebookError) as refused:  # a lone surrogate: valid JSON, valid for the schema, not UTF-8
        read_notebook("nb.ipynb", _notebook([_code(source="x = '\ud800'")]))
    (diagnostic,) = refused.value.diagnostics
    assert "lone surrogate" in diagnostic.message and "nbformat" not in diagnostic.message


def test_a_valid_notebook_is_read_without_nbformat() -> None:
    code = (
        "import sys\nfrom nb2kfp.frontend.notebook import read_notebook\n"
        f"read_notebook({str(Path(__file__).parent.parent / 'examples' / 'wordcount.ipynb')!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('nbformat', 'jsonschema'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


def test_the_example_nb2kfp_init_writes_is_a_valid_notebook() -> None:
    import nbformat

    text = resources.files("nb2kfp.commands").joinpath("example_pipeline.ipynb").read_text(encoding="utf-8")
    nbformat.validate(nbformat.reads(text, as_version=4))
