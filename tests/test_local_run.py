"""End to end: notebook -> compile -> kfp.local (SubprocessRunner) run, through the CLI users call."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clirun import Make
from conftest import run_local_json

pytestmark = pytest.mark.slow


def run(nb: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc, result = run_local_json(nb, *args)
    assert "Traceback (most recent call last)" not in proc.stdout
    return proc, result


def test_values_of_every_format_cross_steps(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["imports"], "import numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import LinearRegression"),
            (
                ["functions"],
                "class Point:\n    def __init__(self, x):\n        self.x = x\n\ndef double(v):\n    return 2 * v",
            ),
            (
                ["step:make"],
                "df = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})\n"
                "arr = np.arange(6, dtype='float32').reshape(2, 3)\n"
                "model = LinearRegression().fit(np.array([[0.0], [1.0]]), np.array([0.0, 2.0]))\n"
                "config = {'k': [1, 2.5, None], 'name': \"O'Brien\"}\n"
                "point = Point(4)\n"
                "scale = 3\n"
                "fn = lambda v: v * scale\n"
                "pair = (1, 'a')\n"
                "text = '{{$}} literal'",
            ),
            (
                ["step:use", "prev:make"],
                "assert isinstance(point, Point) and double(point.x) == 8\n"
                "assert list(df['b']) == ['x', 'y', 'z'] and df['a'].sum() == 6\n"
                "assert arr.dtype == np.float32 and arr.shape == (2, 3)\n"
                "assert abs(model.predict(np.array([[2.0]]))[0] - 4.0) < 1e-9\n"
                "assert config == {'k': [1, 2.5, None], 'name': \"O'Brien\"}\n"
                "assert fn(2) == 6 and pair == (1, 'a') and text == '{{$}} literal'\n"
                "ok = 1",
            ),
            (["pipeline-metrics"], "print(ok)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"ok": 1.0}
    run_dir = Path(result["run_dir"])
    formats = {
        json.loads(p.read_text())["variable"]: json.loads(p.read_text())["format"]
        for p in run_dir.glob("artifacts/*/make/*/nb2kfp.json")
    }
    assert formats == {
        "df": "feather",
        "arr": "npy",
        "model": "joblib",
        "config": "json",
        "point": "pickle",
        "fn": "pickle",
        "scale": "json",  # what fn reads when called (as in the kernel, the calling step's value)
        "pair": "pickle",
        "text": "json",
    }
    import sklearn

    (record,) = [json.loads(p.read_text()) for p in run_dir.glob("artifacts/*/make/model/nb2kfp.json")]
    # what a server needs to load it, also the system.Model artifact's metadata on a cluster
    assert (record["framework"], record["framework_version"], record["n_features"]) == (
        "scikit-learn",
        sklearn.__version__,
        "1",
    )
    assert not any("framework" in json.loads(p.read_text()) for p in run_dir.glob("artifacts/*/make/df/nb2kfp.json"))


def test_in_place_changes_follow_the_notebook(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "history = []\ncounts = {}"),
            (["step:b", "prev:a"], "history.append('b')\ncounts['b'] = 1"),
            (["step:c", "prev:b"], "history.append('c')"),
            (["step:d", "prev:c"], "n_history = len(history)\nn_counts = len(counts)"),
            (["pipeline-metrics"], "print(n_history)\nprint(n_counts)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"n_history": 2.0, "n_counts": 1.0}


def test_parameters_override_and_reach_steps_as_inputs(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["pipeline-parameters"], "n = 2\nname = 'x'\nweights = [1, 2]\nflag = False"),
            (
                ["step:a"],
                "assert isinstance(n, int) and isinstance(flag, bool)\n"
                "score = n * sum(weights) + len(name) + (100 if flag else 0)",
            ),
            (["pipeline-metrics"], "print(score)"),
        ]
    )
    proc, result = run(nb)
    assert result["metrics"] == {"score": 7.0}, proc.stderr
    proc, result = run(nb, "-p", "n=3", "-p", "name=O'Brien's", "-p", "weights=[5]", "-p", "flag=true")
    assert result["metrics"] == {"score": 3 * 5 + len("O'Brien's") + 100}, proc.stderr
    proc, _ = run(nb, "-p", "n=three")
    assert proc.returncode == 2 and "is an int" in proc.stderr and "Traceback" not in proc.stderr
    proc, _ = run(nb, "-p", "nope=1")
    assert proc.returncode == 2 and "no such parameter" in proc.stderr


def test_failing_step_names_the_cell_and_stops_the_rest(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "x = 1"),
            ([], "y = x + 1\nraise ValueError(f'bad value {y}')"),
            (["step:b", "prev:a"], "print(y)"),
        ],
        name="broken_run.ipynb",
    )
    proc, result = run(nb)
    assert proc.returncode == 1
    assert result["status"] == "failed"
    assert result["steps"] == {"a": "failed", "b": "not run"}
    assert 'File "broken_run.ipynb, cell 2", line 2' in proc.stderr
    assert "step 'a' failed in broken_run.ipynb, cell 2, line 2: ValueError: bad value 2" in proc.stderr


def test_value_that_cannot_be_saved_names_variable_and_step(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "import threading\nlock = threading.Lock()"),
            (["step:b", "prev:a"], "print(lock)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 1 and result["steps"]["a"] == "failed"
    assert "cannot hand variable 'lock' (_thread.lock) from step 'a'" in proc.stderr


def test_star_import_replayed_in_a_later_step_keeps_the_values_it_receives(make_nb: Make) -> None:
    # "from math import *" binds e; the notebook then sets e = 5: the last step must see 5, floor from math, and
    # sqrt from cmath, the later star import (pvtol-lqr-nested.ipynb: control.matlab's step over pyplot's)
    nb = make_nb(
        [
            (["step:a"], "from math import *\nfrom cmath import *"),
            (["step:b"], "e = 5"),
            (["step:c"], "result = floor(e) + floor(pi) + int(isinstance(sqrt(-1), complex))"),
            (["pipeline-metrics"], "print(result)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"result": 9.0}


def test_ndarray_subclass_keeps_its_attributes_across_steps(make_nb: Make) -> None:
    # python-control's NamedSignal (an ndarray subclass) lost its signal labels on the way to the next step
    nb = make_nb(
        [
            (["imports"], "import numpy as np"),
            (["step:a"], "class Labeled(np.ndarray):\n    pass\n\na = np.arange(3.0).view(Labeled)\na.labels = [1, 2]"),
            (["step:b"], "n = len(a.labels) + a.sum()\nkind = type(a).__name__"),
            (["pipeline-metrics"], "print(n)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"n": 5.0}


def test_objects_caching_a_str_hash_work_in_the_next_step(make_nb: Make) -> None:
    # formulaic's Term caches hash(str): ms.term_indices["b"] raised KeyError one step later (model_specs.ipynb)
    key = (
        "class Key:\n    def __init__(self, s):\n        self.s, self.h = s, hash(s)\n"
        "    def __hash__(self):\n        return self.h\n"
        "    def __eq__(self, other):\n        return self.s == getattr(other, 's', other)\n"
    )
    nb = make_nb(
        [
            (["functions"], key),
            (["step:a"], "d = {Key(c): i for i, c in enumerate('abcdefgh')}"),
            (["step:b"], "n = d['b'] + d['h']"),
            (["pipeline-metrics"], "print(n)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"n": 8.0}


def test_shell_lines_and_magics_run_without_a_kernel(make_nb: Make, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    nb = make_nb(
        [
            (
                ["step:a"],
                f"%env GREETING=hello\n!echo $GREETING > {marker}\n!pip install definitely-not-a-package\n"
                "files = !ls\n%time n_files = len(files)\ndisplay(n_files)",
            ),
            (["pipeline-metrics"], "print(n_files)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text().strip() == "hello"
    assert result["metrics"]["n_files"] >= 1
