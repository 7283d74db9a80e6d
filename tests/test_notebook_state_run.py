"""End to end with kfp.local: what a kernel keeps between cells besides variables (tests/test_notebook_state.py)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clirun import Make
from conftest import run_local_json as run
from test_notebook_state import CRUISE, FORMULA

pytestmark = pytest.mark.slow


def test_functions_from_earlier_steps_read_the_calling_steps_globals(make_nb: Make) -> None:
    nb = make_nb(
        [
            *CRUISE,
            (["step:regain"], "gain = 5"),  # the kernel's latest value, not the one torque saw where it was saved
            (["step:again"], "y2 = system['update'](speed)"),
            (["pipeline-metrics"], "print(y)\nprint(y2)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"y": 6.0, "y2": 15.0}


def test_draws_continue_after_a_seed_as_in_one_kernel(make_nb: Make) -> None:
    nb = make_nb(
        [
            (
                ["step:seed"],
                "import numpy as np\nimport random\nnp.random.seed(42)\nrandom.seed(7)\na = np.random.rand()",
            ),
            (["step:plain"], "z = 1"),
            (["step:draw"], "b = np.random.rand()\nc = random.random()"),
            (["step:later"], "d = float(np.random.randint(1000))"),
            (["pipeline-metrics"], "print(a)\nprint(b)\nprint(c)\nprint(d)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    np.random.seed(42)
    random.seed(7)
    expected = {"a": np.random.rand(), "b": np.random.rand(), "c": random.random()}
    expected["d"] = float(np.random.randint(1000))
    assert result["metrics"] == pytest.approx(expected, rel=0, abs=0)


GUI = (
    "class Minuit:\n"
    "    def interactive(self):  # iminuit: an ipywidget in a kernel, else a Qt window\n"
    "        raise ModuleNotFoundError(\"No module named 'PySide6'\", name='PySide6')\n"
    "m = Minuit()"
)


def test_a_shown_call_that_opens_a_gui_is_skipped_and_the_step_goes_on(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:fit"], GUI),
            (["step:look"], "before = 1\nm.interactive()\nafter = 2"),
            (["pipeline-metrics"], "print(before)\nprint(after)"),
        ]
    )
    proc, result = run(nb)
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"before": 1.0, "after": 2.0}
    log = Path(result["run_dir"], "run.log").read_text()
    assert "skipped m.interactive() in nb.ipynb, cell 2, line 2: it opens an interactive GUI" in log


@pytest.mark.parametrize("line", ["w = m.interactive()", "import no_such_module_here"])
def test_a_missing_module_otherwise_still_fails_the_step(make_nb: Make, line: str) -> None:
    nb = make_nb([(["step:fit"], GUI), (["step:look"], f"{line}\nafter = 2"), (["pipeline-metrics"], "print(after)")])
    proc, _ = run(nb)
    assert proc.returncode != 0
    assert "ModuleNotFoundError" in proc.stderr and "cell 2, line 1" in proc.stderr


def test_a_formula_string_finds_the_function_it_names(make_nb: Make) -> None:
    proc, result = run(make_nb([*FORMULA, (["pipeline-metrics"], "print(total)")]))
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"total": 6.0 + 17.0 + 1.0 + 3.0}  # intercept, a, a**2 + 1, rows with a < 2


CONTROL = [
    "import control as ct\ns1 = ct.tf([1], [1, 1])",
    "s2 = ct.tf([1], [1, 2])\n"
    "loop = ct.interconnect(\n"
    "    [s1, s2], connections=[[s2.name + '.u[0]', s1.name + '.y[0]']],\n"
    "    inplist=[s1.name + '.u[0]'], outlist=[s2.name + '.y[0]'])",
    "number = float(ct.ss([[0]], [[1]], [[1]], [[0]]).name[4:-1])\ngain = float(loop.dcgain())",
]


def test_unnamed_python_control_systems_are_numbered_as_in_one_kernel(make_nb: Make) -> None:
    # python-control numbers unnamed systems with a class counter; interconnect finds systems by those names
    kernel = subprocess.run(
        [sys.executable, "-c", "\n".join([*CONTROL, "print(number, gain)"])], capture_output=True, text=True, check=True
    )
    number, gain = map(float, kernel.stdout.split())
    steps = [([f"step:s{i}"], source) for i, source in enumerate(CONTROL)]
    proc, result = run(make_nb([*steps, (["pipeline-metrics"], "print(number)\nprint(gain)")]))
    assert proc.returncode == 0, proc.stderr
    assert result["metrics"] == {"number": number, "gain": gain}
