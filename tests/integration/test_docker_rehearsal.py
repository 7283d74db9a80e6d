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


def _nb2kfp(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nb2kfp", *args], cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_notebook_reading_data_csv_and_importing_helpers_beside_it_runs_in_its_pod(
    tmp_path: Path, engine: Any
) -> None:
    """THE test of issue 23: the step image nb2kfp builds carries the notebook's data.csv and helpers.py in the
    working directory its steps start in, so `run --docker` (each step in its image, nothing of this machine
    mounted) gives the local run's values; a step in an image of its own does not have them, and lint says so
    (NB102 naming the file) before the run fails. The container's environment is a pod's: PYTHONHASHSEED from
    the spec, the image's working directory, no host path."""
    (tmp_path / "nb2kfp.toml").write_text(f'image = "{os.environ["NB2KFP_TEST_BASE_IMAGE"]}"\n')
    (tmp_path / "data.csv").write_text("x,y\n1,2\n3,4\n5,6\n")
    (tmp_path / "helpers.py").write_text(
        "def total(rows):\n    return sum(int(v) for r in rows for v in r.split(','))\n"
    )
    cells = [
        (["imports"], "import os\nimport helpers"),
        (["step:load"], "rows = open('data.csv').read().split()[1:]"),
        (["step:sum", "prev:load"], "total = helpers.total(rows)\nopen('plot.txt', 'w').write(str(total))"),
        ([], "hash_seed = int(os.environ.get('PYTHONHASHSEED', '-1'))\nin_workdir = int(os.path.exists('data.csv'))"),
        ([], "cwd_is_image = int(os.getcwd() == '/opt/nb2kfp/work')\n"
             f"host_seen = int(any({str(tmp_path)!r} in v for v in os.environ.values()))"),
        (["pipeline-metrics"], "\n".join(f"print({n})" for n in ("total", "hash_seed", "in_workdir", "cwd_is_image",
                                                                  "host_seen"))),
    ]  # fmt: skip
    write(tmp_path / "nb.ipynb", cells)
    lint = _nb2kfp(tmp_path, "lint", "nb.ipynb")
    assert "NB102" not in lint.stdout, lint.stdout  # the built image carries data.csv: no warning
    local = _nb2kfp(tmp_path, "run", "nb.ipynb", "--json", "--no-report")
    assert local.returncode == 0, local.stderr
    proc = _nb2kfp(tmp_path, "run", "nb.ipynb", "--docker", "--json", "--no-report")
    assert proc.returncode == 0, proc.stderr
    in_docker, here = json.loads(proc.stdout)["metrics"], json.loads(local.stdout)["metrics"]
    assert in_docker == {"total": 21, "hash_seed": 0, "in_workdir": 1, "cwd_is_image": 1, "host_seen": 0}
    assert {k: here[k] for k in ("total", "hash_seed", "in_workdir")} == {"total": 21, "hash_seed": 0, "in_workdir": 1}
    assert "2 file(s) from the notebook's folder: data.csv, helpers.py" in proc.stderr  # in the step image

    # a step in an image of its own (the plain base: no data.csv, no helpers.py): lint warns, the run fails
    own = "nb2kfp-test-own-image:" + tmp_path.name[-20:].replace("_", "-")
    engine.images.get(os.environ["NB2KFP_TEST_BASE_IMAGE"]).tag(own)
    cells[1] = (["step:load", f"image:{own}"], cells[1][1])
    write(tmp_path / "own.ipynb", cells)
    lint = _nb2kfp(tmp_path, "lint", "own.ipynb")
    assert "own.ipynb: cell 2, line 1: warning: step 'load' reads 'data.csv' from the notebook's folder" in lint.stdout
    try:
        proc = _nb2kfp(tmp_path, "run", "own.ipynb", "--docker", "--no-report")
    finally:
        engine.images.remove(own)
    assert proc.returncode == 1 and "No such file or directory: 'data.csv'" in proc.stderr, proc.stderr
