"""Magics bind in a step the names IPython binds (issue 29): the same cell runs in a real IPython shell, through
nb2kfp's front end (what its analysis says the cell sets and reads) and through the step runtime (what it sets),
and the three agree. The rules (README, "How variables move between steps"): ``%timeit``/``%%timeit`` run their
code in a function (nothing leaks but ``global`` names, ``-o``'s value and ``-v NAME``), ``%time``/``%%time``,
``%prun``/``%%prun`` and ``%%capture`` run it in the notebook's namespace (``%%capture out`` also binds ``out``),
``%run`` runs a script in a namespace of its own and copies its names in (``-i``: in the notebook's)."""

from __future__ import annotations

import ast
import builtins
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nb2kfp.frontend import magics
from nb2kfp.frontend.analysis import Facts, analyse
from nb2kfp.runtime import step

SETUP = "import numpy as np\nx = np.array([0.5, 1.5, 2.5])\nbins = 3\ncounts = np.zeros(10, dtype=int)\n"
SCRIPTS = {
    "helpers.py": "a_s = 1\ndef f_s():\n    return a_s\nimport math as m_s\n"
    "if __name__ == '__main__':\n    main_s = 2\n",
    "uses_x.py": "a_i = x + 1\n",
}

# (cell, the names it binds or rebinds, names its code reads from the notebook)
CASES: list[tuple[str, set[str], set[str]]] = [
    ("%timeit -n1 -r1 t1 = x + 1", set(), {"x"}),
    ("%timeit -n1 -r1 counts, edges = np.histogram(x, bins)", set(), {"np", "x", "bins"}),  # the cell
    ("%%timeit -n1 -r1 s = 5\nt2 = s + x", set(), {"x"}),  # the setup line does not leak either
    ("%%timeit -n1 -r1\nfor i in range(3):\n    t3 = i", set(), set()),
    ("%timeit -n1 -r1 global g1; g1 = 5", {"g1"}, set()),
    ("r = %timeit -n1 -r1 -q -o x + 1", {"r"}, {"x"}),
    ("%timeit -n1 -r1 -q -v tv x + 1", {"tv"}, {"x"}),
    ("for i in range(2):\n    %timeit -n1 -r1 -q t4 = i", {"i"}, set()),
    ("%time t5 = x + 1", {"t5"}, {"x"}),
    ("%%time\nt6 = x + 1", {"t6"}, {"x"}),
    ("t7 = %time x + 1", {"t7"}, {"x"}),
    ("%prun -q t8 = x", {"t8"}, {"x"}),
    ("%%prun -q\nt9 = x", {"t9"}, {"x"}),
    ("%%capture\nt10 = x\nprint('hidden')", {"t10"}, {"x"}),
    ("%%capture out\nt11 = x\nprint('hidden')", {"out", "t11"}, {"x"}),
    ("%%capture out2 --no-stdout\nt12 = 1\nprint('shown')", {"out2", "t12"}, set()),
    ("%%capture out3\nt13 = x;", {"t13"}, {"x"}),  # a body ending with ';' binds no output
    ("%%capture out4\n%timeit -n1 -r1 t14 = 1\nt15 = 2", {"out4", "t15"}, set()),  # magics inside
    ("%%capture out5\nt16 = 1\nraise ValueError('boom')\nt17 = 2", {"out5", "t16", "t17"}, set()),
    ("%run helpers.py", {"a_s", "f_s", "m_s", "main_s"}, set()),
    ("%run -i uses_x.py", {"a_i"}, {"x"}),
]
# The analysis tells which names a cell may set: a statement after an error inside %%capture (IPython goes on
# after the cell) is one it may set; at run time it is not set.
NOT_RUN = {"t17"}


@pytest.fixture(scope="module")
def shell() -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    yield InteractiveShell.instance()
    InteractiveShell.clear_instance()


def _user_names(namespace: dict[str, Any]) -> dict[str, Any]:
    hidden = {"In", "Out", "exit", "quit", "get_ipython", "display"}
    return {k: v for k, v in namespace.items() if not k.startswith("_") and k not in hidden}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {k for k, v in after.items() if k not in before or before[k] is not v}


def in_ipython(shell: Any, cell: str) -> tuple[set[str], dict[str, Any]]:
    shell.reset(new_session=False)
    assert shell.run_cell(SETUP).success
    before = _user_names(shell.user_ns)
    result = shell.run_cell(cell)
    assert result.success, result.error_in_exec
    after = _user_names(shell.user_ns)
    return _changed(before, after), after


