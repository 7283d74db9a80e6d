"""Incremental local runs, end to end with kfp.local: steps whose code, inputs, parameters, files and
environment are unchanged come from the cache (``.nb2kfp/cache``); everything below a changed step runs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clirun import Make
from conftest import run_local

pytestmark = pytest.mark.slow


def run(nb: Path, *args: str) -> dict[str, Any]:
    proc = run_local(nb, *args)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    on_disk = json.loads((Path(result["run_dir"]) / "result.json").read_text())
    assert on_disk["steps"] == result["steps"]  # result.json says the same as --json
    return result


def ran(result: dict[str, Any]) -> set[str]:
    return {step for step, status in result["steps"].items() if status == "succeeded"}


def cached(result: dict[str, Any]) -> set[str]:
    return {step for step, status in result["steps"].items() if status == "cached"}


def edit_cell(nb: Path, old: str, new: str) -> None:
    data = json.loads(nb.read_text())
    hits = [c for c in data["cells"] if old in "".join(c["source"])]
    assert len(hits) == 1, old
    hits[0]["source"] = "".join(hits[0]["source"]).replace(old, new)
    nb.write_text(json.dumps(data))


def test_iris_edit_of_one_leaf_reruns_it_and_its_descendants_only(example_copy: Callable[[str], Path]) -> None:
    nb = example_copy("iris_diamond.ipynb")
    first = run(nb)
    assert ran(first) == {"load_data", "split", "train_forest", "train_logreg", "evaluate"}

    edit_cell(nb, "LogisticRegression(C=C, max_iter=500)", "LogisticRegression(C=C / 100, max_iter=500)")
    second = run(nb)
    assert cached(second) == {"load_data", "split", "train_forest"}
    assert ran(second) == {"train_logreg", "evaluate"}
    assert second["metrics"]["forest_accuracy"] == first["metrics"]["forest_accuracy"]  # from the cached step
    assert second["metrics"]["logreg_accuracy"] != first["metrics"]["logreg_accuracy"]  # the edit took effect
    page = Path(second["run_dir"]) / "reports" / "train_forest.html"  # a cached step keeps its page, not re-rendered
    assert page.read_bytes() == (Path(first["run_dir"]) / "reports" / "train_forest.html").read_bytes()

    data = json.loads(nb.read_text())  # a markdown-only edit: nothing runs
    data["cells"][0]["source"] = "# Iris, retitled\n\nSame pipeline."
    data["cells"].insert(1, {"cell_type": "markdown", "metadata": {}, "source": "A new note moves every cell."})
    nb.write_text(json.dumps(data))
    third = run(nb)
    assert ran(third) == set() and cached(third) == set(third["steps"])
    assert third["metrics"] == second["metrics"]


def test_a_changed_upstream_value_reruns_the_steps_that_read_it(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["pipeline-parameters"], "n = 1"),
            (["step:produce"], "x = n * 2"),
            (["step:consume", "prev:produce"], "y = x + 1"),
            (["step:other"], "z = 3"),
            (["step:join", "prev:consume", "prev:other"], "total = y + z"),
            (["pipeline-metrics"], "print(total)"),
        ]
    )
    first = run(nb, "-p", "n=1")
    assert ran(first) == {"produce", "consume", "other", "join"} and first["metrics"] == {"total": 6.0}
    again = run(nb, "-p", "n=1")
    assert cached(again) == {"produce", "consume", "other", "join"} and again["metrics"] == {"total": 6.0}
    changed = run(nb, "-p", "n=2")  # produce's parameter changes: its value changes, so everything below it runs
    assert ran(changed) == {"produce", "consume", "join"} and cached(changed) == {"other"}
    assert changed["metrics"] == {"total": 8.0}
    # an upstream code edit that leaves the downstream code as it was still re-runs the downstream steps
    edit_cell(nb, "x = n * 2", "x = n * 10")
    edited = run(nb, "-p", "n=2")
    assert ran(edited) == {"produce", "consume", "join"} and edited["metrics"] == {"total": 24.0}


def test_a_changed_file_next_to_the_notebook_reruns_the_steps(make_nb: Make, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("41")
    nb = make_nb(
        [
            (["step:read"], "value = int(open('data.txt').read()) + 1"),
            (["pipeline-metrics"], "print(value)"),
        ]
    )
    assert run(nb)["metrics"] == {"value": 42.0}
    assert cached(run(nb)) == {"read"}
    (tmp_path / "data.txt").write_text("99")
    result = run(nb)
    assert ran(result) == {"read"} and result["metrics"] == {"value": 100.0}


def test_no_cache_runs_everything_and_runs_clean_empties_the_cache(make_nb: Make, tmp_path: Path) -> None:
    nb = make_nb([(["step:one"], "a = 1"), (["step:two", "prev:one"], "b = a + 1")])
    run(nb, "--run-dir", "out1")
    assert cached(run(nb, "--run-dir", "out2")) == {"one", "two"}  # a run folder next to the notebook is no input
    assert ran(run(nb, "--no-cache")) == {"one", "two"}
    assert cached(run(nb)) == {"one", "two"}  # --no-cache neither reads nor drops the cache
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "runs", "clean", "--keep", "10", "--cache"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "emptied the step cache" in proc.stdout
    assert not (tmp_path / ".nb2kfp" / "cache").exists()
    assert ran(run(nb)) == {"one", "two"}


def test_cached_values_load_in_later_runs_only_with_the_caches_key(make_nb: Make, tmp_path: Path) -> None:
    """A pickled value from the cache is signed with the cache's key: a later run loads it; without that key
    (a run that does not cache signs with a fresh one) it is refused, as before."""
    nb = make_nb(
        [
            (["functions"], "class Box:\n    def __init__(self, v):\n        self.v = v"),
            (["step:make"], "box = Box(5)"),
            (["step:use", "prev:make"], "v = box.v"),
            (["pipeline-metrics"], "print(v)"),
        ]
    )
    run(nb)
    edit_cell(nb, "v = box.v", "v = box.v * 2")
    result = run(nb)
    assert cached(result) == {"make"} and result["metrics"] == {"v": 10.0}
    key = tmp_path / ".nb2kfp" / "cache" / "artifact.key"
    assert key.stat().st_mode & 0o077 == 0


def test_pipelines_with_a_workspace_do_not_use_the_cache(make_nb: Make) -> None:
    """A later step reads the files an earlier one wrote into the run's workspace: a cached step would not
    write them into the new run's workspace, so such pipelines run every step."""
    cells = [
        (["step:a"], "with open('shared.txt', 'w') as fh:\n    fh.write('1,2,3')"),
        (["step:b", "prev:a"], "rows = len(open('shared.txt').read().split(','))"),
        (["pipeline-metrics"], "print(rows)"),
    ]
    nb = make_nb(cells, name="ws.ipynb", metadata={"kubeflow_notebook": {"workspace": "1Gi"}})
    run(nb)
    edit_cell(nb, "rows = len(", "rows = 1 + len(")
    result = run(nb)
    assert ran(result) == {"a", "b"} and result["metrics"] == {"rows": 4.0}


def test_the_key_changes_when_an_installed_distribution_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2kfp.local_run import cache as local_cache

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "somelib-1.0.dist-info").mkdir()
    before = local_cache.environment()
    (tmp_path / "somelib-1.0.dist-info").rename(tmp_path / "somelib-1.1.dist-info")
    upgraded = local_cache.environment()
    (tmp_path / "other-2.0.egg-info").mkdir()
    assert len({before, upgraded, local_cache.environment()}) == 3
