"""Composition: notebook:PATH cells inline another tagged notebook's steps (compile, lint, and a local run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clirun import Make
from nb2kfp.backends import kfp_spec
from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import build
from nb2kfp.service import diagnostics as diagnostics_for

SUB = [
    (["imports"], "import math"),
    (["functions"], "def half(v):\n    return v / 2"),
    (["pipeline-parameters"], "n = 4"),
    (["step:prep"], "xs = list(range(n))"),
    (["step:stats", "prev:prep"], "total = sum(xs)\nroot = math.sqrt(half(total))"),
]


def make_main(make_nb: Make, ref: str = "sub.ipynb", metadata: dict[str, object] | None = None) -> Path:
    cell: tuple[list[str], str] = ([f"notebook:{ref}"], "# the statistics notebook")
    cells = [
        (["pipeline-parameters"], "n = 6\nlabel = 'run'"),
        (["step:start"], "base = n * 10"),
        cell,
        (["step:report"], "summary = f'{label}: {total} {root:.3f} {base}'\nscore = total + base"),
        (["pipeline-metrics"], "print(score)"),
    ]
    path = make_nb(cells, name="main.ipynb")
    if metadata:  # Kale 2.3: notebook:NAME with the path in the cell's metadata
        raw = json.loads(path.read_text())
        raw["cells"][2]["metadata"].update(metadata)
        path.write_text(json.dumps(raw))
    return path


def test_included_steps_are_inlined_in_order_with_parameters_and_variables(make_nb: Make) -> None:
    make_nb(SUB, name="sub.ipynb")
    p = build(make_main(make_nb)).pipeline
    assert [s.name for s in p.steps] == ["start", "sub__prep", "sub__stats", "report"]
    assert p.step("sub__prep").after == ("start",)
    assert p.step("report").after == ("sub__stats",)
    assert [(x.name, x.type, x.default) for x in p.parameters] == [("n", "int", 6), ("label", "str", "run")]
    assert p.step("sub__prep").parameters == ("n",)
    assert {(e.name, e.producer) for e in p.step("report").inputs} == {
        ("total", "sub__stats"),
        ("root", "sub__stats"),
        ("base", "start"),
    }
    stats = p.step("sub__stats")
    assert stats.origin is not None and stats.origin.notebook.endswith("sub.ipynb")
    assert [c.source for c in stats.origin.prelude] == ["import math", "def half(v):\n    return v / 2"]
    spec = kfp_spec.step_spec(p, stats)
    assert spec["notebook"] == "sub.ipynb" and spec["prelude"][0][1] == "import math"
    assert "prelude" not in kfp_spec.step_spec(p, p.step("report"))  # empty parts are left out
    doc = next(yaml.safe_load_all(kfp_spec.render(p)))
    assert doc["root"]["dag"]["tasks"]["sub-prep"]["dependentTasks"] == ["nb2kfp-runtime", "start"]


def test_an_included_step_whose_task_name_an_own_step_has_is_located(make_nb: Make) -> None:
    make_nb(SUB, name="sub.ipynb")
    nb = make_nb([(["step:start"], "x = 1"), (["notebook:sub.ipynb"], ""), (["step:sub_prep"], "print(x)")])
    with pytest.raises(NotebookError) as info:
        build(nb)
    [found] = [d for d in info.value.errors if d.code == "NB085"]
    assert "'sub__prep' and 'sub_prep'" in found.message and "'sub-prep'" in found.message and found.cell == 3


def test_kale_metadata_path_wins_over_the_tag(make_nb: Make, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    make_nb(SUB, name="lib/stats.ipynb")
    p = build(make_main(make_nb, "statistics", {"notebook_path": "lib/stats.ipynb"})).pipeline
    assert "stats__prep" in [s.name for s in p.steps]


def test_included_steps_do_not_see_the_including_notebooks_values(make_nb: Make) -> None:
    make_nb([(["step:a"], "import math\nx = math.pi")], name="sub.ipynb")
    nb = make_nb([(["step:first"], "math = None\nx = 1"), (["notebook:sub.ipynb"], ""), (["step:b"], "y = x")])
    p = build(nb).pipeline
    assert p.step("sub__a").inputs == ()
    assert {(e.name, e.producer) for e in p.step("b").inputs} == {("x", "sub__a")}


def test_parameter_type_clash_is_located(make_nb: Make) -> None:
    make_nb(SUB, name="sub.ipynb")
    nb = make_nb([(["pipeline-parameters"], "n = 'six'"), (["notebook:sub.ipynb"], "")])
    with pytest.raises(NotebookError) as info:
        build(nb)
    assert any(d.code == "NB084" and d.cell == 2 and "'n'" in d.message for d in info.value.errors)


def test_cycles_missing_files_and_code_in_the_cell_are_located(make_nb: Make) -> None:
    make_nb([(["step:a"], "x = 1"), (["notebook:b.ipynb"], "")], name="a.ipynb")
    make_nb([(["step:b"], "y = 1"), (["notebook:a.ipynb"], "")], name="b.ipynb")
    found = [d.format() for d in diagnostics_for(Path(make_nb([(["notebook:a.ipynb"], "")], name="top.ipynb")))]
    assert any("notebooks include each other: a.ipynb -> b.ipynb -> a.ipynb [NB082]" in f for f in found), found
    assert any("top.ipynb: cell 1: error: included notebook" in f for f in found)
    missing = make_nb([(["notebook:nope.ipynb"], "")], name="m.ipynb")
    assert any(d.code == "NB080" and d.cell == 1 for d in diagnostics_for(missing))
    make_nb(SUB, name="sub.ipynb")
    coded = make_nb([(["notebook:sub.ipynb"], "# fine\nx = 1")], name="c.ipynb")
    assert any(d.code == "NB081" for d in diagnostics_for(coded))


def test_lint_reports_the_included_notebooks_diagnostics_with_its_path(make_nb: Make) -> None:
    make_nb([(["step:a"], "print(undefined_name)")], name="sub.ipynb")
    nb = make_nb([(["notebook:sub.ipynb"], "")], name="main.ipynb")
    found = [d.format() for d in diagnostics_for(nb)]
    assert any(f.startswith(str(nb.parent / "sub.ipynb") + ": cell 1") and "NB020" in f for f in found), found
    make_nb([(["step:a"], "print(undefined_name"), (["step:b"], "print(another)")], name="sub.ipynb")
    found = [d.format() for d in diagnostics_for(nb)]
    assert any(f.startswith(str(nb.parent / "sub.ipynb") + ": cell 1") and "NB031" in f for f in found), found
    assert any(f.startswith(f"{nb}: cell 1: error:") and "NB083" in f for f in found)


def test_prev_can_name_the_unit_and_nesting_stacks_prefixes(make_nb: Make) -> None:
    make_nb([(["step:leaf"], "z = 3")], name="inner.ipynb")
    make_nb(
        [(["step:mid"], "w = 2"), (["notebook:inner.ipynb"], ""), (["step:after_inner"], "v = z + w")],
        name="outer.ipynb",
    )
    nb = make_nb([(["step:s"], "q = 1"), (["notebook:outer.ipynb"], ""), (["step:t", "prev:outer"], "r = v + q")])
    p = build(nb).pipeline
    assert [s.name for s in p.steps] == ["s", "outer__mid", "outer__inner__leaf", "outer__after_inner", "t"]
    assert p.step("t").after == ("outer__after_inner",)
    assert {(e.name, e.producer) for e in p.step("outer__after_inner").inputs} == {
        ("z", "outer__inner__leaf"),
        ("w", "outer__mid"),
    }


@pytest.mark.slow
def test_composed_notebook_runs_with_kfp_local(make_nb: Make) -> None:
    make_nb(SUB, name="sub.ipynb")
    nb = make_main(make_nb)
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "run", str(nb), "--local", "--json", "-p", "n=4"],
        capture_output=True,
        text=True,
        cwd=nb.parent,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["steps"] == {s: "succeeded" for s in ["start", "sub__prep", "sub__stats", "report"]}
    assert result["metrics"] == {"score": 6 + 40}  # sum(range(4)) + 4 * 10
