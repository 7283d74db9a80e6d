"""The step cache keys each step on the files it read next to the notebook (their contents), the folders it listed
and the names its glob patterns match, not on every file there; and it is the project's, whichever folder a run
starts from."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import run_local

Make = Callable[..., Path]
pytestmark = pytest.mark.slow


def run(nb: Path, *args: str, cwd: Path | None = None) -> dict[str, Any]:
    if cwd is None:
        proc = run_local(nb, *args)
    else:
        command = [sys.executable, "-m", "nb2kfp", "run", str(nb), "--local", "--json", *args]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def ran(result: dict[str, Any]) -> set[str]:
    return {step for step, status in result["steps"].items() if status == "succeeded"}


def cached(result: dict[str, Any]) -> set[str]:
    return {step for step, status in result["steps"].items() if status == "cached"}


CELLS = [
    (["step:read_a"], "a = int(open('a.csv').read())"),
    (["step:read_b", "prev:read_a"], "import pathlib\nb = int(pathlib.Path('data/b.csv').read_text())"),
    (["step:join", "prev:read_b"], "total = a + b"),
    (["step:listing", "prev:join"], "import glob\nn = len(glob.glob('*.txt'))"),
    (["step:optional", "prev:join"], "try:\n    extra = int(open('extra.cfg').read())\nexcept OSError:\n    extra = 0"),
    (["step:helper", "prev:join"], "import helpers\nh = helpers.VALUE"),
    (["step:plain", "prev:join"], "import importlib.metadata\np = len(list(importlib.metadata.distributions()))"),
    (["pipeline-metrics"], "print(total)\nprint(n)\nprint(extra)\nprint(h)"),
]
ALL = {"read_a", "read_b", "join", "listing", "optional", "helper", "plain"}


@pytest.fixture
def project(make_nb: Make, tmp_path: Path) -> Path:
    (tmp_path / "a.csv").write_text("1")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "b.csv").write_text("10")
    (tmp_path / "helpers.py").write_text("VALUE = 5\n")
    nb = make_nb(CELLS)
    assert ran(run(nb)) == ALL
    return nb


def test_new_files_beside_the_notebook_rerun_only_the_steps_that_look_for_them(project: Path) -> None:
    nb, folder = project, project.parent
    subprocess.run([sys.executable, "-m", "nb2kfp", "compile", str(nb)], check=True, cwd=folder, timeout=120)
    assert (folder / "nb.pipeline.yaml").is_file()
    (folder / "plot.png").write_bytes(b"\x89PNG")
    (folder / "data" / "notes.md").write_text("scratch")  # data/ is read from, never listed
    assert ran(run(nb)) == set()  # the compiled spec, a plot, a note: no step read them

    (folder / "notes.txt").write_text("scratch")  # a *.txt: the step that lists the folder runs again
    result = run(nb)
    assert ran(result) == {"listing"} and result["metrics"]["n"] == 1.0

    (folder / "extra.cfg").write_text("7")  # the name a step looked for (and did not find) now exists
    result = run(nb)
    assert ran(result) == {"optional"} and result["metrics"]["extra"] == 7.0


def test_an_edited_file_reruns_the_steps_that_read_it_and_those_below(project: Path, tmp_path: Path) -> None:
    nb, folder = project, project.parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert cached(run(nb, cwd=elsewhere)) == ALL  # the project's cache, which the run from its folder filled
    assert not (elsewhere / ".nb2kfp" / "cache").exists()
    (folder / "data" / "b.csv").write_text("20")
    result = run(nb)
    assert ran(result) == {"read_b", "join"} and result["metrics"]["total"] == 21.0  # join reads b

    (folder / "a.csv").write_text("1")  # written again with the same content: nothing changed
    assert ran(run(nb)) == set()

    (folder / "helpers.py").write_text("VALUE = 6\n")  # a module beside the notebook, imported by one step
    result = run(nb)
    assert ran(result) == {"helper"} and result["metrics"]["h"] == 6.0
    reads = json.loads((Path(result["run_dir"]) / "reads" / "helper.json").read_text())
    assert reads["files"] == ["helpers.py"]
