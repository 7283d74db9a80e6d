"""The step runtime run as a spec runs it: `python3 -c BOOTSTRAP --executor-input ... --spec ...`, the runtime's
source handed in as the nb2kfp-runtime input (backends/step_runtime.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from nb2kfp.backends import step_runtime
from nb2kfp.backends.kfp_spec import step_spec
from nb2kfp.frontend.builder import build

Make = Callable[..., Path]


def test_a_failing_cell_run_by_the_bootstrap_shows_only_the_notebook_frames(make_nb: Make, tmp_path: Path) -> None:
    pipeline = build(make_nb([(["step:a"], "def f():\n    return 1 / 0\n\nprint(f())")], name="t.ipynb")).pipeline
    spec = step_spec(pipeline, pipeline.step("a"))
    executor_input = {"inputs": {"parameterValues": {step_runtime.RUNTIME_PARAM: step_runtime.runtime_source()}}}
    args = ["--executor-input", json.dumps(executor_input), "--spec", json.dumps(spec)]
    proc = subprocess.run(
        [sys.executable, "-c", step_runtime.BOOTSTRAP, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    frames = [line.strip() for line in proc.stderr.splitlines() if line.strip().startswith("File ")]
    assert frames == [
        'File "t.ipynb, step a, cell 1", line 4, in <module>',
        'File "t.ipynb, step a, cell 1", line 2, in f',
    ]
    assert (
        "[nb2kfp] step 'a' failed in t.ipynb, step a, cell 1, line 2: ZeroDivisionError: division by zero"
        in proc.stderr
    )
