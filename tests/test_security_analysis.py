"""Security case 11 (issue 14): the analysis of a long cell is linear (no copy of the bound names per statement
or branch). Timing lives in bench/analysis_scaling.py; these check that the layered bookkeeping gives the same
facts as before on the shapes it changed."""

from __future__ import annotations

import ast

from nb2kfp.frontend.analysis import analyse


def facts(code: str) -> tuple[set[str], set[str]]:
    f = analyse(ast.parse(code))
    return f.reads, f.definite


def test_names_bound_on_both_branches_are_bound_after_the_if() -> None:
    reads, definite = facts("if c:\n    y = 1\nelse:\n    y = 2\nprint(y)")
    assert reads == {"c", "print"} and "y" in definite


def test_names_bound_on_one_branch_are_read_from_upstream() -> None:
    reads, definite = facts("if c:\n    y = 1\nprint(y)")
    assert "y" in reads and "y" not in definite


def test_a_name_deleted_on_one_branch_is_no_longer_bound() -> None:
    reads, _ = facts("x = 1\nif c:\n    del x\nelse:\n    pass\nprint(x)")
    assert "x" in reads


def test_nested_branches_and_try_join_into_their_parent() -> None:
    code = "try:\n    a = 1\n    if c:\n        b = 1\n    else:\n        b = 2\nexcept E:\n    pass\nprint(a, b)"
    reads, definite = facts(code)
    assert {"a", "b"} <= definite and not {"a", "b"} & reads


def test_many_statements_and_branches_keep_their_facts() -> None:
    n = 5_000
    code = "\n".join(f"v{i} = {i}" for i in range(n)) + "\n" + "\n".join(f"if v{i}:\n    w{i} = v{i}" for i in range(n))
    reads, definite = facts(code + "\nprint(w7)")
    assert reads == {"w7", "print"}
    assert len(definite) == n
