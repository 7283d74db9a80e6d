"""Small differences between a kernel and a pipeline that the machine-learning corpus (tests/corpus/) found, each
fixed where it was a wrong refusal or a failed run, with the notebook that showed it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import build

Make = Callable[..., Path]


def test_seaborns_hide_tag_is_a_foreign_tag_not_an_error(make_nb: Make) -> None:
    """seaborn/aesthetics, color_palettes: seaborn's docs leave cells tagged `hide` out (nbconvert's
    TagRemovePreprocessor); nb2kfp refused the notebook (NB010, unknown tag)."""
    result = build(make_nb([(["imports", "hide"], "import numpy as np"), (["step:a", "hide"], "x = np.int64(1)")]))
    assert not result.diagnostics


@pytest.mark.parametrize(
    ("test", "then_runs"),
    [
        ("sys.version_info < (3, 0)", False),
        ("sys.version_info[0] == 2", False),
        ("sys.version_info.major >= 3", True),
        ("sys.version_info >= (3,)", True),
    ],
)
def test_a_branch_for_another_major_python_is_not_analysed(make_nb: Make, test: str, then_runs: bool) -> None:
    """mlbook/ch04: `if (sys.version_info < (3, 0)): csv_data = unicode(csv_data)` never runs in a Python 3 kernel;
    nb2kfp refused the notebook (NB020, name 'unicode' is not defined)."""
    dead = "unicode(csv)"
    then, other = ("csv", dead) if then_runs else (dead, "csv")
    code = f"import sys\ncsv = 'a'\nif {test}:\n    csv = {then}\nelse:\n    csv = {other}"
    result = build(make_nb([(["step:a"], code), (["step:b", "prev:a"], "n = len(csv)")]))
    assert not [d for d in result.diagnostics if d.code == "NB020"]
    assert {e.name for e in result.pipeline.step("b").inputs} == {"csv"}


def test_a_version_test_that_depends_on_the_release_is_analysed_as_before(make_nb: Make) -> None:
    with pytest.raises(NotebookError, match="NB020"):
        build(make_nb([(["step:a"], "import sys\nif sys.version_info >= (3, 12):\n    x = undefined_name\n")]))


def test_an_exception_type_nothing_sets_is_read_only_when_the_exception_happens(make_nb: Make) -> None:
    """mlbook/ch02: `except HTTPError:` with `HTTPError` never imported runs in a kernel (the clause is evaluated only
    when the body raises); nb2kfp refused the notebook (NB020). A warning now (NB026); a step that sets the name
    still hands it over, and a name also read elsewhere is still an error."""
    guarded = "try:\n    n = 1\nexcept (HTTPError, ValueError):\n    n = 0"
    result = build(make_nb([(["step:a"], guarded), (["step:b", "prev:a"], "m = n")]))
    assert [(d.code, d.cell, d.line) for d in result.diagnostics] == [("NB026", 1, 3)]
    imported = make_nb([(["step:a"], "from urllib.error import HTTPError"), (["step:b", "prev:a"], guarded)])
    result = build(imported)
    assert not result.diagnostics  # the import is replayed in step b, as imports an earlier step made are
    assert "from urllib.error import HTTPError" in "\n".join(c.source for c in result.pipeline.step("b").cells)
    handed = make_nb([(["step:a"], "HTTPError = KeyError"), (["step:b", "prev:a"], guarded)])
    assert {e.name for e in build(handed).pipeline.step("b").inputs} == {"HTTPError"}
    with pytest.raises(NotebookError, match="NB020"):
        build(make_nb([(["step:a"], f"{guarded}\nprint(HTTPError)")]))