def in_step(cell: str) -> tuple[set[str], dict[str, Any], Facts]:
    python = magics.to_python(cell, read=lambda name: SCRIPTS.get(name))
    facts = analyse(ast.parse(python))
    namespace = types.ModuleType("__main__").__dict__
    namespace.update({"__builtins__": builtins, "display": step._display})
    namespace["get_ipython"] = lambda shim=step.IPythonShim(namespace): shim
    step._run_cells([("nb.ipynb, cell 1", SETUP, False)], namespace)
    before = _user_names(namespace)
    step._run_cells([("nb.ipynb, cell 2", python, False)], namespace)
    after = _user_names(namespace)
    return _changed(before, after), after, facts


@pytest.mark.parametrize(("cell", "binds", "reads"), CASES, ids=[c.splitlines()[0][:40] for c, *_ in CASES])
def test_a_magic_binds_what_it_binds_in_ipython(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cell: str, binds: set[str], reads: set[str]
) -> None:
    for name, text in SCRIPTS.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    ipython, ipython_ns = in_ipython(shell, cell)
    assert ipython == binds - NOT_RUN  # the rule, as IPython itself follows it
    stepped, step_ns, facts = in_step(cell)
    assert stepped == ipython
    assert facts.binds == binds  # the front end's view of the cell
    assert reads <= facts.free() and not (facts.free() - {"np", "x", "bins", "range", "print", "ValueError"})
    for name in binds & {"out", "out2"}:  # %%capture's output: what the body printed
        assert step_ns[name].stdout == ipython_ns[name].stdout
        assert step_ns[name].stderr == ipython_ns[name].stderr == ""
    if "out5" in binds:
        for captured in (ipython_ns["out5"].stdout, step_ns["out5"].stdout):  # the traceback
            assert "ValueError" in captured and "boom" in captured


def test_run_puts_a_script_inside_the_repository_in_the_step_and_the_names_it_sets_flow(tmp_path: Path) -> None:
    from nb2kfp.frontend.builder import build
    from nbfactory import write

    (tmp_path / "nbs").mkdir()
    (tmp_path / "nbs" / "helpers.py").write_text("a_s = 1\n")
    (tmp_path / "outside.py").write_text("b_s = 2\n")  # outside the notebook's folder (no repository here)
    nb = write(
        tmp_path / "nbs" / "nb.ipynb",
        [
            (["step:a"], "%run helpers.py"),
            (["step:o"], "%run ../outside.py\nc = 3"),
            (["step:b", "prev:a", "prev:o"], "y = a_s + c"),
        ],
    )
    result = build(nb)
    assert (
        result.pipeline.step("a").cells[0].source
        == "get_ipython().run_cell_magic('nb2kfp_run', 'helpers.py', 'a_s = 1\\n')\n"
    )
    assert "run_line_magic('run', '../outside.py')" in result.pipeline.step("o").cells[0].source  # read when it runs
    assert {(e.name, e.producer) for e in result.pipeline.step("b").inputs} == {("a_s", "a"), ("c", "o")}


def test_run_of_a_file_the_notebook_writes_runs_what_the_notebook_writes(tmp_path: Path) -> None:
    from nb2kfp.frontend.builder import build
    from nbfactory import write

    (tmp_path / "helper.py").write_text("stale = 0\n")  # left by an earlier Jupyter session
    (tmp_path / "log.py").write_text("old = 0\n")
    nb = write(
        tmp_path / "nb.ipynb",
        [
            (["step:a"], "%%writefile helper.py\nw_s = 5\n"),
            ([], "%%writefile -a log.py\nl_s = 1\n"),
            ([], "%run ./helper.py\n%run log.py"),
            (["step:b", "prev:a"], "y = w_s"),
        ],
    )
    result = build(nb)
    source = result.pipeline.step("a").cells[2].source
    assert source.splitlines() == [
        "get_ipython().run_cell_magic('nb2kfp_run', './helper.py', 'w_s = 5\\n')",
        "get_ipython().run_line_magic('run', 'log.py')",  # appended to: read when the step runs
    ]
    assert {(e.name, e.producer) for e in result.pipeline.step("b").inputs} == {("w_s", "a")}
