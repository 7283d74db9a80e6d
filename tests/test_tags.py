"""The tag grammar is one table (frontend/notebook.py OPTION_TAGS): parsing, lint's messages and the README read
the same forms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clirun import Make
from nb2kfp.errors import NotebookError
from nb2kfp.frontend import notebook
from nb2kfp.frontend.builder import build

README = Path(__file__).resolve().parents[1] / "README.md"
# One example of each option tag, and what it sets
EXAMPLES = {
    "image:REF": "image:python:3.12-slim",
    "limit:RESOURCE:AMOUNT": "limit:cpu:2",
    "request:RESOURCE:AMOUNT": "request:memory:1Gi",
    "cache:enabled|disabled": "cache:disabled",
    "label:K:V": "label:team:ml",
    "annotation:K:V": "annotation:owner:me",
    "secret:NAME:KEY:ENV": "secret:db:password:DB_PASSWORD",
    "node:KEY:VALUE": "node:pool:gpu",
    "toleration:KEY[:VALUE]:EFFECT": "toleration:dedicated:ml:NoSchedule",
    "retry:N": "retry:2",
    "timeout:SECONDS[s|m|h]": "timeout:5m",
    "report:enabled|disabled": "report:enabled",
}


def test_every_option_tag_has_an_example_that_sets_an_option() -> None:
    assert [t.form for t in notebook.OPTION_TAGS] == list(EXAMPLES)
    for form, tag in EXAMPLES.items():
        options = notebook.StepOptions()
        assert notebook._option_tag(tag, options), form
        assert options != notebook.StepOptions(), form


@pytest.mark.parametrize("tag", list(EXAMPLES.values()))
def test_an_option_tag_on_a_cell_with_no_step_is_nb013_naming_every_option_tag(make_nb: Make, tag: str) -> None:
    nb = make_nb([(["step:a"], "x = 1"), ([tag], "y = 2")])
    with pytest.raises(NotebookError) as err:
        build(nb)
    found = [d for d in err.value.diagnostics if d.code == "NB013"]
    assert found, tag  # report:enabled passed lint before the table (its check listed 11 of the 12 fields)
    for form in EXAMPLES:
        assert form.split(":", 1)[0] + ":" in found[0].message, form


def test_the_readme_tag_table_shows_every_tag() -> None:
    section = README.read_text(encoding="utf-8").split("## Tag a notebook", 1)[1].split("\n## ", 1)[0]
    shown = {m.replace("\\|", "|") for m in re.findall(r"`([^`]+)`", section)}
    forms = [t.form for t in notebook.OPTION_TAGS] + list(notebook._STRUCTURE_FORMS) + list(notebook._SPECIAL)
    missing = [f for f in forms if f not in shown and not any(f.startswith(s.split("|")[0]) for s in shown)]
    assert missing == []
