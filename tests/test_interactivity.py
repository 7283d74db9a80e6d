"""``%config InteractiveShell.ast_node_interactivity = "all"`` (and IPython's other modes): a kernel then shows the
value of every top-level statement as the cell's Out[N], not only the last expression's. A step's report (and the
executed notebook of `run -o`) shows what the kernel shows, in the step that set it and in the steps after it (the
setting travels as process state). Other %config settings have no effect in a step: a log line says so."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_local_json

Make = Callable[..., Path]


def _results(notebook: Path) -> list[list[str]]:
    """Each code cell's execute_result values (text/plain), in order."""
    cells = json.loads(notebook.read_text())["cells"]
    return [
        ["".join(o["data"]["text/plain"]) for o in c.get("outputs", []) if o["output_type"] == "execute_result"]
        for c in cells
        if c["cell_type"] == "code"
    ]


@pytest.mark.slow
def test_ast_node_interactivity_all_shows_every_statements_value_in_this_step_and_the_next(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], '%config InteractiveShell.ast_node_interactivity = "all"\n%config Completer.use_jedi = False'),
            ([], "x = 1\nx + 1\n'shown'\nfor i in range(2):\n    i * 10\nNone\nx"),
            (["step:b", "prev:a"], "y = x + 1\ny * 100\ny"),
            ([], "y + 1\ny + 2;"),  # a cell ending in ";" shows nothing, as in IPython
            ([], '%config InteractiveShell.ast_node_interactivity = "last_expr_or_assign"\nz = y + 3'),
            ([], "w = y + 4"),  # the mode a cell sets counts from the next cell on, as in IPython
        ]
    )
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    reports = Path(record["run_dir"]) / "reports"
    assert _results(reports / "a.ipynb") == [[], ["2", "'shown'", "0", "10", "1"]]
    assert _results(reports / "b.ipynb") == [["200", "2"], [], [], ["6"]]
    executed = nb.parent / "executed.ipynb"  # what a kernel shows: the same, cell by cell
    kernel = [sys.executable, "-m", "papermill", str(nb), str(executed), "-k", "python3", "--no-progress-bar"]
    assert subprocess.run(kernel, capture_output=True, timeout=300).returncode == 0
    assert _results(executed) == [*_results(reports / "a.ipynb"), *_results(reports / "b.ipynb")]
    log = (Path(record["run_dir"]) / "run.log").read_text()
    assert "skipped %config Completer.use_jedi = False: that setting has no effect in a pipeline step" in log


@pytest.mark.slow
def test_the_default_shows_the_last_expression_only_and_a_bad_mode_fails_as_in_ipython(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "x = 1\nx + 1\nx + 2"),
            (["step:b", "prev:a"], "%config InteractiveShell.ast_node_interactivity = 'most'"),
        ]
    )
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 1
    assert _results(Path(record["run_dir"]) / "reports" / "a.ipynb") == [["3"]]
    assert "ast_node_interactivity is one of all, last, last_expr, none, last_expr_or_assign" in proc.stderr
