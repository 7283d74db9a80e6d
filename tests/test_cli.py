"""The command line as users meet it: exit codes, located messages, no tracebacks, no half-written files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clirun import Make, nb2kfp, nb2kfp_here
from conftest import EXAMPLES


def assert_clean_failure(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 1, proc
    assert fragment in proc.stderr + proc.stdout, proc
    assert "Traceback" not in proc.stderr


def test_compile_writes_beside_the_notebook(example_copy: Callable[[str], Path]) -> None:
    nb = example_copy("wordcount.ipynb")
    proc = nb2kfp_here("compile", str(nb))
    assert proc.returncode == 0, proc.stderr
    out = nb.with_name("wordcount.pipeline.yaml")
    assert out.read_text().startswith("# PIPELINE DEFINITION")
    assert nb2kfp_here("compile", str(nb), "--check").returncode == 0


def test_check_reports_missing_and_stale_and_writes_nothing(example_copy: Callable[[str], Path]) -> None:
    nb = example_copy("wordcount.ipynb")
    out = nb.with_name("wordcount.pipeline.yaml")
    proc = nb2kfp_here("compile", str(nb), "--check")
    assert proc.returncode == 1 and "missing" in proc.stderr and not out.exists()
    assert nb2kfp_here("compile", str(nb)).returncode == 0
    data = json.loads(nb.read_text())
    data["cells"][3]["source"] = ["lines = ['only one line']\n"]
    nb.write_text(json.dumps(data))
    before = out.read_text()
    proc = nb2kfp_here("compile", str(nb), "--check")
    assert proc.returncode == 1 and "stale" in proc.stderr
    assert out.read_text() == before


def test_check_ignores_outputs_and_execution_counts(example_copy: Callable[[str], Path]) -> None:
    nb = example_copy("wordcount.ipynb")
    assert nb2kfp_here("compile", str(nb)).returncode == 0
    data = json.loads(nb.read_text())
    data["cells"][3]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["5 lines loaded\n"]}]
    data["cells"][3]["execution_count"] = 7
    nb.write_text(json.dumps(data))
    assert nb2kfp_here("compile", str(nb), "--check").returncode == 0


def test_output_options(example_copy: Callable[[str], Path], tmp_path: Path) -> None:
    a, b = example_copy("wordcount.ipynb"), example_copy("magics_functions.ipynb")
    assert nb2kfp_here("compile", str(a), "-o", str(tmp_path / "x.yaml")).returncode == 0
    assert (tmp_path / "x.yaml").exists()
    assert nb2kfp_here("compile", str(a), str(b), "--output-dir", str(tmp_path / "out")).returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "magics_functions.pipeline.yaml",
        "wordcount.pipeline.yaml",
    ]
    proc = nb2kfp_here("compile", str(a), str(b), "-o", str(tmp_path / "y.yaml"))
    assert proc.returncode == 2 and "one notebook" in proc.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"cells": [', "invalid JSON at line 1"),
        ("this is not json", "not a notebook"),
        ('{"nbformat": 4, "metadata": {}}', "no list of cells"),
        ('{"cells": [], "nbformat": 3, "metadata": {}}', "nbformat 4 is required"),
        (
            '{"cells": [{"cell_type": "code", "source": 5, "metadata": {}}], "nbformat": 4, "metadata": {}}',
            "cell 1: error: invalid notebook",
        ),
    ],
)
def test_broken_files_fail_cleanly(tmp_path: Path, content: str, fragment: str) -> None:
    nb = tmp_path / "broken.ipynb"
    nb.write_text(content)
    for command in (["compile", str(nb)], ["lint", str(nb)], ["graph", str(nb)]):
        assert_clean_failure(nb2kfp_here(*command), fragment)
    assert not (tmp_path / "broken.pipeline.yaml").exists()


def test_missing_file_fails_cleanly(tmp_path: Path) -> None:
    assert_clean_failure(nb2kfp_here("compile", str(tmp_path / "nope.ipynb")), "cannot read notebook")


def test_failed_compile_keeps_the_previous_output(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1")])
    assert nb2kfp_here("compile", str(nb)).returncode == 0
    out = nb.with_name("nb.pipeline.yaml")
    before = out.read_text()
    bad = make_nb([(["step:a"], "x = (")])
    assert bad == nb
    assert_clean_failure(nb2kfp_here("compile", str(nb)), "cell 1, line 1: error: syntax error")
    assert out.read_text() == before
    assert [p.name for p in nb.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_lint_text_and_json(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1"), (["step:b"], "print(w)"), (["step:c", "prev:a"], "print(y)")])
    proc = nb2kfp_here("lint", str(nb))
    assert proc.returncode == 1
    assert f"{nb}: cell 2, line 1: error:" in proc.stdout
    assert f"{nb}: cell 3, line 1: error:" in proc.stdout
    data = json.loads(nb2kfp_here("lint", str(nb), "--format", "json").stdout)
    assert {(d["cell"], d["severity"], d["code"]) for d in data} == {(2, "error", "NB020"), (3, "error", "NB020")}
    good = nb2kfp_here("lint", str(EXAMPLES / "iris_diamond.ipynb"))
    assert good.returncode == 0 and good.stdout == "1 notebook, 0 errors, 0 warnings\n"


@pytest.mark.parametrize(
    ("fmt", "fragment"),
    [
        ("text", "after split (X_test, X_train, y_test, y_train)"),
        ("mermaid", "s_split -->|X_test, X_train, y_test, y_train| s_train_forest"),
        ("dot", '"train_forest" -> "evaluate" [label="forest_accuracy"];'),
    ],
)
def test_graph_formats(fmt: str, fragment: str) -> None:
    proc = nb2kfp_here("graph", str(EXAMPLES / "iris_diamond.ipynb"), "--format", fmt)
    assert proc.returncode == 0 and fragment in proc.stdout, proc.stdout


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    nb = tmp_path / "broken.ipynb"
    nb.write_text("{")
    proc = nb2kfp("--debug", "compile", str(nb))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_lint_and_check_never_import_kfp(example_copy: Callable[[str], Path]) -> None:
    nb = example_copy("iris_diamond.ipynb")
    assert nb2kfp_here("compile", str(nb)).returncode == 0
    code = (
        "import sys; from nb2kfp.cli.main import main; sys.argv = ['nb2kfp'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('kfp' in sys.modules, file=sys.stderr)"
    )
    for args in (["lint", str(nb)], ["compile", "--check", str(nb)], ["compile", str(nb)]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert proc.stderr.strip().endswith("False"), (args, proc.stderr)


def test_fast_path_and_typer_path_say_the_same(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1"), (["step:b"], "print(w)")])
    fast = nb2kfp_here("lint", str(nb))
    typer_path = nb2kfp_here("lint", "--format", "text", str(nb))
    assert (fast.returncode, fast.stdout, fast.stderr) == (typer_path.returncode, typer_path.stdout, typer_path.stderr)
    fast = nb2kfp_here("compile", "--check", str(nb))
    typer_path = nb2kfp_here("compile", "--check", "--output-dir", str(nb.parent), str(nb))
    assert fast.returncode == typer_path.returncode == 1
    assert fast.stderr == typer_path.stderr
