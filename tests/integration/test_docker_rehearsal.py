"""`run --docker` as the cluster rehearsal (issue 23): a step's container gets what a pod of the run gets besides
its spec (the artifact key that signs pickled values, which notebook cell each step cell is) and no host path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nbfactory import write


@pytest.mark.slow
def test_docker_steps_sign_their_pickles_and_name_notebook_cells(tmp_path: Path, engine: Any) -> None:
    (tmp_path / "nb2kfp.toml").write_text(f'image = "{os.environ["NB2KFP_TEST_BASE_IMAGE"]}"\n')
    cells = [
        (["pipeline-parameters"], f"host = {str(tmp_path)!r}"),
        (["step:make"], "values = {3, 1, 2}  # a set: JSON cannot hold it, it goes by pickle"),
        (["step:use", "prev:make"], "import os\nn = len(values)"),
        ([], "n_host = sum(host in v for v in os.environ.values()) + sum(host in os.getcwd() for _ in [0])"),
        (["pipeline-metrics"], "print(n)\nprint(n_host)"),
    ]
    write(tmp_path / "nb.ipynb", cells)
    command = [sys.executable, "-m", "nb2kfp", "run", "nb.ipynb", "--docker", "--json", "--no-report"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["metrics"] == {"n": 3, "n_host": 0}
    [meta] = (Path(record["run_dir"]) / "artifacts").glob("*/make/values/nb2kfp.json")
    assert json.loads(meta.read_text())["format"] == "pickle"
    assert "hmac" in json.loads(meta.read_text())  # signed with the run's key, as on a cluster with one (was not)

    write(
        tmp_path / "bad.ipynb", [([], "# Title", "markdown"), (["step:a"], "x = 1"), ([], "raise ValueError('boom')")]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "run", "bad.ipynb", "--docker", "--no-report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1
    assert "bad.ipynb, cell 3" in proc.stderr, proc.stderr  # the notebook's cell, not "step a, cell 2"
