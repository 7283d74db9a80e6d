"""State a kernel keeps between cells besides variables: the globals a function reads when it is called, the
global random state. Front end (which values flow); tests/test_notebook_state_run.py runs the same notebooks."""

from __future__ import annotations

import pytest

from clirun import Make
from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import Result, build
from nb2kfp.runtime.step import PROCESS_STATE

# python-control's cruise.ipynb, in small: vehicle_update (cell 4) reads motor_torque, which cell 6 defines; the
# function goes into an object (cell 10) that later cells simulate, when motor_torque exists.
CRUISE = [
    (["step:update"], "import numpy as np\ndef update(x):\n    return np.clip(torque(x), 0, 100)"),
    (["step:torque"], "def torque(x):\n    return x * gain"),
    (["step:gain"], "gain = 2"),
    (["step:system"], "system = {'update': update}\nspeed = 3"),
    (["step:other"], "unrelated = 1"),
    (["step:simulate"], "y = system['update'](speed)"),
]


def inputs(result: Result, step: str) -> set[tuple[str, str]]:
    return {(e.name, e.producer) for e in result.pipeline.step(step).inputs}


def test_a_function_reading_a_global_set_further_down_compiles(make_nb: Make) -> None:
    result = build(make_nb(CRUISE))
    assert not [d for d in result.diagnostics if d.code.startswith("NB02")]
    assert inputs(result, "update") == set()


def test_using_a_value_that_holds_a_function_passes_the_globals_it_reads(make_nb: Make) -> None:
    result = build(make_nb(CRUISE))
    # torque (which update calls) and gain (which torque reads), transitively; np is re-imported
    assert inputs(result, "simulate") == {
        ("system", "system"),
        ("speed", "system"),
        ("torque", "torque"),
        ("gain", "gain"),
    }
    assert result.pipeline.step("simulate").cells[0].source == "import numpy as np"
    # a step that reads nothing holding the function gets none of it
    assert inputs(result, "other") == set()


def test_calling_a_function_passes_the_latest_value_of_its_globals(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "scale = 1\ndef f(x):\n    return x * scale"),
            (["step:b"], "scale = 10"),
            (["step:c"], "y = f(2)"),
        ]
    )
    assert inputs(build(nb), "c") == {("f", "a"), ("scale", "b")}


def test_functions_cell_functions_read_the_step_globals_when_called(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["functions"], "def f(x):\n    return x * scale"),
            (["step:a"], "scale = 3"),
            (["step:b"], "y = f(2)"),
        ]
    )
    assert inputs(build(nb), "b") == {("scale", "a")}


def test_a_global_no_step_sets_is_still_undefined(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "def f(x):\n    return x * nowhere"), (["step:b"], "y = f(1)")])
    with pytest.raises(NotebookError) as info:
        build(nb)
    assert "'nowhere' is not defined" in info.value.errors[0].format()


def test_reading_a_name_a_later_step_sets_gives_advice_without_a_cycle(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "y = x + 1"), (["step:b"], "x = 1")])
    with pytest.raises(NotebookError) as info:
        build(nb)
    [msg] = [e.format() for e in info.value.errors]
    assert "'x'" in msg and "prev:b" not in msg and "after" in msg


# emcee's line.ipynb, in small: np.random.seed(42) in one cell, draws in later ones
def test_the_random_state_flows_from_a_seed_on(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:data"], "import numpy as np\nx = np.arange(3)"),
            (["step:seed"], "np.random.seed(42)\na = np.random.rand()"),
            (["step:plain"], "z = x + 1"),
            (["step:draw"], "b = np.random.rand()"),
        ]
    )
    result = build(nb)
    assert (PROCESS_STATE, "seed") in inputs(result, "plain")
    assert (PROCESS_STATE, "plain") in inputs(result, "draw")
    assert PROCESS_STATE not in {e.name for e in result.pipeline.step("seed").inputs}
    assert PROCESS_STATE not in result.pipeline.step("data").outputs


def test_no_seed_no_random_state(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "import random\na = random.random()"), (["step:b"], "b = random.random() + a")])
    result = build(nb)
    assert all(PROCESS_STATE not in s.outputs for s in result.pipeline.steps)


def test_a_seed_in_the_imports_cell_makes_every_step_carry_the_random_state(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["imports"], "import random\nrandom.seed(1)"),
            (["step:a"], "a = random.random()"),
            (["step:b"], "b = random.random()"),
        ]
    )
    assert inputs(build(nb), "b") == {(PROCESS_STATE, "a")}


# formulaic's transforms.ipynb / contrasts.ipynb: a formula string names a function or array of an earlier cell
FORMULA = [
    (["step:define"], "import pandas\ndef my_transform(col):\n    return col ** 2 + offset\noffset = 1\nlimit = 2"),
    (
        ["step:use"],
        "from formulaic import model_matrix\n"
        "df = pandas.DataFrame({'a': [1, 2, 3]})\n"
        "mm = model_matrix('a + my_transform(a)', df)\n"
        "kept = df.query('a < @limit')\n"
        "total = float(mm.values.sum()) + len(kept)",
    ),
]


def test_names_in_a_formula_string_are_passed(make_nb: Make) -> None:
    result = build(make_nb(FORMULA))
    # the function and what it reads; `a` is a data column, which no step sets
    assert inputs(result, "use") == {("my_transform", "define"), ("offset", "define"), ("limit", "define")}


def test_importing_python_control_makes_its_steps_keep_the_process_state(make_nb: Make) -> None:
    # python-control numbers unnamed systems sys[0], sys[1]... with a class counter (cds112-L7_kalman-pvtol)
    nb = make_nb(
        [
            (["step:plain"], "x = 1"),
            (["step:a"], "import control as ct\ns1 = ct.tf([1], [1, 1])"),
            (["step:b"], "s2 = ct.tf([1], [1, 2])"),
        ]
    )
    result = build(nb)
    assert (PROCESS_STATE, "a") in inputs(result, "b")
    assert PROCESS_STATE not in {e.name for e in result.pipeline.step("a").inputs}


def test_a_catalog_component_after_a_seed_gets_only_its_arguments(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["pipeline-parameters"], "limit = 0.2"),
            (["step:data"], "import numpy as np\nnp.random.seed(0)\nref_path = 'ref.csv'\ncur_path = 'cur.csv'"),
            (
                ["component:data-drift-check"],
                "reference = ref_path\ncurrent = cur_path\ncolumn = 'x'\nthreshold = limit",
            ),
            (["step:decide"], "verdict = 'drift' if drifted else 'stable'\nx = np.random.rand()"),
        ]
    )
    result = build(nb)
    assert {e.name for e in result.pipeline.step("data_drift_check").inputs} == {"ref_path", "cur_path"}
    assert (PROCESS_STATE, "data") in inputs(result, "decide")
