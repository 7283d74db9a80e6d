"""End to end with kfp.local: objects, parameters, exits and kernel APIs from notebooks written elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from clirun import Make
from conftest import run_local_json as run

pytestmark = pytest.mark.slow


def test_code_defined_in_steps_crosses_step_boundaries(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["imports"], "import numpy as np"),
            (
                ["step:fit"],
                "from sklearn.base import BaseEstimator, TransformerMixin\n"
                "from sklearn.pipeline import Pipeline\n"
                "from sklearn.preprocessing import FunctionTransformer\n"
                "from sklearn.linear_model import LinearRegression\n"
                "class Doubler(BaseEstimator, TransformerMixin):\n"
                "    def fit(self, X, y=None):\n        return self\n"
                "    def transform(self, X):\n        return X * 2\n"
                "X = np.array([[0.0], [1.0], [2.0]])\n"
                "y = np.array([0.0, 2.0, 4.0])\n"
                "pipe = Pipeline([('d', Doubler()), ('f', FunctionTransformer(lambda v: v + 0)),"
                " ('m', LinearRegression())]).fit(X, y)\n"
                "def triple(v):\n    return 3 * v\n"
                "class Box:\n    def __init__(self, v):\n        self.v = v",
            ),
            (["step:middle", "prev:fit"], "box = Box(5)"),
            (
                ["step:use", "prev:middle"],
                "pred = float(pipe.predict(np.array([[3.0]]))[0])\n"
                "assert isinstance(box, Box)\n"
                "tripled = triple(box.v)",
            ),
            (["pipeline-metrics"], "print(pred)\nprint(tripled)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"]["tripled"] == 15.0
    assert abs(result["metrics"]["pred"] - 6.0) < 1e-9


@pytest.mark.parametrize(
    ("source", "kind", "advice"),
    [
        ("rows = (i for i in range(3))", "generator", "list("),
        ("rows = open('data.txt', 'w')", "TextIOWrapper", "path"),
        ("import sqlite3\nrows = sqlite3.connect(':memory:')", "Connection", "create it"),
    ],
)
def test_value_that_cannot_cross_says_what_to_do(make_nb: Make, source: str, kind: str, advice: str) -> None:
    nb = make_nb([(["step:a"], "x = 1"), ([], source), (["step:b", "prev:a"], "print(rows)")], name="objs.ipynb")
    proc, result = run(nb)
    assert proc.returncode == 1 and result["steps"]["a"] == "failed"
    line = next(ln for ln in proc.stderr.splitlines() if "cannot hand variable 'rows'" in ln)
    assert kind in line and "step 'a'" in line and "objs.ipynb, cell 2" in line and advice in line


def test_parameters_arrive_exactly_as_written(make_nb: Make) -> None:
    check = (
        "assert list(config) == ['z', 'a', 'b'], list(config)\n"
        "assert type(config['a']['n']) is int and config['a']['m'] == [1, 2.5], config\n"
        "assert items == [3, 1, 2] and all(type(i) is int for i in items), items\n"
        "assert tmpl == 'x {{$}} and {{$.inputs.parameters[\\'config\\']}}', tmpl\n"
        "total = sum(range(config['a']['n']))\n"
        "lim = -1 if limit is None else int(limit)"
    )
    nb = make_nb(
        [
            (
                ["parameters"],
                "config = {'z': 1, 'a': {'n': 3, 'm': [1, 2.5]}, 'b': 2}\n"
                "items = [3, 1, 2]\n"
                "tmpl = 'x {{$}} and {{$.inputs.parameters[\\'config\\']}}'\n"
                "limit = None",
            ),
            (["step:a"], check),
            (["step:b", "prev:a"], check),  # a second step reads them again: same values
            (["pipeline-metrics"], "print(total)\nprint(lim)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"total": 3.0, "lim": -1.0}
    config = '{"z": 1, "a": {"n": 4, "m": [1, 2.5]}, "b": 2}'
    tmpl = "tmpl=x {{$}} and {{$.inputs.parameters['config']}}"
    proc, result = run(nb, "-p", f"config={config}", "-p", tmpl, "-p", "limit=7")
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"total": 6.0, "lim": 7.0}


def test_sys_exit_zero_stops_the_step_cleanly_and_hands_on_what_it_set(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "import sys\nx = 1"),
            ([], "sys.exit(0)"),
            ([], "y = 2"),
            (["step:b", "prev:a"], "z = x + 1"),
            (["step:c", "prev:b"], "w = y"),
        ],
        name="exits.ipynb",
    )
    proc, result = run(nb)
    assert result["steps"] == {"a": "succeeded", "b": "succeeded", "c": "failed"}, proc.stderr
    assert "stopped by sys.exit(0) in exits.ipynb, cell 2" in proc.stderr
    assert "variable 'y' has no value: step 'a' stopped by sys.exit(0) in exits.ipynb, cell 2 before setting it" in (
        proc.stderr
    )


def test_sys_exit_non_zero_fails_the_step_naming_the_cell(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "import sys\nx = 1"), ([], "sys.exit('bad input')")], name="exits.ipynb")
    proc, result = run(nb)
    assert result["steps"] == {"a": "failed"}
    assert "step 'a' failed in exits.ipynb, cell 2, line 1: sys.exit('bad input')" in proc.stderr


def test_text_metric_never_fails_the_run(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "bar = 'high'\nacc = 0.5"), (["pipeline-metrics"], "print(bar)\nprint(acc)")])
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"acc": 0.5}
    assert result["text_metrics"] == {"bar": "high"}  # shown as a text metric (tests/test_text_metrics.py)


def test_builtin_shadowing_function_travels_at_run_time(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "def sum(x, y):\n    return x * y"),
            (["step:b", "prev:a"], "z = sum(3, 4)"),
            (["pipeline-metrics"], "print(z)"),
        ]
    )
    proc, result = run(nb)
    assert result["metrics"] == {"z": 12.0}, proc.stderr


def test_dataframes_keep_their_index_and_dtypes(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["imports"], "import pandas as pd"),
            (
                ["step:a"],
                "idx = pd.period_range('2020-01', periods=3, freq='M')\n"
                "df = pd.DataFrame({'v': [1, 2, 3], 'p': pd.period_range('2021', periods=3, freq='Y')}, index=idx)\n"
                "wide = pd.DataFrame([[1, 2]], columns=[10, 20])\n"
                "ser = pd.Series([1.5, 2.5], index=pd.Index(['a', 'b'], name='k'))\n"
                "nested = pd.DataFrame({'t': [[1, 2], [3]], 'm': [1, 'a'], 's': ['x', None]})",
            ),
            (
                ["step:b", "prev:a"],
                "assert isinstance(df.index, pd.PeriodIndex), type(df.index)\n"
                "ts = df.to_timestamp()\n"
                "assert str(df['p'].dtype) == 'period[Y-DEC]', df['p'].dtype\n"
                "assert list(wide.columns) == [10, 20], list(wide.columns)\n"
                "assert ser.index.name == 'k'\n"
                "assert nested['t'][0] == [1, 2] and type(nested['t'][0]) is list and list(nested['m']) == [1, 'a']\n"
                "n = len(ts)",
            ),
            (["pipeline-metrics"], "print(n)"),
        ]
    )
    proc, result = run(nb)
    assert result.get("metrics") == {"n": 3.0}, proc.stderr


def test_kernel_only_apis_work_or_say_where(make_nb: Make) -> None:
    nb = make_nb(
        [
            (
                ["step:a"],
                "import matplotlib.pyplot as plt\n"
                "fig = plt.figure()\n"
                "plt.plot([1, 2])\n"
                "plt.show(fig)\n"
                "import subprocess, sys\n"
                "subprocess.run([sys.executable, '-c', 'import matplotlib.pyplot as p; p.figure()'], check=True)\n"
                "h = display('start', display_id=True)\n"
                "h.update('done')\n"
                "hist = list(get_ipython().history_manager.get_range())\n"
                "get_ipython().kernel.do_shutdown(True)\n"
                "ok = 1",
            ),
            (
                [],
                "%pylab inline\nxs = linspace(0, 1, 5)\nok = int(np.sum(xs) * 2) - 4",
            ),
            (["step:b", "prev:a"], "get_ipython().kernel.comm_manager.register_target('x', None)"),
            (["pipeline-metrics"], "print(ok)"),
        ],
        name="kernel.ipynb",
    )
    proc, result = run(nb)
    assert result["steps"] == {"a": "succeeded", "b": "failed"}, proc.stderr
    assert "step 'b' failed in kernel.ipynb, cell 3, line 1" in proc.stderr
    assert "get_ipython().kernel.comm_manager is not available in a pipeline step" in proc.stderr


def test_kale_composition_runs(make_nb: Make) -> None:
    from test_fidelity import make_kale_composition

    proc, result = run(make_kale_composition(make_nb))
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"score": 3.0 * 5 + 3.0**0.5}


def test_files_one_rule_each_step_its_own_folder_seeded_with_the_notebooks(make_nb: Make) -> None:
    cells = [
        (["step:a"], "text = open('input.txt').read()\nwith open('features.csv', 'w') as fh:\n    fh.write(text)"),
        (["step:b", "prev:a"], "rows = open('features.csv').read()"),
    ]
    nb = make_nb(cells, name="files.ipynb")
    (nb.parent / "input.txt").write_text("1,2\n")
    proc, result = run(nb)  # on KFP step b runs in another pod: features.csv is not there, so not here either
    assert result["steps"] == {"a": "succeeded", "b": "failed"}, proc.stderr
    assert "FileNotFoundError" in proc.stderr and "features.csv" in proc.stderr
    kept = Path(result["run_dir"], "files", "a")
    assert (kept / "features.csv").read_text() == "1,2\n"
    assert not (kept / "input.txt").exists()  # the notebook's folder is seeded, not copied into the run
    assert not (nb.parent / "features.csv").exists()  # nothing is written next to the notebook


def test_files_a_workspace_shares_the_working_directory(make_nb: Make) -> None:
    cells = [
        (["step:a"], "text = open('input.txt').read()\nwith open('features.csv', 'w') as fh:\n    fh.write(text)"),
        (["step:b", "prev:a"], "rows = len(open('features.csv').read().split(','))"),
        (["pipeline-metrics"], "print(rows)"),
    ]
    nb = make_nb(cells, name="files.ipynb", metadata={"kubeflow_notebook": {"workspace": "1Gi"}})
    (nb.parent / "input.txt").write_text("1,2\n")
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"rows": 2.0}
    assert Path(result["run_dir"], "workspace", "features.csv").is_file()


# -- issue 29: what real notebooks do that papermill runs --------------------------------------------------------------
TIMEIT_CELLS = [
    "import numpy as np\nx = np.array([0.5, 1.5, 2.5])\nbins = 3\ncounts = np.zeros(10, dtype=int)",
    "%timeit -n1 -r1 counts, edges = np.histogram(x, bins)",  # rebinds nothing, as in IPython
    "np.add.at(counts, [9], 1)\ntotal = int(counts.sum())\nassert 'edges' not in globals()",
]


@pytest.mark.parametrize(
    "tags",
    [
        (["step:a"], [], ["step:b", "prev:a"]),  # the %timeit cell joins step a
        (["step:a"], ["step:t", "prev:a"], ["step:b", "prev:t"]),  # a step of its own
        ([], [], []),  # untagged: one step
    ],
    ids=["joined", "own-step", "untagged"],
)
def test_timeit_binds_nothing_in_the_notebook(make_nb: Make, tags: tuple[list[str], ...]) -> None:
    cells = list(zip(tags, TIMEIT_CELLS, strict=True))
    proc, result = run(make_nb(cells, name="timeit.ipynb"))
    assert proc.returncode == 0, proc.stderr
    assert set(result["steps"].values()) == {"succeeded"}


def test_a_frame_from_an_earlier_step_can_be_written_to(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["imports"], "import pandas as pd"),
            (["step:a"], "data = pd.DataFrame({'a': [1, 2], 'b': [3.0, 4.0], 'c': [5, 6]})\ns = data['b'] * 2"),
            (
                ["step:b", "prev:a"],
                "data.iloc[0, 2] = 90\ns.iloc[0] = 1.0\ndata['a'] += 1\nv = int(data.iloc[0, 2] + data.a[0])",
            ),
            (["pipeline-metrics"], "print(v)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"v": 92.0}


def test_a_record_array_crosses_steps(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["imports"], "import numpy as np"),
            (
                ["step:a"],
                "data = np.array([(1, 2.0), (3, 4.0)], dtype=[('a', 'i4'), ('b', 'f8')])\n"
                "data_rec = data.view(np.recarray)",
            ),
            (["step:b", "prev:a"], "first = data_rec[0]\ndata_rec.a[1] = 7\nv = int(first.a + data_rec.a[1])"),
            (["pipeline-metrics"], "print(v)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"v": 8.0}


def test_run_and_capture_set_their_names_for_later_steps(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "%%capture out\nprint('hi')\nshown = 1"),
            ([], "%run helpers.py --n 3\nr = %timeit -n1 -r1 -q -o sum(range(10))"),
            (["step:b", "prev:a"], "v = f_s() + shown + len(out.stdout) + int(r.loops) + n_s"),
            (["pipeline-metrics"], "print(v)"),
        ],
        name="run.ipynb",
    )
    (nb.parent / "helpers.py").write_text("import sys\na_s = 10\ndef f_s():\n    return a_s\nn_s = int(sys.argv[2])\n")
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"v": 10 + 1 + 3 + 1 + 3}


def test_a_raises_exception_cell_shows_its_error_and_the_step_goes_on(make_nb: Make) -> None:
    """Issue 25: nbclient and papermill run a cell tagged raises-exception, record its error as its output and go
    on; a step failed there. Only that cell may raise: an error in an untagged cell still fails the step."""
    nb = make_nb(
        [
            (["step:a"], "x = 1"),
            (["raises-exception"], "y = 2\nraise ValueError('expected here')\ny = 3"),
            ([], "z = x + y"),
            (["pipeline-metrics"], "print(z)"),
        ]
    )
    proc, record = run(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"z": 3}  # what ran before the error stays; the rest of the cell does not run
    log = (Path(record["run_dir"]) / "run.log").read_text()
    assert "ValueError: expected here" in log and "raised ValueError as its raises-exception tag expects" in log
    spec = next(yaml.safe_load_all((Path(record["run_dir"]) / "pipeline.yaml").read_text()))
    step = json.loads(spec["deploymentSpec"]["executors"]["exec-a"]["container"]["args"][-1])
    assert [cell[2:] for cell in step["cells"]] == [[], [1], []]  # only the tagged cell is marked

    untagged = make_nb([(["step:a"], "x = 1"), ([], "raise ValueError('not expected')")], name="u.ipynb")
    proc, record = run(untagged, "--no-cache")
    assert proc.returncode == 1 and record["steps"] == {"a": "failed"}


def test_a_frame_the_step_rebinds_gives_no_warning_a_kernel_does_not_give(make_nb: Make) -> None:
    """Issue 25: `df = df.dropna(...); df["c"] = ...` on a frame from an earlier step warned SettingWithCopyWarning
    (pandas 2, without copy on write): the runtime kept a reference to the frame it loaded, so pandas saw the old
    frame alive. In a kernel (and with papermill) it is garbage and nothing warns."""
    nb = make_nb(
        [
            (["imports"], "import warnings\nimport pandas as pd"),
            (["step:a"], "df = pd.DataFrame({'a': [1.0, None, 3.0], 'b': [1, 2, 3]})"),
            (
                ["step:b", "prev:a"],
                "df = df.dropna(subset=['a'])\n"
                "with warnings.catch_warnings(record=True) as caught:\n"
                "    warnings.simplefilter('always')\n"
                "    df['c'] = df['a'] * 2\n"
                "n_warnings = len(caught)",
            ),
            (["pipeline-metrics"], "print(n_warnings)"),
        ]
    )
    proc, record = run(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"n_warnings": 0}


def test_every_way_of_reaching_the_shell_reaches_the_steps_stand_in(make_nb: Make) -> None:
    """Issue 25: the module function `IPython.get_ipython()` returned None in a step (only the builtin had the
    stand-in). ipywidgets' `with Output(): raise ...` shows the error in the widget in Jupyter and goes on (it
    calls `get_ipython().showtraceback()` and suppresses the error when there is a shell); in a step it escaped."""
    nb = make_nb(
        [
            (["imports"], "import IPython\nfrom IPython import get_ipython as module_get_ipython"),
            (
                ["step:a"],
                "from ipywidgets import Output\n"
                "out = Output()\n"
                "with out:\n"
                "    raise ValueError('shown in the widget')\n"
                "same = int(module_get_ipython() is get_ipython() is IPython.core.getipython.get_ipython())\n"
                "get_ipython().events.register('post_run_cell', print)\n"
                "after = 1",
            ),
            (["pipeline-metrics"], "print(same)\nprint(after)"),
        ]
    )
    proc, record = run(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"same": 1, "after": 1}
    assert "ValueError: shown in the widget" in (Path(record["run_dir"]) / "run.log").read_text()


@pytest.mark.parametrize(
    "cells",
    [
        [(["imports"], "from math import *"), (["step:a"], "x = 1"), (["pipeline-metrics"], "print(pi)")],
        [
            (["step:a"], "%pylab inline\nx = 1"),
            (["step:b", "prev:a"], "y = 2"),
            (["pipeline-metrics"], "print(pi)\nprint(y)"),
        ],
    ],
    ids=["star-import", "pylab"],
)
def test_a_metric_a_star_import_sets_is_logged(make_nb: Make, cells: list[Any]) -> None:
    """Issue 25: a metric named by a star import (`from math import *`, `%pylab`: numpy's names) was "never set by
    any step" (NB046): the analysis cannot list such names; the last step with the import logs it."""
    proc, record = run(make_nb(cells), "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"]["pi"] == pytest.approx(3.141592653589793)


def test_an_except_clause_naming_an_unset_exception_runs_as_in_a_kernel(make_nb: Make) -> None:
    """mlbook/ch02: `except HTTPError:` with HTTPError never imported; the body does not raise, so a kernel never
    evaluates the clause and the notebook runs. nb2kfp refused to compile it (NB020)."""
    nb = make_nb([(["step:a"], "try:\n    n = 1\nexcept HTTPError:\n    n = 0"), (["pipeline-metrics"], "print(n)")])
    proc, record = run(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"n": 1}
