"""A run's templates (local_run/ahead.py, local_run/waiting.py): the steps whose statements start with an import of
the same installed module get their processes forked from one process that imported it, once a run, not once a step.
Each step still runs in a process of its own, which nothing another step did reaches. Real runs (kfp.local)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clirun import Make
from nb2kfp.local_run import waiting
from test_warm import _started_ahead_in, _waiting_in

# An installed module (on PYTHONPATH, not beside the notebook) that says which process imported it (it writes no
# file: a process whose imports wrote one is never handed a step)
COUNTED = """import os
import numpy
IMPORTED_BY = os.getpid()
VALUE = 0
"""
METRICS = ("value_b", "value_c", "blas_a", "blas_b", "imported", "here")
CELLS = [
    (["imports"], "import counted\nimport os\nimport numpy as np"),
    (
        ["step:a"],
        "counted.VALUE = 1\nby_a = counted.IMPORTED_BY\nblas_a = float((np.ones((300, 300)) @ np.ones(300))[0])",
    ),
    (
        ["step:b", "prev:a"],
        "value_b = counted.VALUE\nby_b = counted.IMPORTED_BY\nblas_b = float(np.linalg.inv(np.eye(9) * 2)[0][0])",
    ),
    (
        ["step:c", "prev:b"],
        "value_c = counted.VALUE\nimported = len({by_a, by_b, counted.IMPORTED_BY})\n"
        "here = int(counted.IMPORTED_BY == os.getpid())",
    ),
    (
        ["pipeline-metrics"],
        "\n".join(f"print({n})" for n in METRICS),
    ),
]


def _run(nb: Path, lib: Path, warm: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(lib), os.environ.get("PYTHONPATH", "")) if p),
        "NB2KFP_WARM": warm,
        "NB2KFP_WARM_KEEP": "0",  # no process kept for a next run (it would import the module too)
    }
    command = [sys.executable, "-m", "nb2kfp", "run", str(nb), "--local", "--json", "--no-cache"]
    proc = subprocess.run(command, cwd=nb.parent, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_steps_that_import_the_same_module_first_share_one_import_and_nothing_else(
    make_nb: Make, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "counted.py").write_text(COUNTED)
    nb = make_nb(CELLS)
    same = {"value_b": 0, "value_c": 0, "blas_a": 300, "blas_b": 0.5}  # a's change reached no other step's process

    metrics = _run(nb, lib, "1")["metrics"]
    assert metrics == {**same, "imported": 1, "here": 0}  # one import for three steps, in their template
    left = _started_ahead_in(nb.parent) + _waiting_in(nb.parent, waiting.KEPT)
    assert left == []  # the template, and what it forked, ended with the run

    metrics = _run(nb, lib, "0")["metrics"]  # each step imports it, in its own process
    assert metrics == {**same, "imported": 3, "here": 1}
