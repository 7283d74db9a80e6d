"""`nb2kfp lint` as ruff and pre-commit users expect (issue 26): folders, unknown formats and missing files are
usage mistakes (exit 2), not lint results; and two mistakes lint now names (issues 25 and 26): `input()` in a step
and a `step:NAME` that comes back after another step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clirun import Make
from nb2kfp import service
from nb2kfp.commands import lint
from nb2kfp.errors import UsageError
from nbfactory import write


def _lint(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2kfp", "lint", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_usage_mistakes_exit_2_in_one_line(tmp_path: Path) -> None:
    write(tmp_path / "nb.ipynb", [(["step:a"], "x = 1")])
    for args, says in [
        (["nb.ipynb", "--format", "xml"], "--format xml: give text or json"),  # printed text, exit 0 before
        (["missing.ipynb"], "missing.ipynb: no such file or folder"),  # exit 1 before
    ]:
        proc = _lint(*args, cwd=tmp_path)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, (args, proc)
        assert proc.stdout == "", proc.stdout


def test_a_folder_stands_for_the_notebooks_under_it(tmp_path: Path) -> None:
    """`lint DIR` said "Is a directory"; it lints every notebook below, as ruff does (hidden folders and Jupyter's
    checkpoints left out)."""
    write(tmp_path / "a.ipynb", [(["step:a"], "x = 1")])
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "b.ipynb", [(["step:b"], "y = z")])
    (tmp_path / ".ipynb_checkpoints").mkdir()
    write(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb", [(["step:a"], "broken(")])
    assert lint.expand([tmp_path]) == [tmp_path / "a.ipynb", tmp_path / "sub" / "b.ipynb"]
    proc = _lint(".", cwd=tmp_path)
    assert proc.returncode == 1, proc  # b.ipynb reads a variable nothing sets
    assert "sub/b.ipynb: cell 1" in proc.stdout and "2 notebooks, 1 error" in proc.stdout, proc.stdout
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="a folder with no notebooks"):
        lint.expand([tmp_path / "empty"])


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("name = input('who? ')\nprint(name)", 1),
        ("import os\nif os.environ.get('ASK'):\n    n = int(input())", 3),
        ("def input(prompt=''):\n    return 'fixed'\nn = input()", None),  # its own input: fine
    ],
)
def test_input_in_a_step_is_a_lint_warning(make_nb: Make, source: str, line: int | None) -> None:
    """A step reads no terminal (stdin is empty, locally as in a pod): input() raised EOFError at run time and
    passed lint."""
    found = [d for d in service.diagnostics(make_nb([(["step:a"], source)])) if d.code == "NB034"]
    assert [d.line for d in found] == ([line] if line else []), [d.format() for d in found]


def test_a_step_that_comes_back_after_another_step_is_a_lint_warning(make_nb: Make) -> None:
    """`step:a` cells separated by `step:b` run together where `a` started, not in notebook order: lint says so
    (silently merged before); adjacent cells of one step, markdown or a metrics cell in between are fine."""
    interleaved = make_nb([(["step:a"], "x = 1"), (["step:b"], "y = x"), ([], "z = y"), (["step:a"], "w = 2")])
    [warning] = [d for d in service.diagnostics(interleaved) if d.code == "NB025"]
    assert "cell 4" in warning.format() and "after step 'b'" in warning.message and "(cell 1)" in warning.message
    for cells in (
        [(["step:a"], "x = 1"), ([], "z = x"), (["step:a"], "w = 2")],
        [(["step:a"], "x = 1"), ([], "# Title", "markdown"), (["step:a"], "w = 2")],
        [(["step:a"], "x = 1"), (["pipeline-metrics"], "print(x)"), (["step:a"], "w = 2")],
    ):
        assert not [d for d in service.diagnostics(make_nb(cells, name="ok.ipynb")) if d.code == "NB025"]


def test_a_star_import_of_pyplot_is_a_lint_warning(make_nb: Make) -> None:
    """python-control's pvtol-lqr-nested.ipynb: `from matplotlib.pyplot import *` binds `requested_backend`, which is
    'agg' in a step and the inline backend in a kernel (a value that came out different, silently, before)."""
    nb = make_nb([(["step:a"], "import numpy as np\nfrom matplotlib.pyplot import *"), (["step:b"], "%pylab inline")])
    found = [(d.cell, d.line) for d in service.diagnostics(nb) if d.code == "NB035"]
    assert found == [(1, 2), (2, 1)]
    plain = make_nb([(["step:a"], "from matplotlib.pyplot import plot\nfrom numpy import *")], name="ok.ipynb")
    assert not [d for d in service.diagnostics(plain) if d.code == "NB035"]


def test_a_ctypes_function_pointer_handed_to_another_step_is_a_lint_warning(make_nb: Make) -> None:
    """hist's Transform.ipynb: an axis made with `ftype(math.log)` (`ftype = ctypes.CFUNCTYPE(...)`) cannot be
    pickled, so the step that makes it failed at run time handing it over, without a word from lint."""
    make = "import ctypes, math\nftype = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)\nf = [ftype(math.log)]"
    nb = make_nb([(["step:a"], make), (["step:b", "prev:a"], "g = f\nh = ftype")])
    [found] = [d for d in service.diagnostics(nb) if d.code == "NB036"]
    assert (found.cell, found.line) == (1, 3) and "'f' holds a ctypes function pointer (ftype(...))" in found.message
    together = make_nb([(["step:a"], f"{make}\ng = f"), (["step:b", "prev:a"], "h = ftype")], name="ok.ipynb")
    assert not [d for d in service.diagnostics(together) if d.code == "NB036"]  # the type alone crosses steps
