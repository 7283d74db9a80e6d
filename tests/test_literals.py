"""The one reader of `name = value` cells (nb2kfp.frontend.literals), and both cells that use it."""

from __future__ import annotations

import ast

import pytest

from clirun import Make
from nb2kfp.frontend import literals
from nb2kfp.frontend.builder import build


def test_assignments_plain_and_annotated_docstrings_skipped_the_rest_returned() -> None:
    tree = ast.parse('"""doc"""\na = 1\nb: float = 2.5\n"a comment"\nprint(a)\nc = d = 3\ne: int\n')
    found = list(literals.assignments(tree))
    assert [(x.name, x.line) for x in found if isinstance(x, literals.Assignment)] == [("a", 2), ("b", 3)]
    others = [x for x in found if not isinstance(x, literals.Assignment)]
    assert [(type(x).__name__, x.lineno) for x in others] == [("Expr", 5), ("Assign", 6), ("AnnAssign", 7)]
    assert list(literals.assignments(None)) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1), ("-2.5", -2.5), ("'x'", "x"), ("True", True), ("None", None), ("[1, {'a': (2,)}]", [1, {"a": (2,)}])],
)
def test_literals(text: str, value: object) -> None:
    assert literals.literal(ast.parse(text, mode="eval").body) == value


@pytest.mark.parametrize("text", ["x", "f(1)", "1 + x", "[x]", "lambda: 1", "'a' * 10**9"])
def test_not_literals(text: str) -> None:
    with pytest.raises(literals.NotLiteral):
        literals.literal(ast.parse(text, mode="eval").body)


def test_parameters_and_component_cells_read_the_same_lines(make_nb: Make) -> None:
    # an annotated line was a parameter, but a component: cell refused it ("write one input per line")
    nb = make_nb(
        [
            (["pipeline-parameters"], "limit: float = 0.2"),
            (["step:data"], "ref_path = 'r.csv'\ncur_path = 'c.csv'"),
            (["component:data-drift-check"], "reference = ref_path\ncurrent = cur_path\ncolumn: str = 'x'"),
        ]
    )
    p = build(nb).pipeline
    assert [(x.name, x.type, x.default) for x in p.parameters] == [("limit", "float", 0.2)]
    call = p.step("data_drift_check").component
    assert call is not None and ("column", "literal", '"x"') in {(a.name, a.source, a.value) for a in call.args}
