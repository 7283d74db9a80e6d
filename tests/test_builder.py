"""Notebook -> IR: steps, edges, parameters, metrics, and the diagnostics users get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clirun import Make
from nb2kfp.errors import NotebookError, Severity
from nb2kfp.frontend.builder import Result, build
from nb2kfp.ir import VariableEdge


def errors_of(path: Path) -> list[str]:
    with pytest.raises(NotebookError) as info:
        build(path)
    return [d.format() for d in info.value.errors]


def edges(result: Result, step: str) -> set[tuple[str, str]]:
    return {(e.name, e.producer) for e in result.pipeline.step(step).inputs}


def test_untagged_cells_join_the_step_above_and_skip_and_markdown_are_dropped(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["imports"], "import math"),
            (["step:a"], "x = 1"),
            ([], "y = x + 1"),
            (["skip"], "raise SystemExit('never runs')"),
            ([], "# notes", "markdown"),
            ([], "z = y * 2"),
            (["step:b", "prev:a"], "print(z, math.pi)"),
        ]
    )
    p = build(nb).pipeline
    assert [c.source for c in p.step("a").cells] == ["x = 1", "y = x + 1", "z = y * 2"]
    assert [c.index for c in p.step("a").cells] == [2, 3, 6]
    assert p.step("b").inputs == (VariableEdge("z", "a"),)
    assert p.step("a").outputs == ("z",)


def test_nearest_ancestor_provides_and_only_needed_edges(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "x = 1\nunused = 5"),
            (["step:b", "prev:a"], "x = x + 1"),
            (["step:c", "prev:b"], "print(x)"),
        ]
    )
    r = build(nb)
    assert edges(r, "c") == {("x", "b")}
    assert edges(r, "b") == {("x", "a")}
    assert r.pipeline.step("a").outputs == ("x",)  # `unused` is never passed


def test_diamond_is_kept_exactly(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "data = [1, 2, 3]"),
            (["step:b", "prev:a"], "left = sum(data)"),
            (["step:c", "prev:a"], "right = max(data)"),
            (["step:d", "prev:b", "prev:c"], "total = left + right"),
        ]
    )
    p = build(nb).pipeline
    assert p.step("d").after == ("b", "c")
    assert {e.producer for e in p.step("d").inputs} == {"b", "c"}
    assert p.step("b").after == ("a",) and p.step("c").after == ("a",)


def test_in_place_change_by_an_ancestor_is_seen(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "lst = []\ndf = {'c': 1}"),
            (["step:b", "prev:a"], "lst.append(1)\ndf['d'] = 2"),
            (["step:c", "prev:b"], "print(lst, df)"),
        ]
    )
    assert edges(build(nb), "c") == {("lst", "b"), ("df", "b")}


def test_value_only_read_comes_from_where_it_was_set(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "lst = [3, 1]"),
            (["step:b", "prev:a"], "print(len(lst), lst[0])"),
            (["step:c", "prev:b"], "print(sorted(lst))"),
        ]
    )
    r = build(nb)
    assert edges(r, "c") == {("lst", "a")}
    assert r.pipeline.step("b").outputs == ()


def test_undefined_name_is_a_located_error(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1"), (["step:b", "prev:a"], "y = x\nprint(undefined_thing)")])
    [msg] = errors_of(nb)
    assert "cell 2, line 2" in msg and "'undefined_thing'" in msg and "[NB020]" in msg


def test_name_from_a_non_ancestor_suggests_the_prev_tag(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1"), (["step:b", "prev:a"], "y = x"), (["step:c", "prev:a"], "print(y)")])
    [msg] = errors_of(nb)
    assert "add prev:b to step 'c'" in msg


def test_step_without_prev_follows_the_step_above_as_in_kale(make_nb: Make) -> None:
    cells = [(["step:a"], "x = 1"), (["step:b"], "y = x"), (["step:c", "prev:a"], "z = x"), (["step:d"], "print(z)")]
    p = build(make_nb(cells)).pipeline
    assert [s.after for s in p.steps] == [(), ("a",), ("a",), ("c",)]
    cells[3] = (["step:d"], "print(y, z)")  # d follows c only: y (set by b) is not among its ancestors' values
    assert any("add prev:b to step 'd'" in m for m in errors_of(make_nb(cells)))


def test_two_unordered_definers_read_after_both_is_an_error(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "x = 0"),
            (["step:b", "prev:a"], "x = 1"),
            (["step:c", "prev:a"], "x = 2"),
            (["step:d", "prev:b", "prev:c"], "print(x)"),
        ]
    )
    [msg] = errors_of(nb)
    assert "[NB022]" in msg and "'b'" in msg and "'c'" in msg


def test_dag_that_departs_from_notebook_order_warns_with_the_fix(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "lst = [1]"),
            (["step:b", "prev:a"], "lst.append(2)"),
            (["step:c", "prev:a"], "print(lst)"),
        ]
    )
    r = build(nb)
    [w] = [d for d in r.diagnostics if d.code == "NB024"]
    assert w.severity is Severity.WARNING and w.cell == 3
    assert "Add prev:b to step 'c'" in w.message
    assert edges(r, "c") == {("lst", "a")}


def test_possible_changes_do_not_warn(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["functions"], "def plot(d):\n    return None"),
            (["step:a"], "df = {'a': 1}"),
            (["step:b", "prev:a"], "plot(df)"),
            (["step:c", "prev:a"], "print(df)"),
        ]
    )
    assert not [d for d in build(nb).diagnostics if d.code == "NB024"]


def test_parameters_are_typed_and_given_only_to_readers(make_nb: Make) -> None:
    nb = make_nb(
        [
            (
                ["pipeline-parameters"],
                "n = 3\nrate = 0.5\nname = \"O'Brien\"\nflag = True\nitems = [1, 2]\ncfg = {'k': 'v'}",
            ),
            (["step:a"], "print(n, name)"),
            (["step:b", "prev:a"], "print(rate, flag, items, cfg)"),
        ]
    )
    p = build(nb).pipeline
    assert [(x.name, x.type, x.default) for x in p.parameters] == [
        ("n", "int", 3),
        ("rate", "float", 0.5),
        ("name", "str", "O'Brien"),
        ("flag", "bool", True),
        ("items", "list", [1, 2]),
        ("cfg", "dict", {"k": "v"}),
    ]
    assert p.step("a").parameters == ("n", "name")
    assert p.step("b").parameters == ("cfg", "flag", "items", "rate")


def test_papermill_parameters_tag_and_injected_values(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["parameters"], "n = 3"),
            (["injected-parameters"], "n = 10"),
            (["step:a"], "print(n)"),
        ]
    )
    assert build(nb).pipeline.parameter("n").default == 10


@pytest.mark.parametrize(
    ("src", "fragment"),
    [
        ("n = compute()", "must be a literal"),
        ("print('hi')", "only literal assignments"),
        ("n = {1}", "cannot be a pipeline parameter"),
        ("t = (1, 2)", "cannot be a pipeline parameter"),
    ],
)
def test_parameters_cell_must_be_literal_assignments(make_nb: Make, src: str, fragment: str) -> None:
    nb = make_nb([(["pipeline-parameters"], src), (["step:a"], "pass")])
    [msg] = errors_of(nb)
    assert "cell 1, line 1" in msg and fragment in msg


def test_immutable_parameter_passed_to_a_call_is_not_re_exported(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["pipeline-parameters"], "seed = 1"),
            (["functions"], "def make_rng(s):\n    return [s]"),
            (["step:a"], "x = abs(seed)\nrng = make_rng(seed)"),
            (["step:b", "prev:a"], "print(seed, x, rng)"),
        ]
    )
    p = build(nb).pipeline
    assert p.step("b").parameters == ("seed",)
    assert edges(build(nb), "b") == {("x", "a"), ("rng", "a")}


def test_metrics_come_from_the_step_that_last_sets_them(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "acc = 0.5\nloss = 1.0"),
            (["step:b", "prev:a"], "acc = 0.9"),
            (["pipeline-metrics"], "print(acc)\nloss"),
        ]
    )
    p = build(nb).pipeline
    assert p.step("b").metrics == ("acc",)
    assert p.step("a").metrics == ("loss",)


def test_metric_never_set_is_an_error(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1"), (["pipeline-metrics"], "print(acc)")])
    [msg] = errors_of(nb)
    assert "cell 2" in msg and "'acc'" in msg


def test_magics_and_shell_lines_compile(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["imports"], "%matplotlib inline\nimport os"),
            (["step:a"], "!pip install -q requests\nfiles = !ls\n%time x = len(files)\ny = x?"),
            (["step:b", "prev:a"], "%%time\nprint(x)"),
        ]
    )
    r = build(nb)
    assert "get_ipython().run_line_magic('matplotlib', 'inline')" in r.pipeline.prelude[0].source
    assert edges(r, "b") == {("x", "a")}
    assert any(d.code == "NB033" for d in r.diagnostics)  # !pip is reported


def test_help_with_a_leading_question_mark_compiles(make_nb: Make) -> None:
    # python-control's cds110-L5_kincar-estimation.ipynb: "?ct.white_noise" on a line of its own
    nb = make_nb([(["step:a"], "import math\n?math.floor\n??math.ceil\nx = math.floor(2.5)")])
    r = build(nb)
    assert not [d for d in r.diagnostics if d.severity is Severity.ERROR]
    assert "run_line_magic('pinfo', 'math.floor')" in r.pipeline.step("a").cells[0].source


def test_names_from_a_star_import_in_an_earlier_step_are_replayed(make_nb: Make) -> None:
    # python-control's pvtol-lqr-nested.ipynb: "from numpy import *" in one cell, linspace(...) in later ones
    nb = make_nb(
        [
            (["step:a"], "from math import *\nfrom os.path import *"),
            (["step:b"], "x = floor(2.5)"),
            (["step:c"], "y = join('a', str(x))"),
        ]
    )
    r = build(nb)
    assert not [d for d in r.diagnostics if d.severity is Severity.ERROR]
    [replay, _] = [c.source for c in r.pipeline.step("c").cells]
    assert replay.index("from math import *") < replay.index("from os.path import *")
    assert edges(r, "c") == {("x", "b")}
    assert "x" not in r.pipeline.step("c").cells[0].source
    assert errors_of(make_nb([(["step:a"], "import math"), (["step:b"], "x = floor(2.5)")], name="none.ipynb"))


def test_a_function_reading_a_global_set_further_down_runs_where_it_is_called(make_nb: Make) -> None:
    # python-control's cruise.ipynb: vehicle_update (cell 4) reads motor_torque, which cell 6 sets; the function
    # reads it when called (as in the kernel), so the calling step receives it (tests/test_notebook_state.py)
    nb = make_nb(
        [
            (["step:a"], "def update(x):\n    return x * torque"),
            (["step:b"], "speed = 3"),
            (["step:c"], "torque = 2\ny = update(speed)"),
        ]
    )
    result = build(nb)
    assert not [d for d in result.diagnostics if d.code == "NB020"]
    assert edges(result, "c") == {("update", "a"), ("speed", "b")}


def test_functions_cell_names_are_shared(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["functions"], "class Box:\n    pass\n\ndef helper():\n    return Box()"),
            (["step:a"], "b = helper()"),
            (["step:b", "prev:a"], "print(isinstance(b, Box))"),
        ]
    )
    p = build(nb).pipeline
    assert p.shared_names == ("Box", "helper")
    assert edges(build(nb), "b") == {("b", "a")}


def test_import_inside_a_step_is_replayed_not_passed(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "import json as j"), (["step:b", "prev:a"], "print(j.dumps(1))")])
    p = build(nb).pipeline
    assert p.step("b").inputs == ()
    assert p.step("b").cells[0].source == "import json as j"


def test_kale_metadata_is_honoured(make_nb: Make) -> None:
    meta = {
        "kubeflow_notebook": {
            "pipeline_name": "My_Pipeline",
            "base_image": "registry.local/base:1",
            "enable_caching": False,
            "steps_defaults": ["label:team:ml", "limit:cpu:2"],
        }
    }
    nb = make_nb([(["step:a", "image:other:2"], "x = 1"), (["step:b", "prev:a"], "print(x)")], metadata=meta)
    p = build(nb).pipeline
    assert p.name == "my-pipeline"
    assert p.step("a").image == "other:2" and p.step("b").image == "registry.local/base:1"
    assert not p.step("a").caching
    assert p.step("b").labels == (("team", "ml"),)
    assert dict(p.step("b").resources.limits)["cpu"] == "2"


def test_notebook_without_step_tags_is_one_step(make_nb: Make) -> None:
    nb = make_nb([([], "x = 1"), ([], "print(x)")], name="My Analysis.ipynb")
    r = build(nb)
    assert [s.name for s in r.pipeline.steps] == ["my_analysis"]
    assert any(d.code == "NB015" for d in r.diagnostics)


@pytest.mark.parametrize(
    ("cells", "fragment", "cell"),
    [
        ([(["step:a", "prev:b"], "x = 1"), (["step:b", "prev:a"], "y = 1")], "cycle: a -> b -> a", 2),
        ([(["step:a"], "x = 1"), (["step:b", "prev:aa"], "y = 1")], "prev:aa names no step (did you mean prev:a?)", 2),
        ([(["step:a"], "x = (")], "syntax error", 1),
        ([(["step:a", "stpe:b"], "x = 1")], "unknown tag 'stpe:b'", 1),
        ([(["prev:a"], "x = 1")], "need a step:NAME tag", 1),
        ([(["step:a"], "x = 1"), (["notebook:other.ipynb"], "")], "no such notebook", 2),
    ],
)
def test_bad_input_is_located(make_nb: Make, cells: list[Any], fragment: str, cell: int) -> None:
    msgs = errors_of(make_nb(cells))
    assert any(fragment in m and f"cell {cell}" in m for m in msgs), msgs


def test_step_names_that_clash_in_kfp_are_rejected(make_nb: Make) -> None:
    msgs = errors_of(make_nb([(["step:load_data"], "x = 1"), (["step:load-data"], "y = 2")]))
    assert any("same KFP task name" in m for m in msgs)


def test_steps_whose_names_clean_to_the_fallback_clash_with_a_step_of_that_name(make_nb: Make) -> None:
    # `_` has no letter or digit: its KFP task name is the fallback "step", which a step may be named too.
    # Both used to compile, into a spec where the second task depended on itself and the first was gone.
    msgs = errors_of(make_nb([(["step:_"], "x = 1"), (["step:step"], "print(x)")]))
    assert any("NB019" in m and "'_' and 'step'" in m and "cell 2" in m for m in msgs), msgs


def test_foreign_tags_are_ignored(make_nb: Make) -> None:
    r = build(make_nb([(["step:a", "hide-input"], "x = 1")]))
    assert not r.diagnostics


@pytest.mark.parametrize(
    ("tag", "fragment"),
    [
        ("limit:cpu:lots", "give cores"),
        ("limit:memory:4GB", "give bytes with a unit"),
        ("limit:nvidia.com/gpu:0.5", "whole number"),
        ("limit:ephemeral-storage:1Gi", "cannot be set through KFP v2"),
    ],
)
def test_resource_limits_kfp_cannot_set_are_errors(make_nb: Make, tag: str, fragment: str) -> None:
    msgs = errors_of(make_nb([(["step:a", tag], "x = 1")]))
    assert any(fragment in m and "cell 1" in m for m in msgs), msgs


def test_two_accelerator_types_are_an_error(make_nb: Make) -> None:
    msgs = errors_of(make_nb([(["step:a", "limit:nvidia.com/gpu:1", "limit:amd.com/gpu:1"], "x = 1")]))
    assert any("one accelerator type" in m for m in msgs)


def test_kale_volumes_are_reported_not_dropped(make_nb: Make) -> None:
    meta = {"kubeflow_notebook": {"volumes": [{"name": "data", "mount_point": "/data", "type": "pv"}]}}
    r = build(make_nb([(["step:a"], "x = 1")], metadata=meta))
    assert any(d.code == "NB052" and "volumes" in d.message for d in r.diagnostics)


def test_image_policy_is_enforced_with_the_setting_named(make_nb: Make, tmp_path: Path) -> None:
    from nb2kfp.config import find_settings

    (tmp_path / "nb2kfp.toml").write_text(
        'image = "registry.local/ml/base:1"\n[policy]\nallowed_images = ["registry.local/ml/"]\n'
    )
    nb = make_nb([(["step:a"], "x = 1"), (["step:b", "prev:a", "image:docker.io/evil:latest"], "print(x)")])
    with pytest.raises(NotebookError) as info:
        build(nb, find_settings(tmp_path))
    [d] = info.value.errors
    assert d.cell == 2 and d.code == "NB070" and "nb2kfp.toml" in d.message and "docker.io/evil:latest" in d.message
