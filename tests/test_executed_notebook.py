"""The executed notebook a run gives back, as papermill's output notebook (issue 26): every cell in notebook order
with the outputs of the step that ran it, a cell's last expression shown as Jupyter shows it (``Out[N]``: an HTML
table for a frame), ``display(df)`` as a table; compared with papermill's own output notebook on the same input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from clirun import Make
from conftest import run_local_json

CELLS = [
    (["imports"], "import pandas as pd\nfrom IPython.display import display"),
    ([], "# A title", "markdown"),
    (["step:load"], "df = pd.DataFrame({'a': [1, 2, 3]})\ndf.head()"),
    ([], "print('rows', len(df))\n42"),
    (["step:stats", "prev:load"], "total = int(df.a.sum())\ntotal;\nmean = df.a.astype('float32').mean() / 7"),
    ([], "display(df.describe())\nnothing = None\nnothing"),
    (["pipeline-metrics"], "print(total)\nprint(mean)"),
]


def _outputs(notebook: dict[str, Any]) -> list[list[tuple[str, tuple[str, ...]]]]:
    """Per cell: each output's type and its MIME types (or stream name)."""
    out = []
    for cell in notebook["cells"]:
        shapes = []
        for o in cell.get("outputs", []):
            kinds = tuple(sorted(o.get("data", {}))) if "data" in o else (o.get("name", ""),)
            shapes.append((o["output_type"], kinds))
        out.append(shapes)
    return out


def test_run_gives_the_executed_notebook_back_as_papermill_does(make_nb: Make, tmp_path: Path) -> None:
    nb = make_nb(CELLS)
    out = tmp_path / "out.ipynb"
    proc, record = run_local_json(nb, "--no-cache", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(out.read_text())
    assert Path(record["executed_notebook"]).read_text() == out.read_text()  # also in the run folder

    import nbformat

    nbformat.validate(nbformat.from_dict(ours))
    papermill_out = tmp_path / "papermill.ipynb"
    subprocess.run(
        [sys.executable, "-m", "papermill", str(nb), str(papermill_out), "--kernel", "python3", "--log-level", "ERROR"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    theirs = json.loads(papermill_out.read_text())
    # the step cells show what the kernel showed: same output types and MIME types, cell by cell
    steps = [2, 3, 4, 5]  # the code cells of steps (the imports cell runs in every step: papermill counts it once)
    for i in steps:
        assert _outputs(ours)[i] == _outputs(theirs)[i], (i, _outputs(ours)[i], _outputs(theirs)[i])
    table = next(o for o in ours["cells"][2]["outputs"] if o["output_type"] == "execute_result")
    assert "<table" in "".join(table["data"]["text/html"])  # df.head() as an HTML table
    assert ours["cells"][4]["outputs"] == []  # `total;`: nothing shown
    assert [c["cell_type"] for c in ours["cells"]] == [c["cell_type"] for c in theirs["cells"]]
    # the metrics cell prints what the kernel printed (6, not 6.0; a float32's own digits), and the cells are
    # numbered as papermill numbers them: the imports cell once, then in notebook order
    assert ours["cells"][6]["outputs"][0]["text"] == "".join(theirs["cells"][6]["outputs"][0]["text"])
    assert [c.get("execution_count") for c in ours["cells"]] == [c.get("execution_count") for c in theirs["cells"]]
