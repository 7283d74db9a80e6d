"""Each example gives the same metrics run top to bottom by papermill (a real kernel) and as a pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow


def papermill_metrics(nb: Path, out: Path) -> dict[str, float]:
    import papermill

    papermill.execute_notebook(str(nb), str(out), kernel_name="python3", progress_bar=False, cwd=str(nb.parent))
    executed = nbformat.read(out, as_version=4)
    [cell] = [c for c in executed.cells if "pipeline-metrics" in c.metadata.get("tags", [])]
    names = [line.strip()[len("print(") : -1] for line in cell.source.splitlines() if line.strip()]
    printed = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream").split()
    assert len(printed) == len(names), printed
    return {name: float(value) for name, value in zip(names, printed, strict=True)}


@pytest.mark.parametrize("name", ["wordcount.ipynb", "iris_diamond.ipynb", "magics_functions.ipynb"])
def test_pipeline_metrics_match_papermill(name: str, example_copy: Callable[[str], Path], tmp_path: Path) -> None:
    nb = example_copy(name)
    expected = papermill_metrics(nb, tmp_path / "executed.ipynb")
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "run", str(nb), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "succeeded"
    assert set(result["steps"].values()) == {"succeeded"}
    assert result["metrics"] == pytest.approx(expected, rel=1e-9), (result["metrics"], expected)
