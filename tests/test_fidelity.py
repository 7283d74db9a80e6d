"""Notebooks written elsewhere (Kale 2.3, papermill, nbconvert, Jupyter Book): what they mean compiles as such."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import build

Make = Callable[..., Path]


def test_kale_empty_step_name_joins_the_step_above(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:load"], "x = 1"),
            (["step:"], "y = x + 1"),
            (["step:use", "prev:load"], "print(y)"),
        ]
    )
    result = build(nb)
    assert [s.name for s in result.pipeline.steps] == ["load", "use"]
    assert [c.source for c in result.pipeline.step("load").cells] == ["x = 1", "y = x + 1"]
    assert {e.name for e in result.pipeline.step("use").inputs} == {"y"}


@pytest.mark.parametrize(
    "tag",
    [
        "remove_output",
        "remove_input",
        "remove-stderr",
        "hide-input",
        "scroll-input",
        "skip-execution",
        "nbval-ignore-output",
        "nbval-skip",
        "nbval-raises-exception",
        "nbsphinx-gallery",
        "thebe-init",
        "dropdown",
        "raises-exception",
    ],
)
def test_tags_of_jupyters_own_tools_are_ignored(make_nb: Make, tag: str) -> None:
    nb = make_nb([(["step:a", tag], "x = 1"), ([tag], "y = x")])
    result = build(nb)
    assert not [d for d in result.diagnostics if d.code == "NB010"]


def test_pylab_inline_defines_its_names(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "%pylab inline\nx = linspace(0, 1, 5)\nh = hist(x)\ny = np.sum(x)")])
    result = build(nb)
    source = result.pipeline.step("a").cells[0].source
    assert "from pylab import *" in source and "import numpy as np" in source
    assert source.count("\n") == 3  # one line for one line: tracebacks keep their line numbers


def test_none_in_a_parameters_cell_is_an_optional_parameter(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["parameters"], "limit = None\nname = 'x'"),
            (["step:a"], "n = 10 if limit is None else int(limit)"),
        ]
    )
    result = build(nb)
    p = result.pipeline.parameter("limit")
    assert p.default is None and p.type == "str"
    assert p.optional


def test_function_shadowing_a_builtin_travels(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "def sum(x, y):\n    return x * y"),
            (["step:b", "prev:a"], "z = sum(3, 4)"),
        ]
    )
    result = build(nb)
    assert {(e.name, e.producer) for e in result.pipeline.step("b").inputs} == {("sum", "a")}


def test_builtin_name_read_without_any_step_setting_it_stays_the_builtin(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1"), (["step:b", "prev:a"], "z = sum([x, 2])")])
    assert {e.name for e in build(nb).pipeline.step("b").inputs} == {"x"}


def test_str_metric_is_a_lint_warning_not_an_error(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "bar = 'high'\nacc = 0.5"), (["pipeline-metrics"], "print(bar)\nprint(acc)")])
    result = build(nb)
    warnings = [d.format() for d in result.diagnostics if d.code == "NB047"]
    assert warnings and "'bar'" in warnings[0] and "number" in warnings[0]


def test_unknown_tag_is_still_an_error(make_nb: Make) -> None:
    nb = make_nb([(["step:a", "stpe:b"], "x = 1")])
    with pytest.raises(NotebookError):
        build(nb)
