"""Names defined, read and changed by module-level code, for every binding form."""

from __future__ import annotations

import ast

import pytest

from nb2kfp.frontend.analysis import Facts, analyse


def facts(src: str) -> Facts:
    return analyse(ast.parse(src))


@pytest.mark.parametrize(
    ("src", "binds"),
    [
        ("x = 1", {"x"}),
        ("a, (b, *c) = v", {"a", "b", "c"}),
        ("x: int = 3", {"x"}),
        ("x += 1", {"x"}),
        ("import os.path", {"os"}),
        ("import numpy as np", {"np"}),
        ("from a import b as c, d", {"c", "d"}),
        ("def f(): pass", {"f"}),
        ("class K: pass", {"K"}),
        ("for i, j in pairs: pass", {"i", "j"}),
        ("with open(p) as fh: pass", {"fh"}),
        ("if (n := 10) > 5: pass", {"n"}),
        ("ys = [(last := y) for y in xs]", {"ys", "last"}),
        ("try:\n    pass\nexcept ValueError as err:\n    pass", {"err"}),
        ("def f():\n    global g\n    g = 1", {"f", "g"}),
        ("match cmd:\n    case [x, y]: pass", {"x", "y"}),
    ],
)
def test_binding_forms(src: str, binds: set[str]) -> None:
    assert facts(src).binds == binds


def test_reads_before_binding_only() -> None:
    f = facts("y = x + 1\nx = 2\nz = x")
    assert f.free() == {"x"}


def test_comprehension_variables_do_not_leak_but_free_names_are_read() -> None:
    f = facts("out = [i * k for i in items if i > limit]")
    assert f.free() == {"items", "k", "limit"}
    assert "i" not in f.binds


def test_rebinding_from_itself_reads_the_old_value() -> None:
    assert facts("items = [g(i) for i in items]").free() == {"items", "g"}
    assert facts("total += 1").free() == {"total"}


def test_function_bodies_are_read_when_called() -> None:
    f = facts("def f():\n    return y\ny = 1\nf()")
    assert f.free() == set()  # y is bound in this code before any call can need it
    g = facts("def f(a):\n    return a + offset\nf(1)")
    assert g.free() == {"offset"}


def test_del_removes_the_name() -> None:
    f = facts("x = 1\ndel x")
    assert "x" in f.deleted
    assert "x" not in f.definite


def test_conditional_binding_is_not_definite() -> None:
    f = facts("if c:\n    x = 1\ny = x")
    assert "x" in f.binds and "x" not in f.definite
    assert "x" in f.free()
    g = facts("if c:\n    x = 1\nelse:\n    x = 2\ny = x")
    assert "x" in g.definite and "x" not in g.free()


@pytest.mark.parametrize(
    "src",
    [
        "lst.append(1)",
        "df['c'] = 1",
        "obj.attr = 2",
        "del d[k]",
        "m.fit(X, y)",
        "df.fillna(0, inplace=True)",
        "d[k] += 1",
        "random.shuffle(lst)",
    ],
)
def test_definite_in_place_changes(src: str) -> None:
    f = facts(src)
    root = {"lst", "df", "obj", "d", "m"} & (f.mutates)
    assert root, f"no definite change found in {src!r}: {f}"


@pytest.mark.parametrize(
    "src", ["print(df)", "len(lst)", "df.head()", "model.predict(X)", "x = df.shape", "y = lst[0]"]
)
def test_reads_that_change_nothing(src: str) -> None:
    f = facts(src)
    assert not f.mutates and not f.may_mutate, f


def test_unknown_calls_may_change_their_arguments() -> None:
    f = facts("transform(df)\nhelper(key=arr)")
    assert {"df", "arr"} <= f.may_mutate
    assert not f.mutates


def test_fit_changes_the_estimator_not_the_data() -> None:
    f = facts("model.fit(X, y)")
    assert f.mutates == {"model"}
    assert not ({"X", "y"} & f.may_mutate)


def test_imports_are_recorded_for_replay() -> None:
    f = facts("import numpy as np\nfrom os import path as p")
    assert f.imported == {"np": "import numpy as np", "p": "from os import path as p"}


def test_star_import_is_flagged() -> None:
    assert facts("from math import *").star_import
